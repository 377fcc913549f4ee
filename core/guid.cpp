#include "core/guid.hpp"

#include <cstdio>

namespace berth {

std::optional<uint64_t> parse_guid(const std::string& text) {
  if (text.size() != 23) return std::nullopt;
  uint64_t g = 0;
  for (int i = 0; i < 8; ++i) {
    const size_t at = static_cast<size_t>(i) * 3;
    if (i < 7 && text[at + 2] != ':') return std::nullopt;
    auto hex = [](char c) -> int {
      if (c >= '0' && c <= '9') return c - '0';
      if (c >= 'a' && c <= 'f') return c - 'a' + 10;
      if (c >= 'A' && c <= 'F') return c - 'A' + 10;
      return -1;
    };
    const int hi = hex(text[at]);
    const int lo = hex(text[at + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    g |= static_cast<uint64_t>(hi * 16 + lo) << (56 - 8 * i);
  }
  return g;
}

std::string format_guid(uint64_t guid) {
  char buf[24];
  std::snprintf(
      buf, sizeof buf, "%02x:%02x:%02x:%02x:%02x:%02x:%02x:%02x",
      static_cast<unsigned>((guid >> 56) & 0xff), static_cast<unsigned>((guid >> 48) & 0xff),
      static_cast<unsigned>((guid >> 40) & 0xff), static_cast<unsigned>((guid >> 32) & 0xff),
      static_cast<unsigned>((guid >> 24) & 0xff), static_cast<unsigned>((guid >> 16) & 0xff),
      static_cast<unsigned>((guid >> 8) & 0xff), static_cast<unsigned>(guid & 0xff));
  return buf;
}

uint64_t derive_guid(const std::string& node, const std::string& pf_pci, uint32_t vf, int which) {
  // FNV-1a over the inputs; stable across builds and machines.
  uint64_t h = 0xcbf29ce484222325ULL;
  const std::string key =
      node + "/" + pf_pci + "/" + std::to_string(vf) + "/" + std::to_string(which);
  for (unsigned char c : key) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  // Locally administered in the EUI-64 sense (bit 1 of the first byte), never 0 or all ones.
  h = (h | (uint64_t{0x02} << 56)) & ~(uint64_t{0x01} << 56);
  if (h == ~uint64_t{0}) h ^= 1;
  return h;
}

}  // namespace berth
