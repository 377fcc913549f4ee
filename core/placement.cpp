#include "core/placement.hpp"

#include <algorithm>
#include <numeric>
#include <optional>
#include <tuple>

#include "core/cpulist.hpp"

namespace berth {
namespace {

// GPUs that must move together: a passthrough IOMMU group, or a single GPU.
struct GpuUnit {
  std::vector<const Gpu*> gpus;
  int numa = 0;
};

bool gpu_free(const Usage& u, const std::string& pci, bool shared) {
  auto ex = u.gpu_exclusive.find(pci);
  if (ex != u.gpu_exclusive.end() && ex->second > 0) return false;
  if (shared) return true;
  auto sh = u.gpu_shared.find(pci);
  return sh == u.gpu_shared.end() || sh->second == 0;
}

std::vector<GpuUnit> free_units(const Inventory& inv, const Usage& u, bool shared) {
  std::vector<GpuUnit> units;
  std::map<int, size_t> group_unit;
  std::set<int> blocked_groups;  // a group with any member taken is not available
  for (const auto& g : inv.gpus)
    if (inv.is_passthrough(g.iommu_group) && !gpu_free(u, g.id(), shared))
      blocked_groups.insert(g.iommu_group);
  for (const auto& g : inv.gpus) {
    if (!gpu_free(u, g.id(), shared)) continue;
    if (inv.is_passthrough(g.iommu_group)) {
      if (blocked_groups.count(g.iommu_group)) continue;
      auto it = group_unit.find(g.iommu_group);
      if (it != group_unit.end()) {
        units[it->second].gpus.push_back(&g);
        continue;
      }
      group_unit[g.iommu_group] = units.size();
    }
    units.push_back({{&g}, g.numa});
  }
  return units;
}

// Units whose sizes add up to exactly n; singles first so groups stay whole for those who need
// them.
std::optional<std::vector<const Gpu*>> choose_gpus(std::vector<GpuUnit> units, int n) {
  if (n == 0) return std::vector<const Gpu*>{};
  for (bool big_first : {false, true}) {
    std::stable_sort(units.begin(), units.end(), [&](const GpuUnit& a, const GpuUnit& b) {
      return big_first ? a.gpus.size() > b.gpus.size() : a.gpus.size() < b.gpus.size();
    });
    std::vector<const Gpu*> out;
    for (const auto& unit : units)
      if (out.size() + unit.gpus.size() <= static_cast<size_t>(n))
        out.insert(out.end(), unit.gpus.begin(), unit.gpus.end());
    if (out.size() == static_cast<size_t>(n)) return out;
  }
  return std::nullopt;
}

std::vector<const Vf*> free_vfs_on(const Inventory& inv, const Usage& u, int numa) {
  std::vector<const Vf*> out;
  for (const auto& v : inv.vfs)
    if (v.numa == numa && !u.vfs.count(v.pci)) out.push_back(&v);
  return out;
}

std::vector<int> free_cpus_on(const NumaNode& n, const Usage& u) {
  std::vector<int> out;
  for (int c : n.cpus)
    if (!u.cpus.count(c)) out.push_back(c);
  return out;
}

std::string plural(size_t n, const std::string& word) {
  return std::to_string(n) + " " + word + (n == 1 ? "" : "s");
}

Error refusal(const Inventory& inv, const Usage& u, const BerthRequest& req,
              const std::string& why) {
  std::string msg = "cannot place ";
  msg += req.gpu_ids.empty() ? plural(req.gpu_count, "GPU") : "GPUs [" + [&] {
    std::string s;
    for (const auto& id : req.gpu_ids) s += (s.empty() ? "" : ",") + id;
    return s;
  }() + "]";
  msg += ", " + plural(req.vf_count, "VF") + ", " +
         (req.cpu_count == 0 ? std::string("a whole NUMA node of CPUs")
                             : plural(req.cpu_count, "CPU")) +
         " (numa=" + std::string(to_string(req.numa)) + (req.shared ? ", shared" : "") + ")";
  if (!why.empty()) msg += ": " + why;
  msg += "; free:";
  for (const auto& n : inv.numa_nodes) {
    size_t gpus = 0;
    for (const auto& g : inv.gpus) gpus += g.numa == n.id && gpu_free(u, g.id(), req.shared);
    msg += " node " + std::to_string(n.id) + " has " + plural(gpus, "GPU") + ", " +
           plural(free_vfs_on(inv, u, n.id).size(), "VF") + ", " +
           std::to_string(free_cpus_on(n, u).size()) + " of " + std::to_string(n.cpus.size()) +
           " CPUs;";
  }
  msg.pop_back();
  return make_error(ErrorCode::no_capacity, msg);
}

std::vector<int> nodes_by_distance(const Inventory& inv, const std::vector<int>& from) {
  std::vector<int> ids;
  for (const auto& n : inv.numa_nodes) ids.push_back(n.id);
  auto dist = [&](int id) {
    int best = 1 << 30;
    for (int f : from) best = std::min(best, inv.numa_distance(f, id));
    return best;
  };
  std::stable_sort(ids.begin(), ids.end(), [&](int a, int b) {
    return std::make_pair(dist(a), a) < std::make_pair(dist(b), b);
  });
  return ids;
}

// VFs and CPUs for GPUs already chosen on `gpu_nodes`: from those nodes first, then the nearest.
// With `single`, only from the one node.
std::optional<Placement> complete(const Inventory& inv, const Usage& u, const BerthRequest& req,
                                  const std::vector<const Gpu*>& gpus,
                                  const std::vector<int>& nodes, bool single) {
  Placement p;
  for (const auto* g : gpus) p.gpus.push_back(g->id());
  std::vector<int> order = single ? nodes : nodes_by_distance(inv, nodes);
  std::set<int> used_nodes(nodes.begin(), nodes.end());
  for (int id : order) {
    if (p.vfs.size() == static_cast<size_t>(req.vf_count)) break;
    for (const auto* v : free_vfs_on(inv, u, id)) {
      if (p.vfs.size() == static_cast<size_t>(req.vf_count)) break;
      p.vfs.push_back(v->pci);
      used_nodes.insert(id);
    }
  }
  if (p.vfs.size() != static_cast<size_t>(req.vf_count)) return std::nullopt;
  if (req.cpu_count == 0) {
    // Whole NUMA nodes: every node the berth touches, entirely free (exclusive) or as is (shared).
    if (used_nodes.empty() && !order.empty()) used_nodes.insert(order.front());
    for (int id : used_nodes) {
      const auto* n = inv.numa(id);
      if (!req.shared && free_cpus_on(*n, u).size() != n->cpus.size()) return std::nullopt;
      p.cpus.insert(p.cpus.end(), n->cpus.begin(), n->cpus.end());
    }
  } else {
    for (int id : order) {
      const auto* n = inv.numa(id);
      for (int c : req.shared ? n->cpus : free_cpus_on(*n, u)) {
        if (p.cpus.size() == static_cast<size_t>(req.cpu_count)) break;
        p.cpus.push_back(c);
        used_nodes.insert(id);
      }
    }
    if (p.cpus.size() != static_cast<size_t>(req.cpu_count)) return std::nullopt;
  }
  std::sort(p.cpus.begin(), p.cpus.end());
  std::set<int> mems;
  for (int id : used_nodes) {
    p.numa.push_back(id);
    mems.insert(inv.numa(id)->memory_node);
  }
  p.mems.assign(mems.begin(), mems.end());
  return p;
}

// Leftover capacity of a node after a placement, smaller is a better fit.
std::tuple<size_t, size_t, size_t, int> leftover(const Inventory& inv, const Usage& u,
                                                 const BerthRequest& req, const Placement& p,
                                                 int id) {
  size_t gpus = 0;
  for (const auto& g : inv.gpus) gpus += g.numa == id && gpu_free(u, g.id(), req.shared);
  size_t vfs = free_vfs_on(inv, u, id).size();
  size_t cpus = free_cpus_on(*inv.numa(id), u).size();
  return {gpus - std::min(gpus, p.gpus.size()), vfs - std::min(vfs, p.vfs.size()),
          cpus - std::min(cpus, p.cpus.size()), id};
}

Expected<Placement> place_explicit(const Inventory& inv, const Usage& u, const BerthRequest& req) {
  std::vector<const Gpu*> gpus;
  for (const auto& id : req.gpu_ids) {
    const Gpu* g = inv.gpu_by_id(id);
    if (!g && std::all_of(id.begin(), id.end(), [](char c) { return c >= '0' && c <= '9'; }) &&
        id.size() < 9)
      g = inv.gpu_by_index(std::stoi(id));
    if (!g) {
      std::string instances;  // a GPU in MIG mode is given by its instances, never whole
      for (const auto& m : inv.gpus)
        if (!m.mig.empty() && (m.pci == id || std::to_string(m.index) == id))
          instances += (instances.empty() ? "" : ", ") + m.id();
      if (!instances.empty())
        return make_error(
            ErrorCode::bad_request,
            "gpu_ids: GPU '" + id + "' is in MIG mode; name its instances: " + instances);
      return make_error(ErrorCode::bad_request, "gpu_ids: no GPU '" + id + "' on this node");
    }
    if (!gpu_free(u, g->id(), req.shared)) {
      std::string by;
      if (auto h = u.gpu_holders.find(g->id()); h != u.gpu_holders.end())
        for (const auto& o : h->second) by += (by.empty() ? " by " : ", ") + o;
      return refusal(inv, u, req, "GPU " + id + " (" + g->id() + ") is held" + by);
    }
    gpus.push_back(g);
  }
  for (const auto* g : gpus) {
    if (!inv.is_passthrough(g->iommu_group)) continue;
    for (const auto& other : inv.gpus)
      if (other.iommu_group == g->iommu_group &&
          std::find(gpus.begin(), gpus.end(), &other) == gpus.end())
        return make_error(ErrorCode::bad_request, "gpu_ids: " + g->id() +
                                                      " shares passthrough IOMMU group " +
                                                      std::to_string(g->iommu_group) + " with " +
                                                      other.id() + "; request both or neither");
  }
  std::set<int> nodes;
  for (const auto* g : gpus) nodes.insert(g->numa);
  if (req.numa == NumaPolicy::single && nodes.size() > 1)
    return refusal(inv, u, req, "the listed GPUs span NUMA nodes and numa=single");
  auto p =
      complete(inv, u, req, gpus, {nodes.begin(), nodes.end()}, req.numa == NumaPolicy::single);
  if (!p) return refusal(inv, u, req, "not enough VFs or CPUs near the listed GPUs");
  return *p;
}

}  // namespace

void Usage::add(const Berth& b) {
  if (!holds_devices(b)) return;
  for (const auto& g : b.placement.gpus) {
    ++(b.request.shared ? gpu_shared : gpu_exclusive)[g];
    gpu_holders[g].push_back(b.owner + (b.request.shared ? " (shared)" : ""));
  }
  vfs.insert(b.placement.vfs.begin(), b.placement.vfs.end());
  if (!b.request.shared) cpus.insert(b.placement.cpus.begin(), b.placement.cpus.end());
}

Expected<Placement> place(const Inventory& inv, const Usage& u, const BerthRequest& req) {
  if (inv.numa_nodes.empty())
    return refusal(inv, u, req, "this node has no NUMA nodes in its inventory");
  if (!req.gpu_ids.empty()) return place_explicit(inv, u, req);

  auto units = free_units(inv, u, req.shared);
  if (req.numa != NumaPolicy::any) {
    std::optional<Placement> best;
    std::tuple<size_t, size_t, size_t, int> best_fit{};
    for (const auto& n : inv.numa_nodes) {
      std::vector<GpuUnit> local;
      for (const auto& unit : units)
        if (unit.numa == n.id) local.push_back(unit);
      auto gpus = choose_gpus(local, req.gpu_count);
      if (!gpus) continue;
      auto p = complete(inv, u, req, *gpus, {n.id}, true);
      if (!p) continue;
      auto fit = leftover(inv, u, req, *p, n.id);
      if (!best || fit < best_fit) {
        best = std::move(p);
        best_fit = fit;
      }
    }
    if (best) return *best;
    if (req.numa == NumaPolicy::single)
      return refusal(inv, u, req, "no single NUMA node has all of it free");
  }
  // Spread: GPUs from the nodes with the most free first, VFs and CPUs nearest to them.
  std::map<int, size_t> free_per_node;
  for (const auto& unit : units) free_per_node[unit.numa] += unit.gpus.size();
  std::stable_sort(units.begin(), units.end(), [&](const GpuUnit& a, const GpuUnit& b) {
    return free_per_node[a.numa] > free_per_node[b.numa];
  });
  std::vector<const Gpu*> gpus;
  for (const auto& unit : units)
    if (gpus.size() + unit.gpus.size() <= static_cast<size_t>(req.gpu_count))
      gpus.insert(gpus.end(), unit.gpus.begin(), unit.gpus.end());
  if (gpus.size() != static_cast<size_t>(req.gpu_count))
    return refusal(inv, u, req, "not enough free GPUs");
  std::set<int> nodes;
  for (const auto* g : gpus) nodes.insert(g->numa);
  if (nodes.empty()) {
    // No GPUs: start from the node with the most free VFs, then CPUs.
    int best = inv.numa_nodes.front().id;
    size_t best_score = 0;
    for (const auto& n : inv.numa_nodes) {
      size_t score = free_vfs_on(inv, u, n.id).size() * 65536 + free_cpus_on(n, u).size();
      if (score > best_score) best = n.id, best_score = score;
    }
    nodes.insert(best);
  }
  auto p = complete(inv, u, req, gpus, {nodes.begin(), nodes.end()}, false);
  if (!p) return refusal(inv, u, req, "not enough free VFs or CPUs");
  return *p;
}

}  // namespace berth
