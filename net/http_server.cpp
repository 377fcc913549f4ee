#include "net/http_server.hpp"

#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <tuple>

#include <spdlog/spdlog.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>

namespace berth::net {
namespace asio = boost::asio;
namespace beast = boost::beast;
using unix_socket = asio::local::stream_protocol::socket;
using unix_acceptor = asio::local::stream_protocol::acceptor;

bool Peer::in_group(gid_t g) const {
  return gid == g || std::find(groups.begin(), groups.end(), g) != groups.end();
}

Response json_response(unsigned status, const std::string& body, unsigned version,
                       bool keep_alive) {
  Response res{static_cast<http::status>(status), version};
  res.set(http::field::server, "berthd");
  res.set(http::field::content_type, "application/json");
  res.keep_alive(keep_alive);
  res.body() = body;
  res.prepare_payload();
  return res;
}

namespace {

Peer peer_of(int fd) {
  Peer p;
  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
    p.uid = cred.uid;
    p.gid = cred.gid;
    p.pid = cred.pid;
  }
  std::vector<gid_t> groups(64);
  len = static_cast<socklen_t>(groups.size() * sizeof(gid_t));
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &len) != 0 && errno == ERANGE) {
    groups.resize(len / sizeof(gid_t));
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &len) != 0) len = 0;
  }
  groups.resize(len / sizeof(gid_t));
  p.groups = std::move(groups);
  return p;
}

}  // namespace

struct UnixHttpServer::Impl : std::enable_shared_from_this<Impl> {
  Impl(asio::io_context& io, UnixServerOptions o, Handler h)
      : acceptor(io), options(std::move(o)), handler(std::move(h)) {}

  unix_acceptor acceptor;
  UnixServerOptions options;
  Handler handler;

  asio::awaitable<void> session(unix_socket socket) {
    auto self = shared_from_this();
    const Peer peer = peer_of(socket.native_handle());
    beast::flat_buffer buffer;
    asio::steady_timer idle(socket.get_executor());
    for (;;) {
      http::request_parser<http::string_body> parser;
      parser.body_limit(options.body_limit);
      // A client that stops sending is dropped after 30 s, so it cannot hold a session forever.
      idle.expires_after(std::chrono::seconds(30));
      idle.async_wait([&socket](beast::error_code ec) {
        if (!ec) socket.cancel();
      });
      auto [ec, n] =
          co_await http::async_read(socket, buffer, parser, asio::as_tuple(asio::use_awaitable));
      idle.cancel();
      if (ec == http::error::end_of_stream || ec == asio::error::eof ||
          ec == asio::error::operation_aborted)
        break;
      if (ec) {
        auto status = ec == http::error::body_limit ? 413u : 400u;
        auto res =
            json_response(status,
                          R"({"error":{"code":"bad_request","message":"malformed HTTP request: )" +
                              ec.message() + "\"}}",
                          11, false);
        co_await http::async_write(socket, res, asio::as_tuple(asio::use_awaitable));
        break;
      }
      Request req = parser.release();
      const bool keep_alive = req.keep_alive();
      Reply reply = co_await handler(std::move(req), peer);
      if (reply.stream) {
        co_await stream(socket, reply);
        break;
      }
      Response& res = reply.response;
      res.keep_alive(keep_alive);
      auto [wec, wn] = co_await http::async_write(socket, res, asio::as_tuple(asio::use_awaitable));
      if (wec || !keep_alive) break;
    }
    beast::error_code ignored;
    socket.shutdown(unix_socket::shutdown_send, ignored);
  }

  // The head without a length, then each chunk as it comes; the body ends when the connection
  // closes (HTTP/1.1, Connection: close).
  asio::awaitable<void> stream(unix_socket& socket, Reply& reply) {
    std::string head = "HTTP/1.1 " + std::to_string(reply.response.result_int()) + " " +
                       std::string(reply.response.reason()) + "\r\n";
    for (const auto& f : reply.response) {
      if (f.name() == http::field::content_length || f.name() == http::field::connection) continue;
      head += std::string(f.name_string()) + ": " + std::string(f.value()) + "\r\n";
    }
    head += "Connection: close\r\n\r\n";
    // A reader that stops reading is dropped when a write has not finished in 10 s.
    asio::steady_timer deadline(socket.get_executor());
    auto write = [&](const std::string& text) -> asio::awaitable<boost::system::error_code> {
      deadline.expires_after(std::chrono::seconds(10));
      deadline.async_wait([&socket](beast::error_code e) {
        if (!e) socket.cancel();
      });
      auto [e, n] = co_await asio::async_write(socket, asio::buffer(text),
                                               asio::as_tuple(asio::use_awaitable));
      deadline.cancel();
      co_return e;
    };
    auto ec = co_await write(head);
    while (!ec) {
      auto chunk = co_await reply.stream->next();
      if (!chunk) break;
      ec = co_await write(*chunk);
    }
  }

  asio::awaitable<void> accept_loop() {
    auto self = shared_from_this();
    for (;;) {
      auto [ec, socket] = co_await acceptor.async_accept(asio::as_tuple(asio::use_awaitable));
      if (ec == asio::error::operation_aborted || !acceptor.is_open()) co_return;
      if (ec) {
        spdlog::warn("BERTH_ACCEPT_FAILED {}", ec.message());
        continue;
      }
      asio::co_spawn(acceptor.get_executor(), session(std::move(socket)), asio::detached);
    }
  }
};

UnixHttpServer::UnixHttpServer(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
UnixHttpServer::~UnixHttpServer() {
  stop();
}

void UnixHttpServer::stop() {
  if (impl_ && impl_->acceptor.is_open()) {
    beast::error_code ec;
    impl_->acceptor.close(ec);
    ::unlink(impl_->options.path.c_str());
  }
}

Expected<std::unique_ptr<UnixHttpServer>> UnixHttpServer::listen(asio::io_context& io,
                                                                 UnixServerOptions options,
                                                                 Handler handler) {
  namespace fs = std::filesystem;
  const std::string path = options.path;
  std::error_code fec;
  fs::create_directories(fs::path(path).parent_path(), fec);
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode))
      return make_error(ErrorCode::internal,
                        "control socket path " + path + " exists and is not a socket");
    // A socket nobody answers on is a leftover of a previous run; one that answers is a live agent.
    unix_socket probe(io);
    beast::error_code ec;
    probe.connect(asio::local::stream_protocol::endpoint(path), ec);
    if (!ec) return make_error(ErrorCode::internal, "another berthd is listening on " + path);
    ::unlink(path.c_str());
  }
  auto impl = std::make_shared<Impl>(io, std::move(options), std::move(handler));
  beast::error_code ec;
  impl->acceptor.open(asio::local::stream_protocol(), ec);
  if (!ec) impl->acceptor.bind(asio::local::stream_protocol::endpoint(path), ec);
  if (!ec) impl->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return make_error(ErrorCode::internal, "cannot listen on " + path + ": " + ec.message());
  if (::chmod(path.c_str(), impl->options.mode) != 0 ||
      (impl->options.group &&
       ::chown(path.c_str(), static_cast<uid_t>(-1), *impl->options.group) != 0))
    return make_error(ErrorCode::internal,
                      "cannot set mode/group of " + path + ": " + std::strerror(errno));
  asio::co_spawn(io, impl->accept_loop(), asio::detached);
  return std::unique_ptr<UnixHttpServer>(new UnixHttpServer(std::move(impl)));
}

}  // namespace berth::net
