#pragma once
// Inventories built in code, shaped like the sysfs fixtures, for tests that must not touch disk.
#include <string>

#include "core/inventory.hpp"

namespace berth::testing {

// Like tests/fixtures/two-socket: 2 NUMA nodes (CPU 0 | CPU 1, node 1 memoryless), 4 GPUs each
// (GPUs 6 and 7 share passthrough IOMMU group 70), 8 VFs per node.
inline Inventory two_socket(int cpus_per_node = 1) {
  Inventory inv;
  for (int n = 0; n < 2; ++n) {
    NumaNode node{n, {}, n == 0, 0};
    for (int c = 0; c < cpus_per_node; ++c) node.cpus.push_back(n * cpus_per_node + c);
    inv.numa_nodes.push_back(node);
  }
  inv.distance = {{10, 21}, {21, 10}};
  const char* pcis[] = {"0000:17:00.0", "0000:31:00.0", "0000:4b:00.0", "0000:65:00.0",
                        "0000:97:00.0", "0000:b1:00.0", "0000:ca:00.0", "0000:e3:00.0"};
  for (int i = 0; i < 8; ++i) {
    Gpu g{pcis[i], i, "0x10de", "0x2330", i / 4, i >= 6 ? 70 : 20 + i, {}};
    g.devices = {{"/dev/nvidia" + std::to_string(i), 195, static_cast<unsigned>(i)},
                 {"/dev/nvidiactl", 195, 255}};
    inv.gpus.push_back(g);
  }
  inv.passthrough_groups = {70};
  for (int n = 0; n < 2; ++n)
    for (int v = 0; v < 8; ++v) {
      Vf vf;
      vf.pci = (n == 0 ? "0000:1a:00." : "0000:9a:00.") + std::to_string(v + 1);
      vf.pf_pci = n == 0 ? "0000:1a:00.0" : "0000:9a:00.0";
      vf.vf_index = v;
      vf.netdev = "bvf" + std::to_string(n) + "x" + std::to_string(v);
      vf.numa = n;
      vf.iommu_group = 100 + n * 10 + v;
      inv.vfs.push_back(vf);
    }
  return inv;
}

}  // namespace berth::testing
