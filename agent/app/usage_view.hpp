#pragma once
// GET /v1/usage, for the status page: per berth the time it has been held and its container's
// CPU time and memory (from its cgroups), per GPU utilisation and memory when NVML is present.
#include <map>
#include <string>

#include <nlohmann/json.hpp>

#include "agent/app/event_bus.hpp"
#include "agent/host/nvml.hpp"
#include "core/ledger.hpp"

namespace berth::agent {

class UsageView {
 public:
  UsageView(EventBus& bus, std::string cgroup_root);
  ~UsageView();
  UsageView(const UsageView&) = delete;
  UsageView& operator=(const UsageView&) = delete;
  nlohmann::json render(const Ledger& ledger, const Inventory& inventory) const;

 private:
  EventBus& bus_;
  uint64_t subscription_ = 0;
  std::string cgroup_root_;
  std::map<std::string, double> since_;  // owner -> time of its reservation (this run)
  Nvml nvml_;
};

}  // namespace berth::agent
