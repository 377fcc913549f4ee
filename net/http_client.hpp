#pragma once
// A blocking HTTP/1.1 client over a unix socket, for berthctl and tests (never the reactor).
#include <string>

#include "core/expected.hpp"

namespace berth::net {

struct ClientResponse {
  unsigned status = 0;
  std::string body;
};

Expected<ClientResponse> unix_request(const std::string& socket_path, const std::string& method,
                                      const std::string& target, const std::string& body = {});

}  // namespace berth::net
