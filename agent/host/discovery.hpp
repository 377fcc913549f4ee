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

}  // namespace berth::agent
