#include "net/http_server.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <tuple>

#include <spdlog/spdlog.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/basic_stream.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <nlohmann/json.hpp>

#include "net/rate_limited_log.hpp"

namespace berth::net {
namespace asio = boost::asio;
namespace beast = boost::beast;
using unix_protocol = asio::local::stream_protocol;
using tcp = asio::ip::tcp;

bool Peer::in_group(gid_t g) const {
  return local && (gid == g || std::find(groups.begin(), groups.end(), g) != groups.end());
}

std::string error_body(std::string_view code, std::string_view message) {
  nlohmann::json body = {{"error", {{"code", code}, {"message", message}}}};
  return body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
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

Peer peer_of(unix_protocol::socket& socket) {
  const int fd = socket.native_handle();
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
  p.address = "uid " + std::to_string(p.uid);
  return p;
}

Peer peer_of(tcp::socket& socket) {
  Peer p;
  p.local = false;
  beast::error_code ec;
  auto ep = socket.remote_endpoint(ec);
  p.address = ec ? "unknown" : ep.address().to_string();
  return p;
}

// The key a connection counts against: a uid on the unix socket, an address on TCP.
std::string peer_key(const Peer& p) {
  return p.local ? "uid:" + std::to_string(p.uid) : p.address;
}

}  // namespace

// One listener of either protocol; sessions run as coroutines on the reactor.
template <class Protocol>
struct Server : std::enable_shared_from_this<Server<Protocol>> {
  using socket_type = typename Protocol::socket;
  using stream_type = beast::basic_stream<Protocol>;

  Server(asio::io_context& io, Limits l, Handler h, std::string name)
      : acceptor(io), backoff(io), limits(l), handler(std::move(h)), name(std::move(name)) {
    reserve = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  }
  ~Server() {
    if (reserve >= 0) ::close(reserve);
  }

  typename Protocol::acceptor acceptor;
  asio::steady_timer backoff;
  Limits limits;
  Handler handler;
  std::string name;
  std::shared_ptr<asio::ssl::context> tls;  // TCP only: HTTPS when set
  int reserve = -1;  // a descriptor given up to accept and close a connection when out of them
  size_t connections = 0;
  std::map<std::string, size_t> per_peer;
  RateLimitedLog log;
  struct Bucket {
    double tokens = 0;
    std::chrono::steady_clock::time_point at{};
  };
  std::map<std::string, Bucket> buckets;  // kept after a peer's connections close: no new burst

  // How long this peer's next request must wait for its turn (zero: now).
  std::chrono::milliseconds pace(const std::string& key) {
    auto now = std::chrono::steady_clock::now();
    auto [it, fresh] = buckets.try_emplace(key, Bucket{limits.peer_burst, now});
    if (fresh && buckets.size() > 4096) {
      // Bounded memory for many TCP addresses: forget one that has refilled.
      for (auto b = buckets.begin(); b != buckets.end(); ++b)
        if (b != it && b->second.tokens >= limits.peer_burst) {
          buckets.erase(b);
          break;
        }
    }
    Bucket& b = it->second;
    b.tokens =
        std::min(limits.peer_burst,
                 b.tokens + std::chrono::duration<double>(now - b.at).count() * limits.peer_rate);
    b.at = now;
    b.tokens -= 1;
    if (b.tokens >= 0) return std::chrono::milliseconds(0);
    return std::chrono::milliseconds(static_cast<long>(-b.tokens / limits.peer_rate * 1000) + 1);
  }

  template <class Stream>
  asio::awaitable<void> reply_and_close(Stream& stream, unsigned status, std::string_view code,
                                        std::string_view message) {
    auto res = json_response(status, error_body(code, message), 11, false);
    beast::get_lowest_layer(stream).expires_after(limits.write_timeout);
    co_await http::async_write(stream, res, asio::as_tuple(asio::use_awaitable));
  }

  // Counts the connection against the caps, or closes it at once, unanswered, when it is one too
  // many: in the accept loop, before anything is made for it, because a flood's connections wait
  // in the same backlog as root's and each costs the time it takes to turn it away.
  bool admit(socket_type& socket, const Peer& peer, const std::string& key) {
    auto it = per_peer.find(key);
    const size_t mine = (it == per_peer.end() ? 0 : it->second) + 1;
    if (connections + 1 > limits.max_connections || mine > limits.max_per_peer) {
      log.warn("BERTH_HTTP_CONNECTION_CAP", [&] {
        return name + ": closed a connection from " + peer.address + " (" + std::to_string(mine) +
               " of its own, " + std::to_string(connections + 1) + " in total)";
      });
      beast::error_code ec;
      socket.close(ec);
      return false;
    }
    ++connections;
    if (it == per_peer.end())
      per_peer.emplace(key, 1);
    else
      ++it->second;
    return true;
  }

  asio::awaitable<void> session(socket_type socket, Peer peer, std::string key) {
    auto self = this->shared_from_this();
    stream_type stream(std::move(socket));
    struct Release {
      Server* s;
      std::string key;
      ~Release() {
        --s->connections;
        if (--s->per_peer[key] == 0) s->per_peer.erase(key);
      }
    } release{this, key};
    if constexpr (std::is_same_v<Protocol, tcp>) {
      if (tls) {
        beast::ssl_stream<stream_type> secure(std::move(stream), *tls);
        beast::get_lowest_layer(secure).expires_after(limits.read_timeout);
        auto [ec] = co_await secure.async_handshake(asio::ssl::stream_base::server,
                                                    asio::as_tuple(asio::use_awaitable));
        if (ec) {
          log.warn("BERTH_TLS_HANDSHAKE_FAILED",
                   [&] { return name + ": " + peer.address + ": " + ec.message(); });
          co_return;
        }
        co_await serve(secure, peer, key);
        co_return;
      }
    }
    co_await serve(stream, peer, key);
  }

  // Beast reads at most the buffer's free room, which starts at 512 bytes, so a webhook body would
  // take many receives. Room for the declared body is made only once its headers are in, so the
  // connections of a flood that never send a body cost no more than before.
  static void reserve_for_body(beast::flat_buffer& buffer, boost::optional<std::uint64_t> length) {
    constexpr std::uint64_t most = 1 << 20;
    if (!length || *length == 0) return;
    const std::size_t want = buffer.size() + static_cast<std::size_t>(std::min(*length, most));
    if (want > buffer.capacity()) buffer.reserve(want);
  }

  // Requests one at a time on one connection (plain or TLS), until the peer closes or fails.
  template <class Stream>
  asio::awaitable<void> serve(Stream& stream, const Peer& peer, const std::string& key) {
    auto& lowest = beast::get_lowest_layer(stream);
    const bool paced = !(peer.local && peer.uid == 0);
    asio::steady_timer turn(stream.get_executor());
    beast::flat_buffer buffer;
    bool first = true;
    for (;;) {
      http::request_parser<http::string_body> parser;
      parser.body_limit(limits.body_limit);
      parser.header_limit(static_cast<uint32_t>(limits.header_limit));
      // Wait for the next request's first byte (idle), then give the whole request a deadline.
      lowest.expires_after(first ? limits.read_timeout : limits.idle_timeout);
      auto [hec, hn] = co_await http::async_read_header(stream, buffer, parser,
                                                        asio::as_tuple(asio::use_awaitable));
      beast::error_code ec = hec;
      if (!ec) {
        lowest.expires_after(limits.read_timeout);
        reserve_for_body(buffer, parser.content_length());
        auto [bec, bn] =
            co_await http::async_read(stream, buffer, parser, asio::as_tuple(asio::use_awaitable));
        ec = bec;
      }
      first = false;
      if (ec == http::error::end_of_stream || ec == asio::error::eof ||
          ec == asio::error::operation_aborted || ec == asio::error::connection_reset)
        break;
      if (ec == beast::error::timeout) {
        log.warn("BERTH_HTTP_TIMEOUT",
                 [&] { return name + ": dropped " + peer.address + ", too slow to send"; });
        break;
      }
      if (ec) {
        const bool too_big = ec == http::error::body_limit || ec == http::error::header_limit;
        co_await reply_and_close(stream, too_big ? 413 : 400, "bad_request",
                                 "malformed HTTP request: " + ec.message());
        break;
      }
      Request req = parser.release();
      const bool keep_alive = req.keep_alive();
      if (paced) {
        if (auto wait = pace(key); wait.count() > 0) {
          turn.expires_after(wait);
          co_await turn.async_wait(asio::as_tuple(asio::use_awaitable));
        }
      }
      // One request at a time: the next is not read before this answer is written.
      Reply reply = co_await handler(std::move(req), peer);
      if (reply.stream) {
        co_await stream_out(stream, reply);
        break;
      }
      Response& res = reply.response;
      res.keep_alive(keep_alive);
      lowest.expires_after(limits.write_timeout);
      auto [wec, wn] = co_await http::async_write(stream, res, asio::as_tuple(asio::use_awaitable));
      if (wec == beast::error::timeout)
        log.warn("BERTH_HTTP_TIMEOUT",
                 [&] { return name + ": dropped " + peer.address + ", not reading"; });
      if (wec || !keep_alive) break;
    }
    beast::error_code ignored;
    lowest.socket().shutdown(socket_type::shutdown_send, ignored);
  }

  // The head without a length, then each chunk as it comes; the body ends when the connection
  // closes (HTTP/1.1, Connection: close). A reader whose write has not finished in
  // write_timeout is dropped.
  template <class Stream>
  asio::awaitable<void> stream_out(Stream& stream, Reply& reply) {
    auto& lowest = beast::get_lowest_layer(stream);
    std::string head = "HTTP/1.1 " + std::to_string(reply.response.result_int()) + " " +
                       std::string(reply.response.reason()) + "\r\n";
    for (const auto& f : reply.response) {
      if (f.name() == http::field::content_length || f.name() == http::field::connection) continue;
      head += std::string(f.name_string()) + ": " + std::string(f.value()) + "\r\n";
    }
    head += "Connection: close\r\n\r\n";
    auto write = [&](const std::string& text) -> asio::awaitable<boost::system::error_code> {
      lowest.expires_after(limits.write_timeout);
      auto [e, n] = co_await asio::async_write(stream, asio::buffer(text),
                                               asio::as_tuple(asio::use_awaitable));
      co_return e;
    };
    auto ec = co_await write(head);
    while (!ec) {
      lowest.expires_never();  // waiting for the next event is not the peer's fault
      auto chunk = co_await reply.stream->next();
      if (!chunk) break;
      ec = co_await write(*chunk);
    }
  }

  asio::awaitable<void> accept_loop() {
    auto self = this->shared_from_this();
    for (;;) {
      auto [ec, socket] = co_await acceptor.async_accept(asio::as_tuple(asio::use_awaitable));
      if (ec == asio::error::operation_aborted || !acceptor.is_open()) co_return;
      if (ec == asio::error::no_descriptors || ec.value() == ENFILE || ec.value() == ENOBUFS ||
          ec.value() == ENOMEM) {
        // Out of descriptors: give up the reserve to take the waiting connection and close it,
        // so the backlog does not spin the reactor; then pause before accepting again.
        log.warn("BERTH_ACCEPT_FAILED",
                 [&] { return name + ": " + ec.message() + "; backing off"; });
        if (reserve >= 0) {
          ::close(reserve);
          int fd = ::accept4(acceptor.native_handle(), nullptr, nullptr, SOCK_CLOEXEC);
          if (fd >= 0) ::close(fd);
          reserve = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
        }
        backoff.expires_after(std::chrono::milliseconds(100));
        co_await backoff.async_wait(asio::as_tuple(asio::use_awaitable));
        continue;
      }
      if (ec) {
        log.warn("BERTH_ACCEPT_FAILED", [&] { return name + ": " + ec.message(); });
        continue;
      }
      Peer peer = peer_of(socket);
      std::string key = peer_key(peer);
      if (!admit(socket, peer, key)) continue;
      asio::co_spawn(acceptor.get_executor(),
                     session(std::move(socket), std::move(peer), std::move(key)), asio::detached);
    }
  }
};

struct UnixHttpServer::Impl {
  std::shared_ptr<Server<unix_protocol>> server;
  std::string path;
};

UnixHttpServer::UnixHttpServer(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
UnixHttpServer::~UnixHttpServer() {
  stop();
}

void UnixHttpServer::stop() {
  if (impl_ && impl_->server->acceptor.is_open()) {
    beast::error_code ec;
    impl_->server->acceptor.close(ec);
    impl_->server->backoff.cancel();
    ::unlink(impl_->path.c_str());
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
    unix_protocol::socket probe(io);
    beast::error_code ec;
    probe.connect(unix_protocol::endpoint(path), ec);
    if (!ec) return make_error(ErrorCode::internal, "another berthd is listening on " + path);
    ::unlink(path.c_str());
  }
  Limits limits = options.limits;
  limits.body_limit = options.body_limit;
  auto impl = std::make_shared<Impl>();
  impl->path = path;
  impl->server = std::make_shared<Server<unix_protocol>>(io, limits, std::move(handler), path);
  auto& acceptor = impl->server->acceptor;
  beast::error_code ec;
  acceptor.open(unix_protocol(), ec);
  if (!ec) acceptor.bind(unix_protocol::endpoint(path), ec);
  if (ec) return make_error(ErrorCode::internal, "cannot bind " + path + ": " + ec.message());
  // Mode and group before listen(): until then nobody can connect, so no one ever reaches the
  // socket under looser permissions.
  if (::chmod(path.c_str(), options.mode) != 0 ||
      (options.group && ::chown(path.c_str(), static_cast<uid_t>(-1), *options.group) != 0)) {
    const std::string why = std::strerror(errno);
    ::unlink(path.c_str());
    return make_error(ErrorCode::internal, "cannot set mode/group of " + path + ": " + why);
  }
  acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return make_error(ErrorCode::internal, "cannot listen on " + path + ": " + ec.message());
  asio::co_spawn(io, impl->server->accept_loop(), asio::detached);
  return std::unique_ptr<UnixHttpServer>(new UnixHttpServer(std::move(impl)));
}

struct TcpHttpServer::Impl {
  std::shared_ptr<Server<tcp>> server;
};

TcpHttpServer::TcpHttpServer(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
TcpHttpServer::~TcpHttpServer() {
  stop();
}

void TcpHttpServer::stop() {
  if (impl_ && impl_->server->acceptor.is_open()) {
    beast::error_code ec;
    impl_->server->acceptor.close(ec);
    impl_->server->backoff.cancel();
  }
}

uint16_t TcpHttpServer::port() const {
  beast::error_code ec;
  auto ep = impl_->server->acceptor.local_endpoint(ec);
  return ec ? 0 : ep.port();
}

Expected<std::unique_ptr<TcpHttpServer>> TcpHttpServer::listen(asio::io_context& io,
                                                               TcpServerOptions options,
                                                               Handler handler) {
  beast::error_code ec;
  auto address = asio::ip::make_address(options.address, ec);
  if (ec)
    return make_error(ErrorCode::bad_request, "'" + options.address + "' is not an IP address");
  const std::string where = options.address + ":" + std::to_string(options.port);
  auto impl = std::make_shared<Impl>();
  impl->server = std::make_shared<Server<tcp>>(io, options.limits, std::move(handler), where);
  if (!options.tls_cert.empty()) {
    auto ctx = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_server);
    ctx->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                     asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                     asio::ssl::context::no_tlsv1_1);
    ctx->use_certificate_chain_file(options.tls_cert, ec);
    if (ec)
      return make_error(ErrorCode::internal,
                        "TLS certificate " + options.tls_cert + ": " + ec.message());
    ctx->use_private_key_file(options.tls_key, asio::ssl::context::pem, ec);
    if (ec)
      return make_error(ErrorCode::internal, "TLS key " + options.tls_key + ": " + ec.message());
    impl->server->tls = std::move(ctx);
  }
  auto& acceptor = impl->server->acceptor;
  tcp::endpoint ep(address, options.port);
  acceptor.open(ep.protocol(), ec);
  if (!ec) acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor.bind(ep, ec);
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return make_error(ErrorCode::internal, "cannot listen on " + where + ": " + ec.message());
  asio::co_spawn(io, impl->server->accept_loop(), asio::detached);
  return std::unique_ptr<TcpHttpServer>(new TcpHttpServer(std::move(impl)));
}

}  // namespace berth::net
