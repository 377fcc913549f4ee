#pragma once
// berthd's Prometheus metrics (prometheus-cpp's core library; served by berth's own HTTP server
// at GET /metrics, in the text format). No per-berth labels: cardinality stays bounded by the
// number of states, device kinds, operations and step kinds.
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "core/ledger.hpp"

namespace prometheus {
class Registry;
template <typename T>
class Family;
class Counter;
class Gauge;
class Histogram;
}  // namespace prometheus

namespace berth::agent {

class Metrics {
 public:
  explicit Metrics(const std::string& version);
  ~Metrics();
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  // A caller's operation (create, attach, detach, release, slurm_prolog, ...) took `seconds`.
  void operation(const std::string& op, double seconds);
  // A host step (its kind: make_node, move_link_in, ...) failed.
  void step_failed(const std::string& step);
  // A webhook request ended with `result` (accepted, ignored, bad_signature, ...).
  void webhook(const std::string& result);
  // A CI runner was started, failed to start, exited by itself or was reaped.
  void runner(const std::string& event);

  // Counters kept elsewhere, read at scrape time.
  struct Sources {
    std::map<std::string, uint64_t> events;  // event bus counts by type
    uint64_t netlink_resyncs = 0;
    uint64_t rescans = 0;  // sysfs and /proc read again
  };
  // The text exposition of every metric, gauges computed from the ledger and inventory now.
  std::string scrape(const Ledger& ledger, const Inventory& inventory, const Sources& sources);

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Gauge>* berths_;
  prometheus::Family<prometheus::Gauge>* devices_;
  prometheus::Family<prometheus::Histogram>* durations_;
  prometheus::Family<prometheus::Counter>* step_failures_;
  prometheus::Family<prometheus::Counter>* events_;
  prometheus::Family<prometheus::Counter>* webhooks_;
  prometheus::Family<prometheus::Counter>* runners_;
  prometheus::Counter* resyncs_;
  prometheus::Counter* rescans_;
};

}  // namespace berth::agent
