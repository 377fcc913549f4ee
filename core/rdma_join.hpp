#pragma once
// libibverbs' view of the RDMA devices joined with sysfs discovery by PCI address: each device
// learns whether it is one of the node's VFs or PFs, a VF or HCA without an RDMA name from sysfs
// gets the verbs one, and a disagreement between the two is a warning, never a guess.
#include <string>
#include <vector>

#include "core/inventory.hpp"

namespace berth {

// Returns the warnings. `devices` replaces inv.rdma_devices.
std::vector<std::string> join_rdma_devices(Inventory& inv, std::vector<RdmaDevice> devices);

}  // namespace berth
