#pragma once
// The attach plan of a berth: ordered host steps, each with its inverse (core/step.hpp).
// GPUs first (device node, then its devices-cgroup rule), then each VF (move in renamed, MTU,
// addresses, link up, routes), then the cpuset. Detach runs the inverses in reverse.
#include <vector>

#include "core/berth.hpp"
#include "core/inventory.hpp"
#include "core/step.hpp"

namespace berth {

std::vector<Step> attach_plan(const Berth& b, const Inventory& inv);

}  // namespace berth
