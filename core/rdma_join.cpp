#include "core/rdma_join.hpp"

#include <algorithm>

namespace berth {

std::vector<std::string> join_rdma_devices(Inventory& inv, std::vector<RdmaDevice> devices) {
  std::vector<std::string> warnings;
  auto name_in = [&](std::string& sysfs_name, const RdmaDevice& d, const std::string& what) {
    if (sysfs_name.empty()) {
      sysfs_name = d.name;
    } else if (sysfs_name != d.name) {
      warnings.push_back(what + " " + d.pci + ": sysfs names its RDMA device " + sysfs_name +
                         ", libibverbs " + d.name + "; keeping sysfs' name");
    }
  };
  for (auto& d : devices) {
    d.role = "other";
    if (d.pci.empty()) continue;
    for (auto& v : inv.vfs)
      if (v.pci == d.pci) {
        d.role = "vf";
        name_in(v.rdma, d, "VF");
      }
    for (auto& h : inv.hcas)
      if (h.pci == d.pci) {
        d.role = "pf";
        name_in(h.rdma, d, "PF");
      }
  }
  std::sort(devices.begin(), devices.end(),
            [](const RdmaDevice& a, const RdmaDevice& b) { return a.name < b.name; });
  inv.rdma_devices = std::move(devices);
  return warnings;
}

}  // namespace berth
