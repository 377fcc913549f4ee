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

// How runc manages the container's cgroups. v1: the v1 controllers (devices list, cpuset) on a
// hybrid host. v2: runc in pure cgroup v2 mode (a private mount namespace with cgroup2 mounted at
// /sys/fs/cgroup, as on a stock Debian 12), attaching its own device program; the container's
// v1 devices cgroup is the open root and its cpuset a v1 cgroup of its own (this host's cpuset
// controller is bound to v1).
enum class CgroupMode { v1, v2 };
const char* to_string(CgroupMode m);
// Why `m` cannot run on this host, or empty.
std::string missing_for(CgroupMode m);

// A busybox container started with `runc run -d`, in its own network, mount and pid namespaces,
// with CAP_MKNOD and CAP_NET_RAW so that the devices cgroup, not a missing capability, is what
// stops it from using a device node.
class RuncContainer {
 public:
  // The container's cgroup is <cgroup_parent>/<id> under every v1 controller (v1) or under the
  // cgroup2 mount (v2). On a pure cgroup v2 host (a stock Debian 12) a v1 container is a v2 one:
  // that is how runc runs every container there.
  // `user_namespace`: its root is host uid 100000 in a user namespace of its own (as Podman's
  // or LXD's unprivileged containers are), so the /dev it mounts is nodev.
  explicit RuncContainer(std::string id, std::string cgroup_parent = "/berth-test",
                         CgroupMode mode = CgroupMode::v1, bool user_namespace = false);
  ~RuncContainer();
  RuncContainer(const RuncContainer&) = delete;
  RuncContainer& operator=(const RuncContainer&) = delete;

  bool started() const { return pid_ > 0; }
  const std::string& error() const { return error_; }
  int pid() const { return pid_; }
  const std::string& id() const { return id_; }
  std::string cgroup() const { return parent_ + "/" + id_; }
  CgroupMode mode() const { return mode_; }
  // The v1 cpuset cgroup directory that holds the container.
  std::string cpuset_dir() const;
  // What decides its device access: the v1 devices list, or the ids of the device programs on
  // its cgroup v2 cgroup.
  std::string device_rules() const;
  // Whether its cgroup lets it use char device major:minor (rwm), in its mode.
  bool allows_device(unsigned major, unsigned minor) const;
  Cmd exec(const std::string& shell_command) const;
  // `runc <args>` as this container's mode needs it.
  Cmd runc(const std::string& args) const;

 private:
  std::string id_;
  std::string parent_;
  std::string bundle_;
  CgroupMode mode_;
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
