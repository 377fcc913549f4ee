#pragma once
// A large node for core benchmarks: 8 NUMA nodes of 16 CPUs, 16 GPUs, 512 VFs.
#include <string>

#include "core/inventory.hpp"

namespace berth::bench {

inline Inventory large_node() {
  Inventory inv;
  for (int n = 0; n < 8; ++n) {
    NumaNode node{n, {}, true, n};
    for (int c = 0; c < 16; ++c) node.cpus.push_back(n * 16 + c);
    inv.numa_nodes.push_back(node);
  }
  for (int i = 0; i < 16; ++i) {
    char pci[32];
    std::snprintf(pci, sizeof pci, "0000:%02x:00.0", 0x10 + i);
    Gpu g{pci, i, "0x10de", "0x2330", i / 2, 100 + i, {}};
    g.devices = {{"/dev/nvidia" + std::to_string(i), 195, static_cast<unsigned>(i)},
                 {"/dev/nvidiactl", 195, 255}};
    inv.gpus.push_back(g);
  }
  for (int v = 0; v < 512; ++v) {
    Vf vf;
    char pci[32];
    std::snprintf(pci, sizeof pci, "0000:%02x:%02x.%d", 0x80 + v / 64, (v % 64) / 8, v % 8);
    vf.pci = pci;
    vf.pf_pci = "0000:" + std::to_string(0x80 + v / 64) + ":00.0";
    vf.vf_index = v % 64;
    vf.netdev = "vf" + std::to_string(v);
    vf.numa = v / 64;
    inv.vfs.push_back(vf);
  }
  return inv;
}

}  // namespace berth::bench
