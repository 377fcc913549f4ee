#include "core/pool.hpp"

#include <cctype>

#include <algorithm>

#include <nlohmann/json.hpp>

namespace berth {
namespace {

Expected<AddressRange> parse_range(const std::string& text, const Cidr& subnet) {
  auto dash = text.find('-');
  if (dash == std::string::npos)
    return make_error(ErrorCode::bad_address, "pool range '" + text + "' must be FIRST-LAST");
  auto first = parse_ip(text.substr(0, dash));
  if (!first) return first.error();
  auto last = parse_ip(text.substr(dash + 1));
  if (!last) return last.error();
  if (!subnet.contains(*first) || !subnet.contains(*last) || *last < *first)
    return make_error(ErrorCode::bad_address,
                      "pool range '" + text + "' must be ordered and inside " + subnet.to_string());
  return AddressRange{*first, *last};
}

}  // namespace

Expected<PoolConfig> parse_pool_config(const nlohmann::json& j) {
  if (!j.is_object()) return make_error(ErrorCode::bad_request, "a pool must be an object");
  PoolConfig p;
  if (!j.contains("name") || !j["name"].is_string() || j["name"].get<std::string>().empty())
    return make_error(ErrorCode::bad_request, "pool.name must be a non-empty string");
  p.name = j["name"];
  if (!j.contains("subnet") || !j["subnet"].is_string())
    return make_error(ErrorCode::bad_request,
                      "pool '" + p.name + "': subnet must be a CIDR string");
  auto subnet = parse_cidr(j["subnet"].get<std::string>());
  if (!subnet)
    return make_error(subnet.error().code, "pool '" + p.name + "': " + subnet.error().message);
  p.subnet = *subnet;
  for (const auto& r : j.value("ranges", nlohmann::json::array())) {
    if (!r.is_string())
      return make_error(ErrorCode::bad_request, "pool '" + p.name + "': ranges are strings");
    auto range = parse_range(r.get<std::string>(), p.subnet);
    if (!range)
      return make_error(range.error().code, "pool '" + p.name + "': " + range.error().message);
    p.ranges.push_back(*range);
  }
  for (const auto& e : j.value("exclude", nlohmann::json::array())) {
    auto a = e.is_string()
                 ? parse_ip(e.get<std::string>())
                 : Expected<IpAddress>(make_error(ErrorCode::bad_address, "not a string"));
    if (!a)
      return make_error(a.error().code, "pool '" + p.name + "': exclude: " + a.error().message);
    p.exclude.push_back(*a);
  }
  if (j.contains("gateway")) {
    auto g = j["gateway"].is_string()
                 ? parse_ip(j["gateway"].get<std::string>())
                 : Expected<IpAddress>(make_error(ErrorCode::bad_address, "not a string"));
    if (!g)
      return make_error(g.error().code, "pool '" + p.name + "': gateway: " + g.error().message);
    if (!p.subnet.contains(*g))
      return make_error(ErrorCode::bad_address,
                        "pool '" + p.name + "': gateway is outside the subnet");
    p.gateway = *g;
  }
  if (j.contains("pkey")) {
    auto k = j["pkey"].is_string() ? parse_pkey(j["pkey"].get<std::string>())
                                   : Expected<uint16_t>(make_error(ErrorCode::bad_request, ""));
    if (!k)
      return make_error(ErrorCode::bad_request,
                        "pool '" + p.name +
                            "': pkey must be a partition key like \"0x8001\" (not the default "
                            "partition 0x7fff or 0xffff, not 0)");
    p.pkey = *k;
  }
  if (p.ranges.empty()) {
    IpAddress first = p.subnet.network();
    IpAddress last = first;
    // Last address of the subnet: set every host bit.
    for (int bit = p.subnet.prefix; bit < first.bits(); ++bit)
      last.bytes[bit / 8] |= static_cast<uint8_t>(0x80 >> (bit % 8));
    if (p.subnet.address.family == 4 && p.subnet.prefix <= 30) {
      first.advance(1);  // skip the network address
      // and the broadcast address
      for (int i = 3; i >= 0; --i) {
        if (last.bytes[i]-- != 0) break;
      }
    }
    p.ranges.push_back({first, last});
  }
  if (p.gateway) p.exclude.push_back(*p.gateway);
  return p;
}

Expected<Cidr> next_free_address(const PoolConfig& pool, const std::set<IpAddress>& used) {
  for (const auto& range : pool.ranges) {
    IpAddress a = range.first;
    while (!(range.last < a)) {
      bool taken = used.count(a) != 0 ||
                   std::find(pool.exclude.begin(), pool.exclude.end(), a) != pool.exclude.end();
      if (!taken) return Cidr{a, pool.subnet.prefix};
      if (!a.advance(1)) break;
    }
  }
  return make_error(ErrorCode::pool_exhausted, "pool '" + pool.name + "' has no free address");
}

}  // namespace berth

namespace berth {

Expected<uint16_t> parse_pkey(const std::string& text) {
  auto bad = make_error(ErrorCode::bad_request, "'" + text + "' is not a partition key");
  if (text.size() < 3 || text.size() > 6 || text[0] != '0' || (text[1] != 'x' && text[1] != 'X'))
    return bad;
  unsigned v = 0;
  for (size_t i = 2; i < text.size(); ++i) {
    const char c = static_cast<char>(std::tolower(static_cast<unsigned char>(text[i])));
    if (c >= '0' && c <= '9')
      v = v * 16 + static_cast<unsigned>(c - '0');
    else if (c >= 'a' && c <= 'f')
      v = v * 16 + static_cast<unsigned>(c - 'a' + 10);
    else
      return bad;
  }
  if ((v & 0x7fff) == 0 || (v & 0x7fff) == 0x7fff) return bad;
  return static_cast<uint16_t>(v | 0x8000);
}

std::string format_pkey(uint16_t pkey) {
  static const char* digits = "0123456789abcdef";
  std::string out(4, '0');
  for (int i = 3; i >= 0; --i, pkey = static_cast<uint16_t>(pkey >> 4)) out[i] = digits[pkey & 0xf];
  return out;
}

}  // namespace berth
