#pragma once
// What berthd tells its watchers: berth state changes, inventory changes, link changes and
// warnings, each a JSON object with a sequence number. The newest events are kept so a reader can
// start from a sequence number it saw; subscribers are called on the reactor and must not block
// (the event stream drops a reader that falls behind instead of waiting for it).
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <string>

#include <nlohmann/json.hpp>

namespace berth::agent {

struct BusEvent {
  uint64_t seq = 0;
  nlohmann::json body;  // {"seq", "time", "type", ...}
};

class EventBus {
 public:
  using Subscriber = std::function<void(const BusEvent&)>;
  explicit EventBus(size_t keep = 4096) : keep_(keep) {}

  // type: "berth", "inventory", "link", "warning". `fields` are merged into the event.
  void publish(const std::string& type, const nlohmann::json& fields);
  // The kept events with seq > after, oldest first.
  std::vector<BusEvent> since(uint64_t after) const;
  uint64_t last_seq() const { return next_seq_ - 1; }
  // Events published per type since start (for metrics and tests).
  const std::map<std::string, uint64_t>& counts() const { return counts_; }

  uint64_t subscribe(Subscriber s);
  void unsubscribe(uint64_t id);

 private:
  size_t keep_;
  uint64_t next_seq_ = 1;
  uint64_t next_sub_ = 1;
  std::deque<BusEvent> kept_;
  std::map<uint64_t, Subscriber> subs_;
  std::map<std::string, uint64_t> counts_;
};

}  // namespace berth::agent
