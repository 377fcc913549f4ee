#include "agent/app/usage_view.hpp"

#include <unistd.h>

#include "agent/host/cgroup_usage.hpp"

namespace berth::agent {

UsageView::UsageView(EventBus& bus, std::string cgroup_root)
    : bus_(bus), cgroup_root_(std::move(cgroup_root)) {
  subscription_ = bus_.subscribe([this](const BusEvent& ev) {
    if (ev.body.value("type", "") != "berth") return;
    const std::string owner = ev.body.value("owner", "");
    const std::string state = ev.body.value("state", "");
    if (state == "released")
      since_.erase(owner);
    else if (!since_.count(owner))
      since_[owner] = ev.body.value("time", 0.0);
  });
}

UsageView::~UsageView() {
  bus_.unsubscribe(subscription_);
}

nlohmann::json UsageView::render(const Ledger& ledger, const Inventory& inventory) const {
  nlohmann::json berths = nlohmann::json::object();
  for (const auto& [owner, b] : ledger.berths) {
    if (b.state == BerthState::released) continue;
    nlohmann::json u = nlohmann::json::object();
    if (auto it = since_.find(owner); it != since_.end()) u["since"] = it->second;
    if (b.target && b.target->pid > 0) {
      // cgroupfs and procfs reads: no disk I/O, cheap enough for the reactor.
      auto usage = read_cgroup_usage(b.target->pid, cgroup_root_);
      if (usage.cpu_seconds) u["cpu_seconds"] = *usage.cpu_seconds;
      if (usage.memory_bytes) u["memory_bytes"] = *usage.memory_bytes;
    }
    berths[owner] = u;
  }
  nlohmann::json gpus = nlohmann::json::object();
  for (const auto& g : inventory.gpus)
    if (g.mig.empty())
      if (auto s = nvml_.stats(g.pci))
        gpus[g.pci] = {{"utilization_percent", s->utilization_percent},
                       {"memory_used", s->memory_used},
                       {"memory_total", s->memory_total}};
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  return {{"node", host},
          {"berths", berths},
          {"gpus", gpus},
          {"nvml", {{"available", nvml_.available()}, {"message", nvml_.why()}}}};
}

}  // namespace berth::agent
