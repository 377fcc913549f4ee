#include "agent/host/discovery.hpp"

#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "core/cpulist.hpp"

namespace berth::agent {
namespace fs = std::filesystem;
namespace {

std::string read_line(const fs::path& p) {
  std::ifstream in(p);
  std::string line;
  std::getline(in, line);
  while (!line.empty() && (line.back() == '\n' || line.back() == ' ')) line.pop_back();
  return line;
}

int read_int(const fs::path& p, int fallback) {
  try {
    auto s = read_line(p);
    return s.empty() ? fallback : std::stoi(s, nullptr, 0);
  } catch (...) {
    return fallback;
  }
}

// The last path component a sysfs symlink points at ("iommu_group" -> "70").
std::string link_name(const fs::path& p) {
  std::error_code ec;
  auto target = fs::read_symlink(p, ec);
  return ec ? std::string{} : target.filename().string();
}

std::vector<std::string> entries(const fs::path& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

std::optional<CharDevice> char_device(const Config& c, const std::string& rel,
                                      std::vector<std::string>& warnings) {
  fs::path p = fs::path(c.dev_root) / rel;
  struct stat st {};
  if (::stat(p.c_str(), &st) != 0) {
    warnings.push_back("device node " + p.string() + " is missing");
    return std::nullopt;
  }
  if (!S_ISCHR(st.st_mode)) {
    warnings.push_back(p.string() + " is not a character device");
    return std::nullopt;
  }
  return CharDevice{"/dev/" + rel, major(st.st_rdev), minor(st.st_rdev)};
}

Expected<std::vector<NumaNode>> discover_numa(const Config& c,
                                              std::vector<std::vector<int>>& distance) {
  fs::path base = fs::path(c.sysfs_root) / "devices/system/node";
  std::vector<NumaNode> nodes;
  for (const auto& name : entries(base)) {
    if (name.rfind("node", 0) != 0 || name.size() == 4 ||
        !std::isdigit(static_cast<unsigned char>(name[4])))
      continue;
    NumaNode n;
    n.id = std::stoi(name.substr(4));
    auto cpus = parse_cpulist(read_line(base / name / "cpulist"));
    if (!cpus)
      return make_error(ErrorCode::internal,
                        (base / name / "cpulist").string() + ": " + cpus.error().message);
    n.cpus = *cpus;
    nodes.push_back(n);
  }
  std::sort(nodes.begin(), nodes.end(),
            [](const NumaNode& a, const NumaNode& b) { return a.id < b.id; });
  if (nodes.empty()) {
    // A kernel without NUMA: one node with every online CPU.
    auto cpus = parse_cpulist(read_line(fs::path(c.sysfs_root) / "devices/system/cpu/online"));
    if (!cpus || cpus->empty())
      return make_error(ErrorCode::internal,
                        "no NUMA nodes and no online CPUs under " + c.sysfs_root);
    nodes.push_back({0, *cpus, true, 0});
  }
  std::vector<int> with_memory;
  if (fs::exists(base / "has_memory")) {
    auto m = parse_cpulist(read_line(base / "has_memory"));
    if (m) with_memory = *m;
  } else {
    for (const auto& n : nodes) with_memory.push_back(n.id);
  }
  for (const auto& n : nodes) {
    std::vector<int> row;
    std::istringstream in(read_line(base / ("node" + std::to_string(n.id)) / "distance"));
    for (int d; in >> d;) row.push_back(d);
    distance.push_back(row);
  }
  for (size_t i = 0; i < nodes.size(); ++i) {
    auto& n = nodes[i];
    n.has_memory = std::find(with_memory.begin(), with_memory.end(), n.id) != with_memory.end();
    n.memory_node = n.id;
    if (n.has_memory) continue;
    int best = -1;
    int best_d = 1 << 30;
    for (size_t j = 0; j < nodes.size(); ++j) {
      if (std::find(with_memory.begin(), with_memory.end(), nodes[j].id) == with_memory.end())
        continue;
      int d = j < distance[i].size() ? distance[i][j] : 20;
      if (d < best_d) best = nodes[j].id, best_d = d;
    }
    if (best < 0) return make_error(ErrorCode::internal, "no NUMA node has memory");
    n.memory_node = best;
  }
  return nodes;
}

// One field of the driver's /proc/driver/nvidia/gpus/<pci>/information ("Device Minor:").
std::string nvidia_information(const Config& c, const std::string& pci, const std::string& key) {
  std::ifstream in(fs::path(c.proc_root) / "driver/nvidia/gpus" / pci / "information");
  for (std::string line; std::getline(in, line);) {
    auto pos = line.find(key);
    if (pos == std::string::npos) continue;
    auto v = line.substr(pos + key.size());
    auto b = v.find_first_not_of(" \t");
    auto e = v.find_last_not_of(" \t\r");
    return b == std::string::npos ? std::string() : v.substr(b, e - b + 1);
  }
  return {};
}

int nvidia_minor(const Config& c, const std::string& pci, int fallback) {
  auto v = nvidia_information(c, pci, "Device Minor:");
  try {
    return v.empty() ? fallback : std::stoi(v);
  } catch (...) {
    return fallback;
  }
}

std::string first_entry(const fs::path& dir) {
  auto e = entries(dir);
  return e.empty() ? std::string{} : e.front();
}

}  // namespace

Expected<Discovery> discover(const Config& c) {
  Discovery out;
  auto& inv = out.inventory;
  auto numa = discover_numa(c, inv.distance);
  if (!numa) return numa.error();
  inv.numa_nodes = *numa;
  inv.passthrough_groups = c.passthrough_iommu_groups;
  auto numa_of = [&](const fs::path& dev) {
    int n = read_int(dev / "numa_node", -1);
    return n < 0 || !inv.numa(n) ? inv.numa_nodes.front().id : n;  // -1: no affinity reported
  };
  auto group_of = [](const fs::path& dev) {
    auto g = link_name(dev / "iommu_group");
    try {
      return g.empty() ? -1 : std::stoi(g);
    } catch (...) {
      return -1;
    }
  };

  fs::path pci = fs::path(c.sysfs_root) / "bus/pci/devices";
  std::vector<std::string> control_nodes;
  for (const char* n : {"nvidiactl", "nvidia-uvm", "nvidia-uvm-tools", "nvidia-modeset"})
    if (fs::exists(fs::path(c.dev_root) / n)) control_nodes.push_back(n);
  int next_gpu = 0;
  for (const auto& addr : entries(pci)) {
    fs::path dev = pci / addr;
    auto vendor = read_line(dev / "vendor");
    auto cls = read_line(dev / "class");
    bool display = cls.rfind("0x0300", 0) == 0 || cls.rfind("0x0302", 0) == 0;
    if (vendor == "0x10de" && display) {
      Gpu g{addr,
            nvidia_minor(c, addr, next_gpu),
            vendor,
            read_line(dev / "device"),
            numa_of(dev),
            group_of(dev),
            {}};
      ++next_gpu;
      g.uuid = nvidia_information(c, addr, "GPU UUID:");
      auto own = char_device(c, "nvidia" + std::to_string(g.index), out.warnings);
      if (!own) {
        out.warnings.push_back("GPU " + addr + " skipped: no /dev/nvidia" +
                               std::to_string(g.index));
        continue;
      }
      g.devices.push_back(*own);
      for (const auto& n : control_nodes)
        if (auto d = char_device(c, n, out.warnings)) g.devices.push_back(*d);
      inv.gpus.push_back(std::move(g));
      continue;
    }
    bool is_vf = fs::is_symlink(dev / "physfn");
    bool is_pf = fs::exists(dev / "sriov_numvfs");
    if (is_pf) {
      Hca h{addr, first_entry(dev / "net"), first_entry(dev / "infiniband"), numa_of(dev), {}};
      for (const auto& e : entries(dev))
        if (e.rfind("virtfn", 0) == 0) h.vfs.push_back(link_name(dev / e));
      inv.hcas.push_back(std::move(h));
    }
    if (is_vf) {
      Vf v;
      v.pci = addr;
      v.pf_pci = link_name(dev / "physfn");
      v.netdev = first_entry(dev / "net");
      v.rdma = first_entry(dev / "infiniband");
      v.numa = numa_of(dev);
      v.iommu_group = group_of(dev);
      v.mtu = read_int(dev / "net" / v.netdev / "mtu", 1500);
      v.infiniband = read_line(dev / "net" / v.netdev / "type") == "32";  // ARPHRD_INFINIBAND
      // Its verbs node, its management nodes (umadN, issmN) where the driver has them, and the
      // shared connection manager node.
      for (const char* dir : {"infiniband_verbs", "infiniband_mad"})
        for (const auto& node : entries(dev / dir))
          if (auto d = char_device(c, "infiniband/" + node, out.warnings)) v.devices.push_back(*d);
      if (!v.devices.empty() && fs::exists(fs::path(c.dev_root) / "infiniband/rdma_cm"))
        if (auto d = char_device(c, "infiniband/rdma_cm", out.warnings)) v.devices.push_back(*d);
      fs::path pf = pci / v.pf_pci;
      for (const auto& e : entries(pf))
        if (e.rfind("virtfn", 0) == 0 && link_name(pf / e) == addr)
          v.vf_index = std::stoi(e.substr(6));
      if (v.netdev.empty()) {
        out.warnings.push_back("VF " + addr + " skipped: it has no netdev");
        continue;
      }
      inv.vfs.push_back(std::move(v));
    }
  }
  std::sort(inv.gpus.begin(), inv.gpus.end(),
            [](const Gpu& a, const Gpu& b) { return a.index < b.index; });
  std::sort(inv.vfs.begin(), inv.vfs.end(), [](const Vf& a, const Vf& b) {
    return std::tie(a.pf_pci, a.vf_index) < std::tie(b.pf_pci, b.vf_index);
  });
  // ib_core's netns_mode parameter (a bool: Y/1 shared, N/0 exclusive), as sysfs shows it; on
  // the real host berthd asks RDMA netlink (RDMA_NLDEV_CMD_SYS_GET) and that answer wins.
  if (auto mode = read_line(fs::path(c.sysfs_root) / "module/ib_core/parameters/netns_mode");
      !mode.empty())
    inv.rdma_netns = (mode == "N" || mode == "0") ? "exclusive" : "shared";
  return out;
}

}  // namespace berth::agent
