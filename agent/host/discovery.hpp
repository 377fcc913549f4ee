#pragma once
// Builds the Inventory from a sysfs-shaped tree, the same code on fixtures and on real hosts.
#include <string>
#include <vector>

#include "agent/app/config.hpp"
#include "core/expected.hpp"
#include "core/inventory.hpp"

namespace berth::agent {

struct Discovery {
  Inventory inventory;
  std::vector<std::string> warnings;  // things skipped, e.g. a GPU whose device node is missing
};

Expected<Discovery> discover(const Config& config);

// One VF at PCI address `addr` as sysfs shows it now (netdev, RDMA device, nodes, driver, VF
// index); `numa` is sysfs's raw value (-1: none reported) and `netdev` is empty when it has none.
Vf discover_vf(const std::string& sysfs_root, const std::string& dev_root, const std::string& addr,
               std::vector<std::string>& warnings);

}  // namespace berth::agent
