#include "agent/host/systemd_units.hpp"

#include <systemd/sd-bus.h>

#include <cerrno>
#include <cstring>

namespace berth::agent {
namespace {

constexpr const char* kSystemd = "org.freedesktop.systemd1";
constexpr const char* kManagerPath = "/org/freedesktop/systemd1";
constexpr const char* kManager = "org.freedesktop.systemd1.Manager";

// sd-bus objects released when they go out of scope.
struct Message {
  sd_bus_message* m = nullptr;
  ~Message() { sd_bus_message_unref(m); }
};
struct BusError {
  sd_bus_error e{};  // SD_BUS_ERROR_NULL, without its C compound literal
  ~BusError() { sd_bus_error_free(&e); }
};

Error bus_error(const std::string& what, int r, const BusError& err) {
  const std::string why = sd_bus_error_is_set(&err.e) && err.e.message
                              ? std::string(err.e.message)
                              : std::string(std::strerror(-r));
  // No systemd answering (a host without it, or the bus is down) is the host's, not the request's.
  const bool absent = r == -ENOENT || r == -ECONNREFUSED || r == -EACCES ||
                      sd_bus_error_has_name(&err.e, SD_BUS_ERROR_SERVICE_UNKNOWN) ||
                      sd_bus_error_has_name(&err.e, SD_BUS_ERROR_NAME_HAS_NO_OWNER);
  const bool unknown_unit = sd_bus_error_has_name(&err.e, "org.freedesktop.systemd1.NoSuchUnit");
  return make_error(absent         ? ErrorCode::host_unsupported
                    : unknown_unit ? ErrorCode::target_not_found
                                   : ErrorCode::internal,
                    "systemd: " + what + ": " + why);
}

}  // namespace

std::optional<std::string> scope_of(const std::string& unified) {
  const auto slash = unified.rfind('/');
  const std::string last = slash == std::string::npos ? unified : unified.substr(slash + 1);
  constexpr std::string_view suffix = ".scope";
  if (last.size() <= suffix.size() || !last.ends_with(suffix)) return std::nullopt;
  return last;
}

std::pair<std::string, std::string> device_allow_entry(unsigned major, unsigned minor) {
  return {"/dev/char/" + std::to_string(major) + ":" + std::to_string(minor), "rw"};
}

SystemdUnits::~SystemdUnits() {
  drop();
}

void SystemdUnits::drop() {
  if (bus_) sd_bus_flush_close_unref(bus_);
  bus_ = nullptr;
}

Expected<sd_bus*> SystemdUnits::bus() {
  if (bus_ && sd_bus_is_open(bus_) > 0) return bus_;
  drop();
  const int r = sd_bus_open_system(&bus_);
  if (r < 0) {
    bus_ = nullptr;
    return make_error(
        ErrorCode::host_unsupported,
        std::string("systemd: cannot connect to the system bus: ") + std::strerror(-r));
  }
  return bus_;
}

Expected<DeviceAllowList> SystemdUnits::device_allow(const std::string& unit) {
  auto b = bus();
  if (!b) return b.error();
  BusError err;
  Message reply;
  int r = sd_bus_call_method(*b, kSystemd, kManagerPath, kManager, "GetUnit", &err.e, &reply.m, "s",
                             unit.c_str());
  if (r < 0) {
    if (r != -ENOENT && !sd_bus_error_is_set(&err.e)) drop();
    return bus_error("GetUnit " + unit, r, err);
  }
  const char* path = nullptr;
  if ((r = sd_bus_message_read(reply.m, "o", &path)) < 0)
    return bus_error("GetUnit " + unit + " reply", r, err);
  const std::string object = path;
  BusError perr;
  Message prop;
  r = sd_bus_get_property(*b, kSystemd, object.c_str(), "org.freedesktop.systemd1.Scope",
                          "DeviceAllow", &perr.e, &prop.m, "a(ss)");
  if (r < 0) return bus_error("DeviceAllow of " + unit, r, perr);
  DeviceAllowList list;
  if ((r = sd_bus_message_enter_container(prop.m, 'a', "(ss)")) < 0)
    return bus_error("DeviceAllow of " + unit, r, perr);
  const char* dev = nullptr;
  const char* access = nullptr;
  while ((r = sd_bus_message_read(prop.m, "(ss)", &dev, &access)) > 0)
    list.emplace_back(dev, access);
  if (r < 0) return bus_error("DeviceAllow of " + unit, r, perr);
  return list;
}

Status SystemdUnits::set_device_allow(const std::string& unit, const DeviceAllowList& list) {
  auto b = bus();
  if (!b) return b.error();
  Message call;
  int r = sd_bus_message_new_method_call(*b, &call.m, kSystemd, kManagerPath, kManager,
                                         "SetUnitProperties");
  // runtime=true: the change lives in /run and is gone at reboot, like the berth.
  if (r >= 0) r = sd_bus_message_append(call.m, "sb", unit.c_str(), 1);
  if (r >= 0) r = sd_bus_message_open_container(call.m, 'a', "(sv)");
  // An empty list resets DeviceAllow=; each later assignment appends.
  if (r >= 0) r = sd_bus_message_append(call.m, "(sv)", "DeviceAllow", "a(ss)", 0);
  if (r >= 0) r = sd_bus_message_open_container(call.m, 'r', "sv");
  if (r >= 0) r = sd_bus_message_append(call.m, "s", "DeviceAllow");
  if (r >= 0) r = sd_bus_message_open_container(call.m, 'v', "a(ss)");
  if (r >= 0) r = sd_bus_message_open_container(call.m, 'a', "(ss)");
  for (const auto& [dev, access] : list)
    if (r >= 0) r = sd_bus_message_append(call.m, "(ss)", dev.c_str(), access.c_str());
  for (int i = 0; i < 4 && r >= 0; ++i) r = sd_bus_message_close_container(call.m);
  BusError err;
  if (r < 0) return bus_error("SetUnitProperties " + unit, r, err);
  Message reply;
  r = sd_bus_call(*b, call.m, 0, &err.e, &reply.m);
  if (r < 0) return bus_error("SetUnitProperties " + unit, r, err);
  return ok_status();
}

}  // namespace berth::agent
