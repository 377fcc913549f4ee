#pragma once
// HTTP/1.1 over a unix socket (Boost.Beast). The listener accepts, a session reads a request,
// asks the handler for a response and writes it; the handler knows nothing about sockets.
#include <sys/types.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
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

// Who is on the other end, from SO_PEERCRED and SO_PEERGROUPS (fixed at connect time).
struct Peer {
  uid_t uid = static_cast<uid_t>(-1);
  gid_t gid = static_cast<gid_t>(-1);
  pid_t pid = 0;
  std::vector<gid_t> groups;
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

struct UnixServerOptions {
  std::string path;
  mode_t mode = 0660;
  std::optional<gid_t> group;  // socket file group
  size_t body_limit = 1 << 20;
};

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
