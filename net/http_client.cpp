#include "net/http_client.hpp"

#include <cstdlib>
#include <optional>

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>

namespace berth::net {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

namespace {

Status connect(asio::local::stream_protocol::socket& socket, const std::string& socket_path) {
  beast::error_code ec;
  socket.connect(asio::local::stream_protocol::endpoint(socket_path), ec);
  if (ec)
    return make_error(ErrorCode::internal,
                      "cannot connect to berthd at " + socket_path + ": " + ec.message());
  return ok_status();
}

}  // namespace

Expected<ClientResponse> unix_request(const std::string& socket_path, const std::string& method,
                                      const std::string& target, const std::string& body,
                                      std::chrono::milliseconds timeout) {
  asio::io_context io;
  asio::local::stream_protocol::socket socket(io);
  if (auto c = connect(socket, socket_path); !c) return c.error();
  http::request<http::string_body> req{http::string_to_verb(method), target, 11};
  req.set(http::field::host, "berthd");
  req.set(http::field::user_agent, "berthctl");
  if (!body.empty()) req.set(http::field::content_type, "application/json");
  req.body() = body;
  req.prepare_payload();
  // One exchange on a private io_context, so that a deadline can bound all of it.
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(64u << 20);
  std::optional<beast::error_code> result;
  const char* stage = "cannot send to berthd: ";
  http::async_write(socket, req, [&](beast::error_code ec, size_t) {
    if (ec) {
      result = ec;
      return;
    }
    stage = "no answer from berthd: ";
    http::async_read(socket, buffer, parser, [&](beast::error_code ec2, size_t) { result = ec2; });
  });
  if (timeout.count() > 0)
    io.run_for(timeout);
  else
    io.run();
  if (!result)
    return make_error(ErrorCode::internal, std::string(stage) + "no reply within " +
                                               std::to_string(timeout.count() / 1000.0) + " s");
  if (*result) return make_error(ErrorCode::internal, stage + result->message());
  auto res = parser.release();
  return ClientResponse{static_cast<unsigned>(res.result_int()), std::move(res.body())};
}

Expected<unsigned> unix_event_stream(const std::string& socket_path, const std::string& target,
                                     const std::function<bool(const std::string&)>& on_event) {
  asio::io_context io;
  asio::local::stream_protocol::socket socket(io);
  beast::error_code ec;
  if (auto c = connect(socket, socket_path); !c) return c.error();
  const std::string req =
      "GET " + target + " HTTP/1.1\r\nHost: berthd\r\nUser-Agent: berthctl\r\n\r\n";
  asio::write(socket, asio::buffer(req), ec);
  if (ec) return make_error(ErrorCode::internal, "cannot send to berthd: " + ec.message());
  std::string data;
  char buf[8192];
  bool head_done = false;
  unsigned status = 0;
  for (;;) {
    size_t n = socket.read_some(asio::buffer(buf), ec);
    if (ec) break;
    data.append(buf, n);
    if (!head_done) {
      auto end = data.find("\r\n\r\n");
      if (end == std::string::npos) continue;
      auto sp = data.find(' ');
      status =
          sp == std::string::npos ? 0 : static_cast<unsigned>(std::atoi(data.c_str() + sp + 1));
      data.erase(0, end + 4);
      head_done = true;
      if (status != 200) {
        // An error answer is a JSON body, read whole.
        while (!ec) {
          n = socket.read_some(asio::buffer(buf), ec);
          if (!ec) data.append(buf, n);
        }
        on_event(data);
        return status;
      }
    }
    for (auto end = data.find("\n\n"); end != std::string::npos; end = data.find("\n\n")) {
      std::string frame = data.substr(0, end);
      data.erase(0, end + 2);
      for (size_t pos = 0; pos < frame.size();) {
        auto nl = frame.find('\n', pos);
        if (nl == std::string::npos) nl = frame.size();
        if (frame.compare(pos, 6, "data: ") == 0)
          if (!on_event(frame.substr(pos + 6, nl - pos - 6))) return status;
        pos = nl + 1;
      }
    }
  }
  if (!head_done) return make_error(ErrorCode::internal, "no answer from berthd: " + ec.message());
  return status;
}

}  // namespace berth::net
