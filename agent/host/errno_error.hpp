#pragma once
// A failed OS call as berth's error: what was being done, to which path, and errno's text.
// Call it right after the failing call, before anything else can change errno.
#include <cerrno>
#include <cstring>
#include <string>

#include "core/error.hpp"

namespace berth::agent {

inline Error errno_error(const std::string& what, const std::string& path) {
  return make_error(ErrorCode::internal, what + " " + path + ": " + std::strerror(errno));
}

}  // namespace berth::agent
