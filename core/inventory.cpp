#include "core/inventory.hpp"

#include <algorithm>

#include <nlohmann/json.hpp>

#include "core/cpulist.hpp"

namespace berth {

const NumaNode* Inventory::numa(int id) const {
  for (const auto& n : numa_nodes)
    if (n.id == id) return &n;
  return nullptr;
}

const Gpu* Inventory::gpu_by_id(const std::string& id) const {
  for (const auto& g : gpus)
    if (g.id() == id) return &g;
  return nullptr;
}

const Gpu* Inventory::gpu_by_index(int index) const {
  for (const auto& g : gpus)
    if (g.index == index && g.mig.empty()) return &g;
  return nullptr;
}

const Vf* Inventory::vf_by_pci(const std::string& pci) const {
  for (const auto& v : vfs)
    if (v.pci == pci) return &v;
  return nullptr;
}

int Inventory::numa_distance(int a, int b) const {
  if (a == b) return 10;
  size_t ia = numa_nodes.size();
  size_t ib = numa_nodes.size();
  for (size_t i = 0; i < numa_nodes.size(); ++i) {
    if (numa_nodes[i].id == a) ia = i;
    if (numa_nodes[i].id == b) ib = i;
  }
  if (ia < distance.size() && ib < distance[ia].size()) return distance[ia][ib];
  return 20;
}

bool Inventory::is_passthrough(int group) const {
  return group >= 0 && std::find(passthrough_groups.begin(), passthrough_groups.end(), group) !=
                           passthrough_groups.end();
}

void to_json(nlohmann::json& j, const CharDevice& d) {
  j = {{"path", d.path}, {"major", d.major}, {"minor", d.minor}};
}

void to_json(nlohmann::json& j, const Inventory& inv) {
  j = nlohmann::json::object();
  auto& numa = j["numa_nodes"] = nlohmann::json::array();
  for (const auto& n : inv.numa_nodes)
    numa.push_back({{"id", n.id},
                    {"cpus", format_cpulist(n.cpus)},
                    {"has_memory", n.has_memory},
                    {"memory_node", n.memory_node}});
  auto& gpus = j["gpus"] = nlohmann::json::array();
  for (const auto& g : inv.gpus)
    gpus.push_back({{"id", g.id()},
                    {"pci", g.pci},
                    {"mig", g.mig},
                    {"index", g.index},
                    {"uuid", g.uuid},
                    {"vendor", g.vendor},
                    {"device", g.device},
                    {"numa", g.numa},
                    {"iommu_group", g.iommu_group},
                    {"passthrough", inv.is_passthrough(g.iommu_group)},
                    {"devices", g.devices}});
  auto& hcas = j["hcas"] = nlohmann::json::array();
  for (const auto& h : inv.hcas)
    hcas.push_back(
        {{"pci", h.pci}, {"netdev", h.netdev}, {"rdma", h.rdma}, {"numa", h.numa}, {"vfs", h.vfs}});
  auto& vfs = j["vfs"] = nlohmann::json::array();
  for (const auto& v : inv.vfs)
    vfs.push_back({{"pci", v.pci},
                   {"pf", v.pf_pci},
                   {"vf_index", v.vf_index},
                   {"netdev", v.netdev},
                   {"rdma", v.rdma},
                   {"infiniband", v.infiniband},
                   {"numa", v.numa},
                   {"iommu_group", v.iommu_group},
                   {"mtu", v.mtu},
                   {"driver", v.driver},
                   {"devices", v.devices}});
  j["rdma_netns"] = inv.rdma_netns;
  auto& rdma = j["rdma_devices"] = nlohmann::json::array();
  for (const auto& d : inv.rdma_devices) {
    nlohmann::json ports = nlohmann::json::array();
    for (const auto& p : d.ports)
      ports.push_back({{"port", p.port},
                       {"link_layer", p.link_layer},
                       {"state", p.state},
                       {"lid", p.lid},
                       {"guid", p.guid}});
    rdma.push_back({{"name", d.name},
                    {"pci", d.pci},
                    {"role", d.role},
                    {"node_guid", d.node_guid},
                    {"sys_image_guid", d.sys_image_guid},
                    {"ports", ports}});
  }
}

bool uevent_may_change_inventory(const Inventory& inventory, std::string_view action,
                                 std::string_view subsystem, std::string_view sysname,
                                 bool host_device) {
  const bool net = subsystem == "net";
  if (!net && subsystem != "infiniband") return true;
  if (action != "add" && action != "remove" && action != "move") return true;
  if (net && action == "remove") return false;
  for (const auto& vf : inventory.vfs)
    if (!sysname.empty() && sysname == (net ? vf.netdev : vf.rdma)) return false;
  return !net || host_device;
}

}  // namespace berth
