#include "tests/fakes/fake_systemd.hpp"

#include <signal.h>
#include <sys/wait.h>
#include <systemd/sd-bus.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>

namespace berth::testing {
namespace {

constexpr const char* kUnitPrefix = "/org/freedesktop/systemd1/unit";

FakeSystemd& self_of(void* userdata) {
  return *static_cast<FakeSystemd*>(userdata);
}

std::string unit_of_path(const char* path) {
  char* name = nullptr;
  if (sd_bus_path_decode(path, kUnitPrefix, &name) <= 0) return {};
  std::string out = name;
  std::free(name);
  return out;
}

int get_unit(sd_bus_message* m, void* userdata, sd_bus_error* err) {
  const char* name = nullptr;
  int r = sd_bus_message_read(m, "s", &name);
  if (r < 0) return r;
  {
    std::lock_guard lock(self_of(userdata).mutex);
    if (!self_of(userdata).units.count(name))
      return sd_bus_error_setf(err, "org.freedesktop.systemd1.NoSuchUnit", "Unit %s not loaded.",
                               name);
  }
  char* path = nullptr;
  if ((r = sd_bus_path_encode(kUnitPrefix, name, &path)) < 0) return r;
  r = sd_bus_reply_method_return(m, "o", path);
  std::free(path);
  return r;
}

// systemd's semantics: each DeviceAllow= assignment appends; an empty one resets the list.
int set_unit_properties(sd_bus_message* m, void* userdata, sd_bus_error* err) {
  auto& self = self_of(userdata);
  const char* name = nullptr;
  int runtime = 0;
  int r = sd_bus_message_read(m, "sb", &name, &runtime);
  if (r < 0) return r;
  std::lock_guard lock(self.mutex);
  auto unit = self.units.find(name);
  if (unit == self.units.end())
    return sd_bus_error_setf(err, "org.freedesktop.systemd1.NoSuchUnit", "Unit %s not loaded.",
                             name);
  ++self.calls_;
  if (!runtime) self.all_runtime_ = false;
  if ((r = sd_bus_message_enter_container(m, 'a', "(sv)")) < 0) return r;
  while ((r = sd_bus_message_enter_container(m, 'r', "sv")) > 0) {
    const char* prop = nullptr;
    if ((r = sd_bus_message_read(m, "s", &prop)) < 0) return r;
    if (std::strcmp(prop, "DeviceAllow") != 0)
      return sd_bus_error_setf(err, SD_BUS_ERROR_INVALID_ARGS, "unexpected property %s", prop);
    if ((r = sd_bus_message_enter_container(m, 'v', "a(ss)")) < 0 ||
        (r = sd_bus_message_enter_container(m, 'a', "(ss)")) < 0)
      return r;
    FakeSystemd::List add;
    const char* dev = nullptr;
    const char* access = nullptr;
    while ((r = sd_bus_message_read(m, "(ss)", &dev, &access)) > 0) add.emplace_back(dev, access);
    if (r < 0) return r;
    if (add.empty()) unit->second.clear();
    unit->second.insert(unit->second.end(), add.begin(), add.end());
    for (int i = 0; i < 3; ++i)
      if ((r = sd_bus_message_exit_container(m)) < 0) return r;
  }
  if (r < 0) return r;
  if ((r = sd_bus_message_exit_container(m)) < 0) return r;
  return sd_bus_reply_method_return(m, "");
}

int device_allow_property(sd_bus*, const char* path, const char*, const char*,
                          sd_bus_message* reply, void* userdata, sd_bus_error*) {
  auto& self = self_of(userdata);
  const std::string unit = unit_of_path(path);
  std::lock_guard lock(self.mutex);
  int r = sd_bus_message_open_container(reply, 'a', "(ss)");
  for (const auto& [dev, access] : self.units[unit])
    if (r >= 0) r = sd_bus_message_append(reply, "(ss)", dev.c_str(), access.c_str());
  if (r >= 0) r = sd_bus_message_close_container(reply);
  return r;
}

int find_unit(sd_bus*, const char* path, const char*, void* userdata, void** found, sd_bus_error*) {
  auto& self = self_of(userdata);
  const std::string unit = unit_of_path(path);
  std::lock_guard lock(self.mutex);
  if (unit.empty() || !self.units.count(unit)) return 0;
  *found = userdata;
  return 1;
}

const sd_bus_vtable kManager[] = {
    SD_BUS_VTABLE_START(0),
    SD_BUS_METHOD("GetUnit", "s", "o", get_unit, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD("SetUnitProperties", "sba(sv)", "", set_unit_properties, 0), SD_BUS_VTABLE_END};

const sd_bus_vtable kScope[] = {
    SD_BUS_VTABLE_START(0), SD_BUS_PROPERTY("DeviceAllow", "a(ss)", device_allow_property, 0, 0),
    SD_BUS_VTABLE_END};

}  // namespace

FakeSystemd::FakeSystemd(const std::string& dir, const std::vector<std::string>& names) {
  for (const auto& n : names) units[n] = {};
  const std::string socket = dir + "/system_bus_socket";
  std::filesystem::remove(socket);
  address_ = "unix:path=" + socket;
  daemon_ = ::fork();
  if (daemon_ == 0) {
    const std::string listen = "--address=" + address_;
    ::execlp("dbus-daemon", "dbus-daemon", "--session", "--nofork", "--nopidfile", listen.c_str(),
             nullptr);
    ::_exit(127);
  }
  for (int i = 0; i < 100 && !std::filesystem::exists(socket); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  if (!std::filesystem::exists(socket)) {
    error_ = "dbus-daemon did not start (apt-get install dbus-daemon)";
    return;
  }
  thread_ = std::thread([this] { serve(); });
  for (int i = 0; i < 100 && !ready_ && error_.empty(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  if (ready_) ::setenv("DBUS_SYSTEM_BUS_ADDRESS", address_.c_str(), 1);
}

FakeSystemd::~FakeSystemd() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  if (daemon_ > 0) {
    ::kill(daemon_, SIGTERM);
    ::waitpid(daemon_, nullptr, 0);
  }
  ::unsetenv("DBUS_SYSTEM_BUS_ADDRESS");
}

void FakeSystemd::serve() {
  sd_bus* bus = nullptr;
  sd_bus_slot* manager = nullptr;
  sd_bus_slot* scope = nullptr;
  int r = sd_bus_new(&bus);
  if (r >= 0) r = sd_bus_set_address(bus, address_.c_str());
  if (r >= 0) r = sd_bus_set_bus_client(bus, 1);
  if (r >= 0) r = sd_bus_start(bus);
  if (r >= 0)
    r = sd_bus_add_object_vtable(bus, &manager, "/org/freedesktop/systemd1",
                                 "org.freedesktop.systemd1.Manager", kManager, this);
  if (r >= 0)
    r = sd_bus_add_fallback_vtable(bus, &scope, kUnitPrefix, "org.freedesktop.systemd1.Scope",
                                   kScope, find_unit, this);
  if (r >= 0) r = sd_bus_request_name(bus, "org.freedesktop.systemd1", 0);
  if (r < 0) {
    error_ = std::string("fake systemd: ") + std::strerror(-r);
  } else {
    ready_ = true;
    while (!stop_) {
      r = sd_bus_process(bus, nullptr);
      if (r < 0) break;
      if (r == 0) sd_bus_wait(bus, 100000);
    }
  }
  sd_bus_slot_unref(scope);
  sd_bus_slot_unref(manager);
  sd_bus_flush_close_unref(bus);
}

FakeSystemd::List FakeSystemd::device_allow(const std::string& unit) {
  std::lock_guard lock(mutex);
  return units[unit];
}

void FakeSystemd::set_device_allow(const std::string& unit, List list) {
  std::lock_guard lock(mutex);
  units[unit] = std::move(list);
}

}  // namespace berth::testing
