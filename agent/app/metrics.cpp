#include "agent/app/metrics.hpp"

#include <set>

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include "core/placement.hpp"

namespace berth::agent {
namespace pm = prometheus;

namespace {

const pm::Histogram::BucketBoundaries& buckets() {
  // 100 us .. 30 s: a GPU-only attach is sub-millisecond, a VF attach a few ms, a slow runtime
  // or fsync seconds.
  static const pm::Histogram::BucketBoundaries b{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                                 0.01,   0.025,   0.05,   0.1,   0.25,   0.5,
                                                 1,      2.5,     5,      10,    30};
  return b;
}

}  // namespace

Metrics::Metrics(const std::string& version) : registry_(std::make_shared<pm::Registry>()) {
  berths_ = &pm::BuildGauge()
                 .Name("berth_berths")
                 .Help("Berths in the ledger by state (released ones kept as tombstones)")
                 .Register(*registry_);
  devices_ = &pm::BuildGauge()
                  .Name("berth_devices")
                  .Help("Devices of the node by kind (gpu, vf) and state (free, held)")
                  .Register(*registry_);
  durations_ = &pm::BuildHistogram()
                    .Name("berth_operation_duration_seconds")
                    .Help("Time from a caller's request to its answer, by operation")
                    .Register(*registry_);
  step_failures_ = &pm::BuildCounter()
                        .Name("berth_step_failures_total")
                        .Help("Host steps that failed, by step kind")
                        .Register(*registry_);
  events_ = &pm::BuildCounter()
                 .Name("berth_events_total")
                 .Help("Events published on the event stream, by source")
                 .Register(*registry_);
  webhooks_ = &pm::BuildCounter()
                   .Name("berth_webhook_requests_total")
                   .Help("Webhook requests by result")
                   .Register(*registry_);
  runners_ =
      &pm::BuildCounter()
           .Name("berth_github_runners_total")
           .Help("CI runners by what happened to them (started, start_failed, exited, reaped)")
           .Register(*registry_);
  resyncs_ = &pm::BuildCounter()
                  .Name("berth_netlink_resyncs_total")
                  .Help("Full netlink link dumps after start (overruns and the periodic timer)")
                  .Register(*registry_)
                  .Add({});
  rescans_ = &pm::BuildCounter()
                  .Name("berth_rescans_total")
                  .Help(
                      "Rescans of sysfs and /proc after start (uevents, the API, SIGHUP, the "
                      "resync timer)")
                  .Register(*registry_)
                  .Add({});
  pm::BuildGauge()
      .Name("berth_build_info")
      .Help("berthd's version; always 1")
      .Register(*registry_)
      .Add({{"version", version}})
      .Set(1);
  for (const char* op : {"create", "attach", "detach", "release", "slurm_prolog", "slurm_epilog"})
    durations_->Add({{"op", op}}, buckets());
  for (const char* s : {"berth", "inventory", "link", "udev", "warning", "reload"})
    events_->Add({{"source", s}});
  webhooks_->Add({{"result", "accepted"}});
  for (const char* e : {"started", "start_failed", "exited", "reaped"})
    runners_->Add({{"event", e}});
}

Metrics::~Metrics() = default;

void Metrics::operation(const std::string& op, double seconds) {
  durations_->Add({{"op", op}}, buckets()).Observe(seconds);
}

void Metrics::step_failed(const std::string& step) {
  step_failures_->Add({{"step", step}}).Increment();
}

void Metrics::webhook(const std::string& result) {
  webhooks_->Add({{"result", result}}).Increment();
}

void Metrics::runner(const std::string& event) {
  runners_->Add({{"event", event}}).Increment();
}

std::string Metrics::scrape(const Ledger& ledger, const Inventory& inventory,
                            const Sources& sources) {
  std::map<std::string, int> by_state;
  for (auto s :
       {BerthState::reserved, BerthState::attaching, BerthState::attached, BerthState::degraded,
        BerthState::detaching, BerthState::released, BerthState::failed})
    by_state[std::string(to_string(s))] = 0;
  Usage usage;
  for (const auto& [owner, b] : ledger.berths) {
    ++by_state[std::string(to_string(b.state))];
    usage.add(b);
  }
  for (const auto& [state, n] : by_state) berths_->Add({{"state", state}}).Set(n);
  double gpus_held = 0;
  for (const auto& g : inventory.gpus)
    if (usage.gpu_exclusive.count(g.id()) || usage.gpu_shared.count(g.id())) ++gpus_held;
  double vfs_held = 0;
  for (const auto& v : inventory.vfs)
    if (usage.vfs.count(v.pci)) ++vfs_held;
  devices_->Add({{"kind", "gpu"}, {"state", "held"}}).Set(gpus_held);
  devices_->Add({{"kind", "gpu"}, {"state", "free"}})
      .Set(static_cast<double>(inventory.gpus.size()) - gpus_held);
  devices_->Add({{"kind", "vf"}, {"state", "held"}}).Set(vfs_held);
  devices_->Add({{"kind", "vf"}, {"state", "free"}})
      .Set(static_cast<double>(inventory.vfs.size()) - vfs_held);
  for (const auto& [type, n] : sources.events) {
    auto& c = events_->Add({{"source", type}});
    if (static_cast<double>(n) > c.Value()) c.Increment(static_cast<double>(n) - c.Value());
  }
  if (static_cast<double>(sources.netlink_resyncs) > resyncs_->Value())
    resyncs_->Increment(static_cast<double>(sources.netlink_resyncs) - resyncs_->Value());
  if (static_cast<double>(sources.rescans) > rescans_->Value())
    rescans_->Increment(static_cast<double>(sources.rescans) - rescans_->Value());
  return pm::TextSerializer().Serialize(registry_->Collect());
}

}  // namespace berth::agent
