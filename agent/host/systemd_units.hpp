#pragma once
// A systemd scope's DeviceAllow= list, read and replaced as a runtime property over D-Bus
// (sd-bus). systemd rebuilds a unit's device program from that list on `daemon-reload` and on
// every property change, so a device berth lets into a systemd-managed container must be in it.
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/expected.hpp"

typedef struct sd_bus sd_bus;

namespace berth::agent {

// DeviceAllow= entries: (path, access), e.g. ("/dev/char/195:0", "rw").
using DeviceAllowList = std::vector<std::pair<std::string, std::string>>;

// The systemd scope that manages v2 cgroup `unified` ("/machine.slice/libpod-ab.scope" ->
// "libpod-ab.scope"), when its last component names one.
std::optional<std::string> scope_of(const std::string& unified);

// The entry berth adds for c major:minor.
std::pair<std::string, std::string> device_allow_entry(unsigned major, unsigned minor);

// The system bus (DBUS_SYSTEM_BUS_ADDRESS when set), opened on first use by the thread that
// uses it (the worker) and opened again after a failure.
class SystemdUnits {
 public:
  SystemdUnits() = default;
  ~SystemdUnits();
  SystemdUnits(const SystemdUnits&) = delete;
  SystemdUnits& operator=(const SystemdUnits&) = delete;

  // The unit's DeviceAllow=; target_not_found when systemd does not know the unit,
  // host_unsupported when no systemd answers on the bus.
  Expected<DeviceAllowList> device_allow(const std::string& unit);
  // Replaces the list (a reset, then the entries), as a runtime property: gone at reboot.
  Status set_device_allow(const std::string& unit, const DeviceAllowList& list);

 private:
  Expected<sd_bus*> bus();
  void drop();
  sd_bus* bus_ = nullptr;
};

}  // namespace berth::agent
