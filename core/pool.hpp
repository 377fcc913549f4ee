#pragma once
// Named address pools (IPv4 or IPv6 ranges with exclusions). The leases themselves live in the
// ledger's berths; a PoolSet only answers "which address is free next" for a given used set.
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "core/expected.hpp"
#include "core/ip.hpp"

namespace berth {

struct AddressRange {
  IpAddress first;
  IpAddress last;
};

struct PoolConfig {
  std::string name;
  Cidr subnet;                       // prefix given to leased addresses
  std::vector<AddressRange> ranges;  // empty: the whole subnet minus network/broadcast/gateway
  std::vector<IpAddress> exclude;
  std::optional<IpAddress> gateway;  // becomes the default route unless the request names one
  // The InfiniBand partition the subnet lives on: an InfiniBand VF leasing from this pool gets an
  // IPoIB child on this pkey inside the container, which carries the addresses; 0 for none.
  uint16_t pkey = 0;
};

// "0x8001" or "0x0001" (the full-membership bit is the kernel's to set): a partition key other
// than the default partition (0x7fff) and the invalid 0.
Expected<uint16_t> parse_pkey(const std::string& text);
std::string format_pkey(uint16_t pkey);  // "8001": four hex digits, as a child's name takes it

Expected<PoolConfig> parse_pool_config(const nlohmann::json& j);

// Returns the first address of the pool that is neither excluded nor in `used`.
Expected<Cidr> next_free_address(const PoolConfig& pool, const std::set<IpAddress>& used);

}  // namespace berth
