#pragma once
// Named address pools (IPv4 or IPv6 ranges with exclusions). The leases themselves live in the
// ledger's berths; a PoolSet only answers "which address is free next" for a given used set.
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
};

Expected<PoolConfig> parse_pool_config(const nlohmann::json& j);

// Returns the first address of the pool that is neither excluded nor in `used`.
Expected<Cidr> next_free_address(const PoolConfig& pool, const std::set<IpAddress>& used);

}  // namespace berth
