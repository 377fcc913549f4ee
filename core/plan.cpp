#include "core/plan.hpp"

#include <set>

#include "core/cpulist.hpp"

namespace berth {

std::vector<Step> attach_plan(const Berth& b, const Inventory& inv) {
  std::vector<Step> plan;
  std::set<std::pair<unsigned, unsigned>> seen;
  auto add_devices = [&](const std::vector<CharDevice>& devices) {
    for (const auto& d : devices) {
      if (!seen.insert({d.major, d.minor}).second) continue;
      plan.push_back(step::MakeNode{d});
      plan.push_back(step::AllowDevice{d.major, d.minor});
    }
  };
  for (const auto& pci : b.placement.gpus)
    if (const Gpu* g = inv.gpu_by_id(pci)) add_devices(g->devices);
  for (size_t i = 0; i < b.vfs.size(); ++i) {
    const auto& v = b.vfs[i];
    // GUIDs before anything uses the VF; the RDMA device before its netdev.
    if (!v.node_guid.empty())
      if (const Vf* vf = inv.vf_by_pci(v.pci))
        plan.push_back(step::SetVfGuid{vf->pf_pci, vf->pci, vf->vf_index, v.node_guid, v.port_guid,
                                       1, v.rebind});
    if (!v.rdma.empty()) plan.push_back(step::MoveRdmaIn{v.rdma});
    plan.push_back(step::MoveLinkIn{v.netdev, v.ifname, v.pci});
    if (b.request.network.mtu) plan.push_back(step::SetMtu{v.ifname, b.request.network.mtu});
    // On a partition the addresses and routes go to the IPoIB child; the VF's own netdev (the
    // default partition) is only brought up under it.
    std::string carrier = v.ifname;
    if (v.pkey) {
      carrier = pkey_link_name(v);
      plan.push_back(step::LinkUp{v.ifname});
      plan.push_back(step::AddPkeyLink{v.ifname, carrier, v.pkey});
      if (b.request.network.mtu) plan.push_back(step::SetMtu{carrier, b.request.network.mtu});
    }
    for (const auto& a : v.addresses) plan.push_back(step::AddAddress{carrier, a.to_string()});
    // Routes need the link up (the kernel refuses a gateway on a down link).
    plan.push_back(step::LinkUp{carrier});
    if (i == 0)
      for (const auto& r : b.routes)
        plan.push_back(step::AddRoute{carrier, r.dst.to_string(), r.via.to_string()});
    if (const Vf* vf = inv.vf_by_pci(v.pci)) add_devices(vf->devices);
  }
  if (!b.placement.cpus.empty())
    plan.push_back(
        step::SetCpuset{format_cpulist(b.placement.cpus), format_cpulist(b.placement.mems)});
  return plan;
}

}  // namespace berth
