#include "agent/app/event_bus.hpp"

#include <chrono>

namespace berth::agent {

void EventBus::publish(const std::string& type, const nlohmann::json& fields) {
  BusEvent ev;
  ev.seq = next_seq_++;
  const auto now = std::chrono::system_clock::now().time_since_epoch();
  ev.body = {{"seq", ev.seq},
             {"time", static_cast<double>(
                          std::chrono::duration_cast<std::chrono::milliseconds>(now).count()) /
                          1000.0},
             {"type", type}};
  if (fields.is_object()) ev.body.update(fields);
  ++counts_[type];
  kept_.push_back(ev);
  while (kept_.size() > keep_) kept_.pop_front();
  // A subscriber may unsubscribe itself (or another) while called: iterate over a copy of ids.
  std::vector<uint64_t> ids;
  for (const auto& [id, s] : subs_) ids.push_back(id);
  for (uint64_t id : ids)
    if (auto it = subs_.find(id); it != subs_.end()) it->second(ev);
}

std::vector<BusEvent> EventBus::since(uint64_t after) const {
  std::vector<BusEvent> out;
  for (const auto& e : kept_)
    if (e.seq > after) out.push_back(e);
  return out;
}

uint64_t EventBus::subscribe(Subscriber s) {
  const uint64_t id = next_sub_++;
  subs_[id] = std::move(s);
  return id;
}

void EventBus::unsubscribe(uint64_t id) {
  subs_.erase(id);
}

}  // namespace berth::agent
