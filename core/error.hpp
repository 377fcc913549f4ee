#pragma once
// Stable error codes. The string form is part of the API: never rename one.
#include <string>
#include <string_view>

namespace berth {

enum class ErrorCode {
  bad_request,       // malformed or inconsistent request fields
  bad_json,          // body is not JSON
  bad_address,       // an IP address or CIDR that does not parse
  unknown_owner,     // no berth with this owner
  unknown_pool,      // network profile names a pool that is not configured
  conflict,          // owner exists with a different request, or attached elsewhere
  busy,              // another operation on this berth is in progress
  no_capacity,       // placement impossible with what is free
  pool_exhausted,    // no free address in the pool
  invalid_state,     // the operation is not allowed in the berth's state
  target_not_found,  // the pid or container does not exist
  attach_failed,     // a host step failed; rolled back
  detach_failed,     // an inverse step failed; the berth is marked failed
  forbidden,         // the peer may not mutate
  not_found,         // no such API route
  method_not_allowed,
  driver_mismatch,   // the container's user-space driver differs from the host's (policy refuse)
  bad_signature,     // a webhook delivery without a valid X-Hub-Signature-256
  host_unsupported,  // the host is not set up for what the request asks (the message names the fix)
  internal,
};

std::string_view to_string(ErrorCode code);
int http_status(ErrorCode code);

struct Error {
  ErrorCode code = ErrorCode::internal;
  std::string message;
};

inline Error make_error(ErrorCode code, std::string message) {
  return Error{code, std::move(message)};
}

}  // namespace berth
