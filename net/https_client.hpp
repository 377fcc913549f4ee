#pragma once
// An HTTPS client on the reactor (Beast over Asio SSL): one request per connection, the server's
// certificate verified against the system's CAs (or a given bundle) and its host name, a deadline
// over the whole exchange. For GitHub's REST API.
#include <chrono>
#include <map>
#include <string>

#include <boost/asio/awaitable.hpp>

#include "core/expected.hpp"

namespace berth::net {

struct HttpsResponse {
  unsigned status = 0;
  std::string body;
};

// `url`: https://HOST[:PORT]/PATH. Errors (connect, TLS, timeout) say which and where.
boost::asio::awaitable<Expected<HttpsResponse>> https_request(
    std::string method, std::string url, std::map<std::string, std::string> headers,
    std::string body, std::string ca_file, std::chrono::seconds timeout);

}  // namespace berth::net
