#pragma once
// The host actuator's seams, one per OS surface. Each has a real adapter (agent/host/real_host.*)
// and a fake (tests/fakes/fake_host.hpp), so the actuator's rules (what to do when a container
// has exited, when a VF came back under another name, when a node already existed) are
// unit-tested without root.
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "agent/host/container.hpp"
#include "agent/host/device_nodes.hpp"
#include "agent/host/device_programs.hpp"
#include "agent/host/systemd_units.hpp"
#include "core/expected.hpp"
#include "core/inventory.hpp"
#include "net/links.hpp"

namespace berth::agent {

// Links, in the agent's namespace or a container's, and which PCI device a link is.
class LinkSeam {
 public:
  virtual ~LinkSeam() = default;
  virtual Expected<std::unique_ptr<net::LinkOps>> host() = 0;
  // Links of the namespace `netns_fd`; the calling thread is back in its own before this returns.
  virtual Expected<std::unique_ptr<net::LinkOps>> in(int netns_fd) = 0;
  // The PCI address behind host link `name` (sysfs class/net/<name>/device), empty when none.
  virtual std::string pci_of(const std::string& name) = 0;
  // The names sysfs lists for PCI device `pci` (bus/pci/devices/<pci>/net/).
  virtual std::vector<std::string> links_of(const std::string& pci) = 0;
  // An InfiniBand VF's node and port GUIDs now, "<node>|<port>"; all-ones ("unset") where the
  // host does not say.
  virtual Expected<std::string> vf_guids(const std::string& vf_pci) = 0;
  // One GUID of VF `vf` on the PF at `pf_pci`: one RTM_SETLINK message, node or port.
  virtual Status set_vf_guid(const std::string& pf_pci, int vf, uint64_t guid, bool port) = 0;
  // IFLA_VF_LINK_STATE of VF `vf`: 0 auto, 1 enable, 2 disable.
  virtual Status set_vf_link_state(const std::string& pf_pci, int vf, int state) = 0;
  // Unbinds the VF at `pci` from `driver` and binds it again (mlx5 applies GUIDs only when it
  // probes a VF), then the VF as sysfs shows it once its netdev is back: the netdev, its RDMA
  // device and their nodes may have other names now. A VF bound to another driver is refused.
  virtual Expected<Vf> rebind_vf(const std::string& pci, const std::string& driver) = 0;
};

// A container's cgroups: v1 devices and cpuset (relative to their controllers' mounts), and v2
// (relative to the cgroup2 mount). Empty where the host has none.
struct CgroupPaths {
  std::string devices;
  std::string cpuset;
  std::string unified;
};

// cgroup v1 files (devices list, cpuset) and cgroup v2 (device programs, cpuset files). A v1
// `cgroup` is relative to the controller's mount; a v2 `unified` one to the cgroup2 mount. The
// controller "unified" in exists() asks about the v2 cgroup.
class CgroupSeam {
 public:
  virtual ~CgroupSeam() = default;
  virtual Expected<ProgramChange> allow_program(const std::string& unified, unsigned major,
                                                unsigned minor) = 0;
  virtual Expected<ProgramChange> deny_program(const std::string& unified, unsigned major,
                                               unsigned minor) = 0;
  // The character devices the processes in `unified` hold open, each with who holds it.
  virtual HeldDevices held_devices(const std::string& unified) = 0;
  virtual Expected<std::string> set_cpuset_v2(const std::string& unified, const std::string& cpus,
                                              const std::string& mems) = 0;
  virtual Expected<bool> allow_device(const std::string& cgroup, unsigned major,
                                      unsigned minor) = 0;
  virtual Status deny_device(const std::string& cgroup, unsigned major, unsigned minor) = 0;
  virtual Expected<std::string> set_cpuset(const std::string& cgroup, const std::string& cpus,
                                           const std::string& mems) = 0;
  // false only when it is not there; a failure to look is an error.
  virtual Expected<bool> exists(const std::string& controller, const std::string& cgroup) = 0;
  // What the device programs on v2 cgroup `unified` say of c major:minor: nullopt when it has
  // none (its runtime restricts no devices), else whether they allow it.
  virtual Expected<std::optional<bool>> device_programs_allow(const std::string& unified,
                                                              unsigned major, unsigned minor) = 0;
  // Lets go of the cgroup directories kept for the container now open (cgroup_dirs.hpp).
  virtual void forget_dirs() {}
};

// The device lists container managers keep and rebuild their device programs from. LXC
// regenerates its program from its own rule list, so berth asks LXC's monitor (`lxc-cgroup`) to
// add and take away the rule instead of standing in for LXC's program. systemd rebuilds a
// scope's program from its DeviceAllow= on daemon-reload, so berth's devices go in that list too.
class RuntimeDeviceSeam {
 public:
  virtual ~RuntimeDeviceSeam() = default;
  // devices.allow (or, `allow` false, devices.deny) "c M:m rw" for LXC container `name`.
  virtual Status lxc(const std::string& lxcpath, const std::string& name, bool allow,
                     unsigned major, unsigned minor) = 0;
  // A systemd unit's DeviceAllow= (SystemdUnits).
  virtual Expected<DeviceAllowList> device_allow(const std::string& unit) = 0;
  virtual Status set_device_allow(const std::string& unit, const DeviceAllowList& list) = 0;
};

class DeviceNodeSeam {
 public:
  virtual ~DeviceNodeSeam() = default;
  virtual Expected<NodeMade> make(int root_fd, const CharDevice& dev) = 0;
  // The host's node bind-mounted at dev.path, inside the container's namespaces `ns` (a
  // container in a user namespace of its own, whose /dev is nodev).
  virtual Expected<NodeMade> bind(int root_fd, const UserNs& ns, const CharDevice& dev) = 0;
  // Removes the node (with `ns`: unmounts the bind mount there) and up to `dirs` of its parent
  // levels while they are empty.
  virtual Status remove(int root_fd, const CharDevice& dev, int dirs, const UserNs* ns) = 0;
};

class ContainerSeam {
 public:
  virtual ~ContainerSeam() = default;
  virtual Expected<ContainerHandle> open(const Target& target) = 0;
  // Another live process of the same container, when the attached one has exited.
  virtual Expected<ContainerHandle> open_member(const Target& target) = 0;
  virtual bool alive(const ContainerHandle& h) = 0;
};

// RDMA devices by name, moved between network namespaces through RDMA netlink.
class RdmaSeam {
 public:
  virtual ~RdmaSeam() = default;
  // Moves `device` from the namespace `from_netns_fd` to `to_netns_fd` (-1 for either: the
  // agent's own); the request is sent from `from` (the kernel moves only a device in the
  // sender's namespace).
  virtual Status move(const std::string& device, int from_netns_fd, int to_netns_fd) = 0;
  // True when `device` is in the namespace `netns_fd` (-1: the agent's own).
  virtual Expected<bool> present(const std::string& device, int netns_fd) = 0;
};

struct HostSeams {
  LinkSeam& links;
  CgroupSeam& cgroups;
  DeviceNodeSeam& nodes;
  ContainerSeam& containers;
  RdmaSeam& rdma;
  RuntimeDeviceSeam& runtimes;
};

}  // namespace berth::agent
