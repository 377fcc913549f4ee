#pragma once
// The driver check of lab servers (seed 004): the host's NVIDIA kernel driver against the
// user-space driver a container ships (the version in the name libcuda.so.1 points to).
// Pure parsing and comparison; agent/host/driver_check.cpp reads the two texts.
#include <optional>
#include <string>
#include <string_view>

namespace berth {

enum class DriverPolicy { off, warn, refuse };
std::optional<DriverPolicy> driver_policy_from_string(std::string_view s);
std::string_view to_string(DriverPolicy p);

// "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.104.05  Sat Aug 19 ..." -> "535.104.05".
std::optional<std::string> host_driver_version(std::string_view proc_version);
// "libcuda.so.535.104.05" or ".../libcuda.so.535.104.05" -> "535.104.05".
std::optional<std::string> libcuda_version(std::string_view link_target);

struct DriverCheck {
  enum class Status { match, mismatch, unknown } status = Status::unknown;
  std::string host;       // empty when unknown
  std::string container;  // empty when unknown
  std::string message;
};
std::string_view to_string(DriverCheck::Status s);

// `container_link`: what libcuda.so.1 points to inside the container (empty: not found there).
DriverCheck compare_drivers(const std::optional<std::string>& host,
                            const std::string& container_link, const std::string& why_not_found);

}  // namespace berth
