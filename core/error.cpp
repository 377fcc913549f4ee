#include "core/error.hpp"

namespace berth {

std::string_view to_string(ErrorCode code) {
  switch (code) {
    case ErrorCode::bad_request:
      return "bad_request";
    case ErrorCode::bad_json:
      return "bad_json";
    case ErrorCode::bad_address:
      return "bad_address";
    case ErrorCode::unknown_owner:
      return "unknown_owner";
    case ErrorCode::unknown_pool:
      return "unknown_pool";
    case ErrorCode::conflict:
      return "conflict";
    case ErrorCode::busy:
      return "busy";
    case ErrorCode::no_capacity:
      return "no_capacity";
    case ErrorCode::pool_exhausted:
      return "pool_exhausted";
    case ErrorCode::invalid_state:
      return "invalid_state";
    case ErrorCode::target_not_found:
      return "target_not_found";
    case ErrorCode::attach_failed:
      return "attach_failed";
    case ErrorCode::detach_failed:
      return "detach_failed";
    case ErrorCode::forbidden:
      return "forbidden";
    case ErrorCode::not_found:
      return "not_found";
    case ErrorCode::method_not_allowed:
      return "method_not_allowed";
    case ErrorCode::driver_mismatch:
      return "driver_mismatch";
    case ErrorCode::bad_signature:
      return "bad_signature";
    case ErrorCode::host_unsupported:
      return "host_unsupported";
    case ErrorCode::internal:
      return "internal";
  }
  return "internal";
}

int http_status(ErrorCode code) {
  switch (code) {
    case ErrorCode::bad_request:
    case ErrorCode::bad_json:
    case ErrorCode::bad_address:
      return 400;
    case ErrorCode::bad_signature:
      return 401;
    case ErrorCode::forbidden:
      return 403;
    case ErrorCode::unknown_owner:
    case ErrorCode::not_found:
    case ErrorCode::target_not_found:
      return 404;
    case ErrorCode::method_not_allowed:
      return 405;
    case ErrorCode::conflict:
    case ErrorCode::busy:
    case ErrorCode::invalid_state:
    case ErrorCode::driver_mismatch:
      return 409;
    case ErrorCode::unknown_pool:
    case ErrorCode::host_unsupported:
    case ErrorCode::no_capacity:
    case ErrorCode::pool_exhausted:
      return 422;
    case ErrorCode::attach_failed:
    case ErrorCode::detach_failed:
    case ErrorCode::internal:
      return 500;
  }
  return 500;
}

}  // namespace berth
