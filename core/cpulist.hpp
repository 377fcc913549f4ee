#pragma once
// The kernel's CPU list format ("0-3,8,10-11"), as used by cpuset and sysfs.
#include <string>
#include <string_view>
#include <vector>

#include "core/expected.hpp"

namespace berth {

// Sorted, without duplicates.
Expected<std::vector<int>> parse_cpulist(std::string_view text);
std::string format_cpulist(std::vector<int> cpus);

}  // namespace berth
