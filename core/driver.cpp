#include "core/driver.hpp"

namespace berth {
namespace {

bool version_char(char c) {
  return (c >= '0' && c <= '9') || c == '.';
}

// A dotted version: digits and dots, starting and ending with a digit, with at least one dot.
bool is_version(std::string_view v) {
  if (v.empty() || v.front() == '.' || v.back() == '.' || v.find('.') == std::string_view::npos)
    return false;
  for (char c : v)
    if (!version_char(c)) return false;
  return true;
}

}  // namespace

std::optional<DriverPolicy> driver_policy_from_string(std::string_view s) {
  if (s == "off") return DriverPolicy::off;
  if (s == "warn") return DriverPolicy::warn;
  if (s == "refuse") return DriverPolicy::refuse;
  return std::nullopt;
}

std::string_view to_string(DriverPolicy p) {
  switch (p) {
    case DriverPolicy::off:
      return "off";
    case DriverPolicy::warn:
      return "warn";
    case DriverPolicy::refuse:
      return "refuse";
  }
  return "warn";
}

std::optional<std::string> host_driver_version(std::string_view text) {
  auto at = text.find("Kernel Module");
  if (at == std::string_view::npos) return std::nullopt;
  text = text.substr(at + 13);
  // The first dotted version after it ("Open Kernel Module" too).
  size_t i = 0;
  while (i < text.size() && text[i] != '\n') {
    while (i < text.size() && (text[i] == ' ' || text[i] == '\t')) ++i;
    size_t j = i;
    while (j < text.size() && text[j] != ' ' && text[j] != '\t' && text[j] != '\n') ++j;
    auto word = text.substr(i, j - i);
    if (is_version(word)) return std::string(word);
    if (j == i) break;
    i = j;
  }
  return std::nullopt;
}

std::optional<std::string> libcuda_version(std::string_view target) {
  if (auto slash = target.rfind('/'); slash != std::string_view::npos)
    target = target.substr(slash + 1);
  constexpr std::string_view prefix = "libcuda.so.";
  if (target.substr(0, prefix.size()) != prefix) return std::nullopt;
  auto v = target.substr(prefix.size());
  if (!is_version(v)) return std::nullopt;
  return std::string(v);
}

std::string_view to_string(DriverCheck::Status s) {
  switch (s) {
    case DriverCheck::Status::match:
      return "match";
    case DriverCheck::Status::mismatch:
      return "mismatch";
    case DriverCheck::Status::unknown:
      return "unknown";
  }
  return "unknown";
}

DriverCheck compare_drivers(const std::optional<std::string>& host,
                            const std::string& container_link, const std::string& why_not_found) {
  DriverCheck c;
  c.host = host.value_or("");
  if (!host) {
    c.message = "the host's NVIDIA driver version is unknown (no /proc/driver/nvidia/version)";
    return c;
  }
  if (container_link.empty()) {
    c.message =
        "no libcuda.so.1 link in the container (" + why_not_found + "); host driver " + *host;
    return c;
  }
  auto v = libcuda_version(container_link);
  if (!v) {
    c.message = "the container's libcuda.so.1 points to '" + container_link +
                "', which names no driver version; host driver " + *host;
    return c;
  }
  c.container = *v;
  c.status = *v == *host ? DriverCheck::Status::match : DriverCheck::Status::mismatch;
  c.message = c.status == DriverCheck::Status::match
                  ? "driver " + *host + " on the host and in the container"
                  : "driver mismatch: host kernel module " + *host +
                        ", the container's user-space driver (libcuda.so.1) " + *v;
  return c;
}

}  // namespace berth
