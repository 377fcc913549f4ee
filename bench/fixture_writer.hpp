#pragma once
// Writes a sysfs-shaped tree for the agent benchmarks: 2 NUMA nodes (CPU 0 | CPU 1, node 1
// memoryless), one GPU per node (nodes linked to real char devices), and `vfs_per_node` VFs per
// node named "bb<n>" (n counting from 0 across nodes).
#include <string>

namespace berth::bench {

void write_fixture(const std::string& root, int vfs_per_node);
std::string vf_name(int n);

}  // namespace berth::bench
