#include "core/ip.hpp"

#include <arpa/inet.h>  // inet_pton/ntop: pure conversions, no system calls

#include <algorithm>
#include <charconv>

namespace berth {

std::string IpAddress::to_string() const {
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(family == 4 ? AF_INET : AF_INET6, bytes.data(), buf, sizeof buf);
  return buf;
}

bool IpAddress::advance(uint64_t n) {
  int last = bits() / 8 - 1;
  for (int i = last; i >= 0 && n > 0; --i) {
    uint64_t sum = bytes[i] + (n & 0xff);
    bytes[i] = static_cast<uint8_t>(sum & 0xff);
    n = (n >> 8) + (sum >> 8);
  }
  return n == 0;
}

std::string Cidr::to_string() const {
  return address.to_string() + "/" + std::to_string(prefix);
}

IpAddress Cidr::network() const {
  IpAddress n = address;
  for (int i = 0; i < 16; ++i) {
    int keep = std::clamp(prefix - i * 8, 0, 8);
    n.bytes[i] &= static_cast<uint8_t>(keep == 0 ? 0 : (0xff << (8 - keep)) & 0xff);
  }
  return n;
}

bool Cidr::contains(const IpAddress& a) const {
  if (a.family != address.family) return false;
  Cidr other{a, prefix};
  return other.network() == network();
}

Expected<IpAddress> parse_ip(std::string_view text) {
  std::string s(text);
  IpAddress a;
  if (inet_pton(AF_INET, s.c_str(), a.bytes.data()) == 1) {
    a.family = 4;
    return a;
  }
  if (inet_pton(AF_INET6, s.c_str(), a.bytes.data()) == 1) {
    a.family = 6;
    return a;
  }
  return make_error(ErrorCode::bad_address, "'" + s + "' is not an IPv4 or IPv6 address");
}

Expected<Cidr> parse_cidr(std::string_view text, bool allow_bare) {
  auto slash = text.find('/');
  if (slash == std::string_view::npos && !allow_bare)
    return make_error(ErrorCode::bad_address,
                      "'" + std::string(text) + "' is not a CIDR (expected ADDRESS/PREFIX)");
  auto addr = parse_ip(text.substr(0, slash));
  if (!addr) return addr.error();
  Cidr c{*addr, addr->bits()};
  if (slash != std::string_view::npos) {
    auto p = text.substr(slash + 1);
    auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), c.prefix);
    if (p.empty() || ec != std::errc{} || end != p.data() + p.size() || c.prefix < 0 ||
        c.prefix > addr->bits())
      return make_error(ErrorCode::bad_address, "'" + std::string(text) +
                                                    "' has a bad prefix length (0.." +
                                                    std::to_string(addr->bits()) + ")");
  }
  return c;
}

}  // namespace berth
