#include "bench/peers.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>

#include <nlohmann/json.hpp>

#include "agent/host/cgroups.hpp"
#include "agent/host/container.hpp"
#include "agent/host/device_nodes.hpp"
#include "bench/process.hpp"
#include "bench/stats.hpp"
#include "net/links.hpp"

namespace berth::bench {

struct KernelFloor::Impl {
  CycleTarget t;
  agent::ContainerHandle c;
  agent::UniqueFd home;
  std::optional<net::Links> host;
  std::optional<net::Links> inside;
  agent::CgroupV1 cg{"/sys/fs/cgroup"};
  const CharDevice gpu{"/dev/nvidia0", 10, 229};
  const CharDevice ctl{"/dev/nvidiactl", 10, 259};
};

KernelFloor::KernelFloor(const CycleTarget& t) : impl_(std::make_unique<Impl>()) {
  impl_->t = t;
  auto c = agent::open_container(Target{t.pid, 0, ""});
  if (!c) {
    std::fprintf(stderr, "floor: %s\n", c.error().message.c_str());
    return;
  }
  impl_->c = std::move(*c);
  impl_->home.reset(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
  auto host = net::Links::open_current();
  auto inside = net::Links::open_in(impl_->c.netns.get(), impl_->home.get());
  if (host) impl_->host.emplace(std::move(*host));
  if (inside) impl_->inside.emplace(std::move(*inside));
}

KernelFloor::~KernelFloor() = default;

double KernelFloor::cycle_ms() {
  auto& i = *impl_;
  if (!i.host || !i.inside) return -1;
  auto start = Clock::now();
  auto dev = [&](const std::string& value, const char* file) {
    return i.cg.write("devices", i.t.cgroup, file, value);
  };
  bool ok = agent::make_device_node(i.c.root.get(), i.gpu).ok() &&
            agent::make_device_node(i.c.root.get(), i.ctl).ok() &&
            dev("c 10:229 rwm", "devices.allow") && dev("c 10:259 rwm", "devices.allow") &&
            i.host->move_to(i.t.vf, i.c.netns.get(), "ib0") &&
            i.inside->add_address("ib0", i.t.address) && i.inside->set_up("ib0", true) &&
            i.inside->add_route("ib0", "0.0.0.0/0", i.t.gateway) &&
            i.cg.write("cpuset", i.t.cgroup, "cpuset.cpus", "0") &&
            i.cg.write("cpuset", i.t.cgroup, "cpuset.mems", "0");
  ok = ok && i.cg.write("cpuset", i.t.cgroup, "cpuset.cpus", "0-1") &&
       i.inside->del_route("ib0", "0.0.0.0/0", i.t.gateway) && i.inside->set_up("ib0", false) &&
       i.inside->del_address("ib0", i.t.address) &&
       i.inside->move_to("ib0", i.home.get(), i.t.vf) && dev("c 10:259 rwm", "devices.deny") &&
       dev("c 10:229 rwm", "devices.deny") && agent::remove_device_node(i.c.root.get(), i.ctl) &&
       agent::remove_device_node(i.c.root.get(), i.gpu);
  double ms = ms_since(start);
  if (!ok) std::fprintf(stderr, "floor: a step failed\n");
  return ok ? ms : -1;
}

double KernelFloor::gpu_cycle_ms() {
  auto& i = *impl_;
  if (!i.c.root) return -1;
  auto start = Clock::now();
  auto dev = [&](const std::string& value, const char* file) {
    return i.cg.write("devices", i.t.cgroup, file, value);
  };
  bool ok = agent::make_device_node(i.c.root.get(), i.gpu).ok() &&
            agent::make_device_node(i.c.root.get(), i.ctl).ok() &&
            dev("c 10:229 rwm", "devices.allow") && dev("c 10:259 rwm", "devices.allow") &&
            i.cg.write("cpuset", i.t.cgroup, "cpuset.cpus", "0") &&
            i.cg.write("cpuset", i.t.cgroup, "cpuset.mems", "0");
  ok = ok && i.cg.write("cpuset", i.t.cgroup, "cpuset.cpus", "0-1") &&
       dev("c 10:259 rwm", "devices.deny") && dev("c 10:229 rwm", "devices.deny") &&
       agent::remove_device_node(i.c.root.get(), i.ctl) &&
       agent::remove_device_node(i.c.root.get(), i.gpu);
  double ms = ms_since(start);
  if (!ok) std::fprintf(stderr, "floor (GPU only): a step failed\n");
  return ok ? ms : -1;
}

namespace {

std::string cni_config(const CycleTarget& t) {
  nlohmann::json c = {{"cniVersion", "1.0.0"},
                      {"name", "berth-bench"},
                      {"type", "host-device"},
                      {"device", t.vf},
                      {"ipam",
                       {{"type", "static"},
                        {"addresses", {{{"address", t.address}, {"gateway", t.gateway}}}},
                        {"routes", {{{"dst", "0.0.0.0/0"}, {"gw", t.gateway}}}}}}};
  return c.dump();
}

double cni(const CycleTarget& t, const std::string& id, const char* command) {
  auto start = Clock::now();
  auto r = run_process({"/usr/lib/cni/host-device"},
                       {std::string("CNI_COMMAND=") + command, "CNI_CONTAINERID=" + id,
                        "CNI_NETNS=/proc/" + std::to_string(t.pid) + "/ns/net", "CNI_IFNAME=ib0",
                        "CNI_PATH=/usr/lib/cni"},
                       cni_config(t));
  double ms = ms_since(start);
  if (r.exit_code != 0) {
    std::fprintf(stderr, "cni %s: %s\n", command, r.output.c_str());
    return -1;
  }
  return ms;
}

}  // namespace

double cni_add_ms(const CycleTarget& t, const std::string& id) {
  return cni(t, id, "ADD");
}
double cni_del_ms(const CycleTarget& t, const std::string& id) {
  return cni(t, id, "DEL");
}

double ip_commands_cycle_ms(const CycleTarget& t) {
  const std::string pid = std::to_string(t.pid);
  const std::string dev = "/sys/fs/cgroup/devices" + t.cgroup;
  const std::string cpu = "/sys/fs/cgroup/cpuset" + t.cgroup;
  const std::string attach =
      "mknod -m 666 /proc/" + pid + "/root/dev/nvidia0 c 10 229 && mknod -m 666 /proc/" + pid +
      "/root/dev/nvidiactl c 10 259 && echo 'c 10:229 rwm' > " + dev +
      "/devices.allow && echo 'c 10:259 rwm' > " + dev + "/devices.allow && ip link set dev " +
      t.vf + " netns " + pid + " name ib0 && nsenter -t " + pid + " -n sh -c 'ip addr add " +
      t.address + " dev ib0 && ip link set ib0 up && ip route add default via " + t.gateway +
      " dev ib0' && echo 0 > " + cpu + "/cpuset.cpus && echo 0 > " + cpu + "/cpuset.mems";
  const std::string detach =
      "echo 0-1 > " + cpu + "/cpuset.cpus && nsenter -t " + pid +
      " -n sh -c 'ip route del default && ip link set ib0 down && ip addr flush dev ib0 && "
      "ip link set ib0 netns " +
      std::to_string(::getpid()) + " name " + t.vf + "' && echo 'c 10:259 rwm' > " + dev +
      "/devices.deny && echo 'c 10:229 rwm' > " + dev + "/devices.deny && rm /proc/" + pid +
      "/root/dev/nvidiactl /proc/" + pid + "/root/dev/nvidia0";
  auto start = Clock::now();
  auto a = run_process({"/bin/sh", "-c", attach});
  auto d = run_process({"/bin/sh", "-c", detach});
  double ms = ms_since(start);
  if (a.exit_code != 0 || d.exit_code != 0) {
    std::fprintf(stderr, "ip commands: %s%s\n", a.output.c_str(), d.output.c_str());
    return -1;
  }
  return ms;
}

}  // namespace berth::bench
