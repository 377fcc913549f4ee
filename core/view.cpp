#include "core/view.hpp"

#include "core/cpulist.hpp"

namespace berth {

nlohmann::json berth_view(const Berth& b, const Inventory& inv) {
  nlohmann::json j = b;
  j.erase("seq");
  j.erase("plan");
  j.erase("done");
  j.erase("in_flight");
  j["gpus"] = nlohmann::json::array();
  for (const auto& id : b.placement.gpus) {
    nlohmann::json g = {{"id", id}, {"pci", id.substr(0, id.find('/'))}};
    if (const Gpu* gpu = inv.gpu_by_id(id)) {
      if (!gpu->mig.empty()) g["mig"] = gpu->mig;
      g["index"] = gpu->index;
      g["devices"] = nlohmann::json::array();
      for (const auto& d : gpu->devices) g["devices"].push_back(d.path);
    }
    j["gpus"].push_back(std::move(g));
  }
  j["steps_applied"] = b.done.size();
  if (j.contains("target") && !j["target"].is_null()) {
    j["target"].erase("start_time");
    j["target"].erase("devices_cgroup");
    j["target"].erase("cpuset_cgroup");
    j["target"].erase("unified_cgroup");
    j["target"].erase("netns");
    j["target"].erase("mntns");
  }
  return j;
}

nlohmann::json inventory_view(const Inventory& inv, const Ledger& ledger) {
  std::map<std::string, std::vector<std::string>> gpu_holders;
  std::map<std::string, std::string> vf_holder;
  std::map<int, std::string> cpu_holder;
  for (const auto& [owner, b] : ledger.berths) {
    if (!holds_devices(b)) continue;
    for (const auto& g : b.placement.gpus) gpu_holders[g].push_back(owner);
    for (const auto& v : b.placement.vfs) vf_holder[v] = owner;
    if (!b.request.shared)
      for (int c : b.placement.cpus) cpu_holder[c] = owner;
  }
  nlohmann::json j = inv;
  for (auto& g : j["gpus"]) {
    auto it = gpu_holders.find(g["id"].get<std::string>());
    g["held_by"] = it == gpu_holders.end() ? nlohmann::json::array() : nlohmann::json(it->second);
  }
  for (auto& v : j["vfs"]) {
    auto it = vf_holder.find(v["pci"].get<std::string>());
    v["held_by"] = it == vf_holder.end() ? nlohmann::json(nullptr) : nlohmann::json(it->second);
  }
  for (auto& n : j["numa_nodes"]) {
    const NumaNode* node = inv.numa(n["id"].get<int>());
    std::vector<int> free;
    for (int c : node->cpus)
      if (!cpu_holder.count(c)) free.push_back(c);
    n["free_cpus"] = format_cpulist(free);
  }
  return j;
}

}  // namespace berth
