#include "net/http_client.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>

namespace berth::net {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

Expected<ClientResponse> unix_request(const std::string& socket_path, const std::string& method,
                                      const std::string& target, const std::string& body) {
  asio::io_context io;
  asio::local::stream_protocol::socket socket(io);
  beast::error_code ec;
  socket.connect(asio::local::stream_protocol::endpoint(socket_path), ec);
  if (ec)
    return make_error(ErrorCode::internal,
                      "cannot connect to berthd at " + socket_path + ": " + ec.message());
  http::request<http::string_body> req{http::string_to_verb(method), target, 11};
  req.set(http::field::host, "berthd");
  req.set(http::field::user_agent, "berthctl");
  if (!body.empty()) req.set(http::field::content_type, "application/json");
  req.body() = body;
  req.prepare_payload();
  http::write(socket, req, ec);
  if (ec) return make_error(ErrorCode::internal, "cannot send to berthd: " + ec.message());
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(64u << 20);
  http::read(socket, buffer, parser, ec);
  if (ec) return make_error(ErrorCode::internal, "no answer from berthd: " + ec.message());
  auto res = parser.release();
  return ClientResponse{static_cast<unsigned>(res.result_int()), std::move(res.body())};
}

}  // namespace berth::net
