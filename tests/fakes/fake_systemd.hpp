#pragma once
// systemd's unit API as far as berth uses it (Manager.GetUnit, Manager.SetUnitProperties for
// DeviceAllow=, the Scope's DeviceAllow property), served over sd-bus by a thread of its own on
// a private dbus-daemon that this object starts and stops. For integration tests on hosts
// without systemd: berth talks to it exactly as to systemd (DBUS_SYSTEM_BUS_ADDRESS).
#include <sys/types.h>

#include <atomic>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace berth::testing {

class FakeSystemd {
 public:
  using List = std::vector<std::pair<std::string, std::string>>;
  // Starts dbus-daemon on a socket under `dir` and serves `units` (each with an empty list).
  // Sets DBUS_SYSTEM_BUS_ADDRESS for this process; unset again on destruction.
  FakeSystemd(const std::string& dir, const std::vector<std::string>& units);
  ~FakeSystemd();
  FakeSystemd(const FakeSystemd&) = delete;
  FakeSystemd& operator=(const FakeSystemd&) = delete;

  bool ready() const { return ready_; }
  const std::string& error() const { return error_; }
  List device_allow(const std::string& unit);
  void set_device_allow(const std::string& unit, List list);
  // SetUnitProperties calls seen, and whether each was a runtime one.
  int calls() const { return calls_; }
  bool all_runtime() const { return all_runtime_; }

  // The sd-bus callbacks' access.
  std::mutex mutex;
  std::map<std::string, List> units;
  std::atomic<int> calls_{0};
  std::atomic<bool> all_runtime_{true};

 private:
  void serve();
  std::string address_;
  pid_t daemon_ = 0;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> ready_{false};
  std::string error_;
};

}  // namespace berth::testing
