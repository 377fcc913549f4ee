#pragma once
// IPv4/IPv6 addresses and prefixes as values. Parsing is strict: a CIDR needs a prefix length.
#include <array>
#include <compare>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/expected.hpp"

namespace berth {

struct IpAddress {
  int family = 4;                   // 4 or 6
  std::array<uint8_t, 16> bytes{};  // IPv4 uses the first 4

  int bits() const { return family == 4 ? 32 : 128; }
  std::string to_string() const;
  // Adds n (may carry across bytes); false on overflow past the family's range.
  bool advance(uint64_t n);
  auto operator<=>(const IpAddress&) const =
      default;  // NOLINT(modernize-use-nullptr): clang 14 false positive
};

struct Cidr {
  IpAddress address;
  int prefix = 0;

  std::string to_string() const;
  IpAddress network() const;
  bool contains(const IpAddress& a) const;
  bool operator==(const Cidr&) const = default;
};

Expected<IpAddress> parse_ip(std::string_view text);
// "10.0.0.5/24"; with allow_bare, a bare address gets the full-length prefix.
Expected<Cidr> parse_cidr(std::string_view text, bool allow_bare = false);

}  // namespace berth
