#pragma once
// A blocking HTTP/1.1 client over a unix socket, for berthctl and tests (never the reactor).
#include <chrono>
#include <functional>
#include <string>

#include "core/expected.hpp"

namespace berth::net {

struct ClientResponse {
  unsigned status = 0;
  std::string body;
};

// GET `target` as a Server-Sent Events stream: `on_event` gets each frame's data (the text after
// "data: "), until it returns false or the stream ends. Returns the HTTP status, or an error.
Expected<unsigned> unix_event_stream(const std::string& socket_path, const std::string& target,
                                     const std::function<bool(const std::string&)>& on_event);

// `timeout` bounds the whole exchange after connecting (0: none).
Expected<ClientResponse> unix_request(const std::string& socket_path, const std::string& method,
                                      const std::string& target, const std::string& body = {},
                                      std::chrono::milliseconds timeout = {});

}  // namespace berth::net
