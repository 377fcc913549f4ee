#pragma once
// HTTP/1.1 over a unix socket or TCP (Boost.Beast), one server code for both. The listener
// accepts, a session reads a request, asks the handler for a response and writes it; the handler
// knows nothing about sockets. Hardened against peers that hold connections, pipeline and never
// read: deadlines on each read and write owned by the stream, one request at a time per
// connection, connection caps in total and per peer, EMFILE backed off with a reserve descriptor,
// repeated warnings rate-limited.
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>

#include "core/expected.hpp"

namespace berth::net {

namespace http = boost::beast::http;
using Request = http::request<http::string_body>;
using Response = http::response<http::string_body>;

// Who is on the other end: on the unix socket from SO_PEERCRED and SO_PEERGROUPS (fixed at
// connect time); on TCP only its address, and never a local user.
struct Peer {
  uid_t uid = static_cast<uid_t>(-1);
  gid_t gid = static_cast<gid_t>(-1);
  pid_t pid = 0;
  std::vector<gid_t> groups;
  bool local = true;    // false on TCP: no credentials, no privileges
  std::string address;  // TCP: the remote address
  bool in_group(gid_t g) const;
};

// A response that stays open (Server-Sent Events): after the head, the server writes what `next`
// returns until it returns nothing or the peer goes away.
class EventSource {
 public:
  virtual ~EventSource() = default;
  virtual boost::asio::awaitable<std::optional<std::string>> next() = 0;
};

// What a handler answers: a whole response, or a streamed one.
struct Reply {
  Reply(Response r) : response(std::move(r)) {}  // NOLINT(google-explicit-constructor)
  Reply(Response r, std::shared_ptr<EventSource> s)
      : response(std::move(r)), stream(std::move(s)) {}
  Response response;
  std::shared_ptr<EventSource> stream;
};

using Handler = std::function<boost::asio::awaitable<Reply>(Request, Peer)>;

struct Limits {
  size_t body_limit = 1 << 20;
  size_t header_limit = 16 << 10;
  std::chrono::seconds read_timeout{10};   // a whole request, from its first byte
  std::chrono::seconds idle_timeout{30};   // between requests on a kept-alive connection
  std::chrono::seconds write_timeout{10};  // a whole response (each chunk of a stream)
  size_t max_connections = 256;
  size_t max_per_peer = 32;  // per uid on the unix socket, per address on TCP
  // Requests per second (and burst) for each peer but root on the unix socket: a peer that
  // pipelines faster is paced, not served at the cost of everyone else.
  double peer_rate = 200;
  double peer_burst = 400;
};

struct UnixServerOptions {
  std::string path;
  mode_t mode = 0660;
  std::optional<gid_t> group;  // socket file group
  size_t body_limit = 1 << 20;
  Limits limits = {};
};

struct TcpServerOptions {
  std::string address = "127.0.0.1";
  uint16_t port = 0;  // 0: any free port (tests)
  Limits limits = {};
  std::string tls_cert = {}, tls_key = {};  // PEM files: HTTPS (Asio SSL) when set
};

class TcpHttpServer {
 public:
  static Expected<std::unique_ptr<TcpHttpServer>> listen(boost::asio::io_context& io,
                                                         TcpServerOptions options, Handler handler);
  ~TcpHttpServer();
  void stop();
  uint16_t port() const;

 private:
  struct Impl;
  explicit TcpHttpServer(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;
};

// The one error body of the API: {"error":{"code":CODE,"message":MESSAGE}}, JSON-escaped.
std::string error_body(std::string_view code, std::string_view message);

class UnixHttpServer {
 public:
  static Expected<std::unique_ptr<UnixHttpServer>> listen(boost::asio::io_context& io,
                                                          UnixServerOptions options,
                                                          Handler handler);
  ~UnixHttpServer();
  void stop();

 private:
  struct Impl;
  explicit UnixHttpServer(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;
};

// A JSON response with the right headers.
Response json_response(unsigned status, const std::string& body, unsigned version, bool keep_alive);

}  // namespace berth::net
