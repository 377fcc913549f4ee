#include "agent/host/discovery.hpp"

#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>

#include "core/cpulist.hpp"
#include "core/rdma_join.hpp"
#include "net/verbs.hpp"

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

std::optional<CharDevice> char_device(const std::string& dev_root, const std::string& rel,
                                      std::vector<std::string>& warnings) {
  fs::path p = fs::path(dev_root) / rel;
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

std::optional<CharDevice> char_device(const Config& c, const std::string& rel,
                                      std::vector<std::string>& warnings) {
  return char_device(c.dev_root, rel, warnings);
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

// The major the kernel gave a character driver ("Character devices:" in /proc/devices).
std::optional<unsigned> char_major(const Config& c, const std::string& driver) {
  std::ifstream in(fs::path(c.proc_root) / "devices");
  bool chars = false;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("Character devices:", 0) == 0) chars = true;
    if (line.rfind("Block devices:", 0) == 0) chars = false;
    std::istringstream fields(line);
    unsigned major = 0;
    std::string name;
    if (chars && fields >> major >> name && name == driver) return major;
  }
  return std::nullopt;
}

// "DeviceFileMinor: N" of a MIG capability's access file.
std::optional<unsigned> cap_minor(const fs::path& access) {
  std::ifstream in(access);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("DeviceFileMinor:", 0) != 0) continue;
    try {
      return static_cast<unsigned>(std::stoul(line.substr(16)));
    } catch (...) {
      return std::nullopt;
    }
  }
  return std::nullopt;
}

// A capability node /dev/nvidia-caps/nvidia-capN: the numbers come from the driver's proc
// files; a node on the host must carry them (a stale node from another boot is not trusted).
std::optional<CharDevice> cap_device(const Config& c, unsigned major, const fs::path& access,
                                     std::vector<std::string>& warnings) {
  auto minor = cap_minor(access);
  if (!minor) {
    warnings.push_back(access.string() + " has no DeviceFileMinor");
    return std::nullopt;
  }
  const std::string rel = "nvidia-caps/nvidia-cap" + std::to_string(*minor);
  auto d = char_device(c, rel, warnings);
  if (!d) return std::nullopt;
  if (d->major != major || d->minor != *minor) {
    warnings.push_back("/dev/" + rel + " is " + std::to_string(d->major) + ":" +
                       std::to_string(d->minor) + ", the driver says " + std::to_string(major) +
                       ":" + std::to_string(*minor));
    return std::nullopt;
  }
  return d;
}

// The MIG compute instances of GPU `index`, one allocatable GPU each: the parent's node and
// control nodes, the GPU instance's access capability, the compute instance's. Empty when the
// GPU is not in MIG mode or has no instances.
std::vector<Gpu> mig_instances(const Config& c, const Gpu& parent,
                               std::vector<std::string>& warnings) {
  const fs::path mig = fs::path(c.proc_root) / "driver/nvidia/capabilities" /
                       ("gpu" + std::to_string(parent.index)) / "mig";
  std::vector<Gpu> out;
  if (!fs::is_directory(mig)) return out;
  auto major = char_major(c, "nvidia-caps");
  if (!major) {
    warnings.push_back("GPU " + parent.pci + " has MIG instances but " + c.proc_root +
                       "/devices has no nvidia-caps driver");
    return out;
  }
  for (const auto& gi : entries(mig)) {
    if (gi.rfind("gi", 0) != 0) continue;
    auto gi_cap = cap_device(c, *major, mig / gi / "access", warnings);
    if (!gi_cap) continue;
    for (const auto& ci : entries(mig / gi)) {
      if (ci.rfind("ci", 0) != 0) continue;
      auto ci_cap = cap_device(c, *major, mig / gi / ci / "access", warnings);
      if (!ci_cap) continue;
      Gpu g = parent;
      g.mig = gi + "/" + ci;
      g.uuid.clear();
      g.devices = {parent.devices.front(), *gi_cap, *ci_cap};
      g.devices.insert(g.devices.end(), parent.devices.begin() + 1, parent.devices.end());
      out.push_back(std::move(g));
    }
  }
  // Numeric order (gi2 before gi10), as nvidia-smi lists them.
  auto number = [](const std::string& s, const char* tag) {
    auto p = s.find(tag);
    return p == std::string::npos ? 0 : std::atoi(s.c_str() + p + 2);
  };
  std::sort(out.begin(), out.end(), [&](const Gpu& a, const Gpu& b) {
    return std::pair(number(a.mig, "gi"), number(a.mig, "ci")) <
           std::pair(number(b.mig, "gi"), number(b.mig, "ci"));
  });
  return out;
}

// A GPU of another vendor: the nodes its rule names.
std::optional<Gpu> vendor_gpu(const Config& c, const GpuVendorRule& rule, const fs::path& dev,
                              const std::string& addr, std::vector<std::string>& warnings) {
  Gpu g;
  g.pci = addr;
  g.vendor = rule.vendor;
  g.device = read_line(dev / "device");
  for (const auto& node : rule.nodes) {
    std::vector<std::string> rels;
    if (node == "drm:render" || node == "drm:card") {
      const std::string prefix = node == "drm:render" ? "renderD" : "card";
      for (const auto& e : entries(dev / "drm"))
        if (e.rfind(prefix, 0) == 0 && e.size() > prefix.size() &&
            std::isdigit(static_cast<unsigned char>(e[prefix.size()])))
          rels.push_back("dri/" + e);
    } else if (node == "accel") {
      for (const auto& e : entries(dev / "accel"))
        if (e.rfind("accel", 0) == 0) rels.push_back("accel/" + e);
    } else {
      rels.push_back(node);
    }
    if (rels.empty()) warnings.push_back("GPU " + addr + " has no " + node + " node");
    for (const auto& rel : rels)
      if (auto d = char_device(c, rel, warnings)) g.devices.push_back(*d);
  }
  if (g.devices.empty()) {
    warnings.push_back("GPU " + addr + " (" + rule.vendor + ") skipped: none of its nodes exist");
    return std::nullopt;
  }
  return g;
}

const GpuVendorRule* vendor_rule(const Config& c, const std::string& vendor,
                                 const std::string& cls) {
  for (const auto& r : c.gpu_vendors)
    if (r.vendor == vendor)
      for (const auto& k : r.classes)
        if (cls.rfind(k, 0) == 0) return &r;
  return nullptr;
}

std::string first_entry(const fs::path& dir) {
  auto e = entries(dir);
  return e.empty() ? std::string{} : e.front();
}

}  // namespace

Vf discover_vf(const std::string& sysfs_root, const std::string& dev_root, const std::string& addr,
               std::vector<std::string>& warnings) {
  const fs::path pci = fs::path(sysfs_root) / "bus/pci/devices";
  const fs::path dev = pci / addr;
  Vf v;
  v.pci = addr;
  v.pf_pci = link_name(dev / "physfn");
  v.driver = link_name(dev / "driver");
  v.netdev = first_entry(dev / "net");
  v.rdma = first_entry(dev / "infiniband");
  v.numa = read_int(dev / "numa_node", -1);
  if (v.netdev.empty()) return v;
  v.mtu = read_int(dev / "net" / v.netdev / "mtu", 1500);
  v.infiniband = read_line(dev / "net" / v.netdev / "type") == "32";  // ARPHRD_INFINIBAND
  // Its verbs node, its management nodes (umadN, issmN) where the driver has them, and the
  // shared connection manager node.
  for (const char* dir : {"infiniband_verbs", "infiniband_mad"})
    for (const auto& node : entries(dev / dir))
      if (auto d = char_device(dev_root, "infiniband/" + node, warnings)) v.devices.push_back(*d);
  if (!v.devices.empty() && fs::exists(fs::path(dev_root) / "infiniband/rdma_cm"))
    if (auto d = char_device(dev_root, "infiniband/rdma_cm", warnings)) v.devices.push_back(*d);
  const fs::path pf = pci / v.pf_pci;
  for (const auto& e : entries(pf))
    if (e.rfind("virtfn", 0) == 0 && link_name(pf / e) == addr) v.vf_index = std::stoi(e.substr(6));
  return v;
}

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
      // A GPU in MIG mode is handed out by its instances only; the whole GPU is not placeable.
      auto instances = mig_instances(c, g, out.warnings);
      if (instances.empty())
        inv.gpus.push_back(std::move(g));
      else
        inv.gpus.insert(inv.gpus.end(), instances.begin(), instances.end());
      continue;
    }
    if (const auto* rule = vendor_rule(c, vendor, cls)) {
      if (auto g = vendor_gpu(c, *rule, dev, addr, out.warnings)) {
        g->numa = numa_of(dev);
        g->iommu_group = group_of(dev);
        g->index = -1;  // numbered after NVIDIA's minors, below
        inv.gpus.push_back(std::move(*g));
      }
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
      Vf v = discover_vf(c.sysfs_root, c.dev_root, addr, out.warnings);
      v.numa = numa_of(dev);
      v.iommu_group = group_of(dev);
      if (v.netdev.empty()) {
        out.warnings.push_back("VF " + addr + " skipped: it has no netdev");
        continue;
      }
      inv.vfs.push_back(std::move(v));
    }
  }
  // Other vendors' GPUs take the indexes after NVIDIA's minors, in PCI order.
  int next_index = 0;
  for (const auto& g : inv.gpus) next_index = std::max(next_index, g.index + 1);
  for (auto& g : inv.gpus)
    if (g.index < 0) g.index = next_index++;
  std::stable_sort(inv.gpus.begin(), inv.gpus.end(),
                   [](const Gpu& a, const Gpu& b) { return a.index < b.index; });
  std::sort(inv.vfs.begin(), inv.vfs.end(), [](const Vf& a, const Vf& b) {
    return std::tie(a.pf_pci, a.vf_index) < std::tie(b.pf_pci, b.vf_index);
  });
  // ib_core's netns_mode parameter (a bool: Y/1 shared, N/0 exclusive), as sysfs shows it; on
  // the real host berthd asks RDMA netlink (RDMA_NLDEV_CMD_SYS_GET) and that answer wins.
  if (auto mode = read_line(fs::path(c.sysfs_root) / "module/ib_core/parameters/netns_mode");
      !mode.empty())
    inv.rdma_netns = (mode == "N" || mode == "0") ? "exclusive" : "shared";
  // On the real host, libibverbs' devices, ports and GUIDs, joined by PCI address.
  if (c.sysfs_root == "/sys") {
    auto devices = net::enumerate_rdma_devices(out.warnings);
    for (auto& w : join_rdma_devices(inv, std::move(devices))) out.warnings.push_back(std::move(w));
  }
  return out;
}

}  // namespace berth::agent
