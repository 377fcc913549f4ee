#pragma once
// Real-host helpers for integration tests and agent benchmarks: shell commands, a runc container
// with a busybox rootfs, veth stand-ins for VF netdevs, and snapshots of everything an attach may
// touch.
#include <string>

namespace berth::itest {

// Why integration tests cannot run here, or empty when they can (set in main()).
extern std::string skip_reason;

struct Cmd {
  int rc = -1;
  std::string out;
};
Cmd sh(const std::string& command);

// A busybox container started with `runc run -d`, in its own network, mount and pid namespaces,
// with CAP_MKNOD and CAP_NET_RAW so that the devices cgroup, not a missing capability, is what
// stops it from using a device node.
class RuncContainer {
 public:
  // The container's cgroup is <cgroup_parent>/<id> under every v1 controller.
  explicit RuncContainer(std::string id, std::string cgroup_parent = "/berth-test");
  ~RuncContainer();
  RuncContainer(const RuncContainer&) = delete;
  RuncContainer& operator=(const RuncContainer&) = delete;

  bool started() const { return pid_ > 0; }
  const std::string& error() const { return error_; }
  int pid() const { return pid_; }
  const std::string& id() const { return id_; }
  std::string cgroup() const { return parent_ + "/" + id_; }
  Cmd exec(const std::string& shell_command) const;

 private:
  std::string id_;
  std::string parent_;
  std::string bundle_;
  std::string error_;
  int pid_ = 0;
};

// veth pairs named like the fixture's VF netdevs; the peer "<name>p" stays on the host, and the
// first pair's peer holds the gateway address 10.77.0.1/24.
void create_vf_standins();
void remove_vf_standins();

// Host links, addresses and routes; the container's cgroup rules, cpuset, /dev and links.
std::string snapshot(const RuncContainer& c);
// The lines only in `before` ("- ") and only in `after` ("+ "): empty when nothing changed.
std::string diff(const std::string& before, const std::string& after);

}  // namespace berth::itest
