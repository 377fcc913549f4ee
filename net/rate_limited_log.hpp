#pragma once
// Warnings that a peer can provoke, at most one per message id every 10 s: a flood of bad
// connections leaves a few log lines that say how many were left out, never gigabytes.
#include <chrono>
#include <map>
#include <string>
#include <utility>

#include <spdlog/spdlog.h>

namespace berth::net {

class RateLimitedLog {
 public:
  explicit RateLimitedLog(std::chrono::seconds every = std::chrono::seconds(10)) : every_(every) {}

  // `message` is called only when the line is written: a suppressed warning costs no formatting.
  template <class MessageFn>
  void warn(const std::string& id, MessageFn&& message_fn) {
    warn(id, id, std::forward<MessageFn>(message_fn));
  }

  // The same, counted per `key` (one condition among several under one message id).
  template <class MessageFn>
  void warn(const std::string& id, const std::string& key, MessageFn&& message_fn) {
    auto now = std::chrono::steady_clock::now();
    auto& e = entries_[key];
    if (e.last.time_since_epoch().count() != 0 && now - e.last < every_) {
      ++e.suppressed;
      return;
    }
    const std::string message = message_fn();
    if (e.suppressed)
      spdlog::warn("{} {} ({} more like it in the last {} s)", id, message, e.suppressed,
                   every_.count());
    else
      spdlog::warn("{} {}", id, message);
    e.last = now;
    e.suppressed = 0;
  }

 private:
  struct Entry {
    std::chrono::steady_clock::time_point last{};
    unsigned long suppressed = 0;
  };
  std::chrono::seconds every_;
  std::map<std::string, Entry> entries_;
};

}  // namespace berth::net
