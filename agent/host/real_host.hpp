#pragma once
// The real adapters behind the host actuator's seams: rtnetlink (libnl) and sysfs for links,
// cgroup v1 files for cgroups, mknodat beneath a container's root for device nodes, pidfds and
// /proc for containers.
#include "agent/host/cgroups.hpp"
#include "agent/host/seams.hpp"
#include "agent/host/unique_fd.hpp"

namespace berth::agent {

class RealLinkSeam : public LinkSeam {
 public:
  explicit RealLinkSeam(std::string sysfs_root, std::string dev_root = "/dev");
  Expected<std::unique_ptr<net::LinkOps>> host() override;
  Expected<std::unique_ptr<net::LinkOps>> in(int netns_fd) override;
  std::string pci_of(const std::string& name) override;
  std::vector<std::string> links_of(const std::string& pci) override;
  Expected<std::string> vf_guids(const std::string& vf_pci) override;
  Status set_vf_guid(const std::string& pf_pci, int vf, uint64_t guid, bool port) override;
  Status set_vf_link_state(const std::string& pf_pci, int vf, int state) override;
  Expected<Vf> rebind_vf(const std::string& pci, const std::string& driver) override;

 private:
  Expected<std::pair<std::string, int>> pf_link(const std::string& pf_pci);
  std::string sysfs_root_;
  std::string dev_root_;
  UniqueFd home_netns_;
};

class RealCgroupSeam : public CgroupSeam {
 public:
  explicit RealCgroupSeam(const std::string& root, std::string bpf_pin_dir = {})
      : v1_(root, &dirs_),
        unified_mount_(find_unified_mount(root)),
        v2_(unified_mount_, &dirs_),
        programs_(unified_mount_, std::move(bpf_pin_dir), &dirs_) {}
  void forget_dirs() override { dirs_.forget(); }
  Expected<ProgramChange> allow_program(const std::string& unified, unsigned major,
                                        unsigned minor) override {
    if (unified_mount_.empty()) return ProgramChange{};
    return programs_.allow(unified, major, minor);
  }
  Expected<ProgramChange> deny_program(const std::string& unified, unsigned major,
                                       unsigned minor) override {
    if (unified_mount_.empty()) return ProgramChange{};
    return programs_.deny(unified, major, minor);
  }
  HeldDevices held_devices(const std::string& unified) override {
    if (unified_mount_.empty()) return {};
    return programs_.held_devices(unified);
  }
  Expected<std::string> set_cpuset_v2(const std::string& unified, const std::string& cpus,
                                      const std::string& mems) override {
    if (unified_mount_.empty())
      return make_error(ErrorCode::internal, "this host has no cgroup v2 mount");
    return v2_.set_cpuset(".", unified, cpus, mems);
  }
  Expected<bool> allow_device(const std::string& cgroup, unsigned major, unsigned minor) override {
    return v1_.allow_device(cgroup, major, minor);
  }
  Status deny_device(const std::string& cgroup, unsigned major, unsigned minor) override {
    return v1_.deny_device(cgroup, major, minor);
  }
  Expected<std::string> set_cpuset(const std::string& cgroup, const std::string& cpus,
                                   const std::string& mems) override {
    return v1_.set_cpuset(cgroup, cpus, mems);
  }
  Expected<bool> exists(const std::string& controller, const std::string& cgroup) override {
    if (controller == "unified") return programs_.exists(cgroup);
    return v1_.exists(controller, cgroup);
  }
  Expected<std::optional<bool>> device_programs_allow(const std::string& unified, unsigned major,
                                                      unsigned minor) override {
    if (unified_mount_.empty()) return std::optional<bool>{};
    return programs_.allows(unified, major, minor);
  }

 private:
  CgroupDirs dirs_;  // shared by the three below; declared first, made first
  CgroupV1 v1_;
  std::string unified_mount_;
  CgroupV1 v2_;  // the same files, under the cgroup2 mount
  DevicePrograms programs_;
};

class RealDeviceNodeSeam : public DeviceNodeSeam {
 public:
  // `dev_root`: where the host's nodes are (config dev_root; a fixture's links in tests).
  explicit RealDeviceNodeSeam(std::string dev_root) : dev_root_(std::move(dev_root)) {}
  Expected<NodeMade> make(int root_fd, const CharDevice& dev) override;
  Expected<NodeMade> bind(int root_fd, const UserNs& ns, const CharDevice& dev) override;
  Status remove(int root_fd, const CharDevice& dev, int dirs, const UserNs* ns) override;

 private:
  std::string dev_root_;
};

class RealContainerSeam : public ContainerSeam {
 public:
  explicit RealContainerSeam(std::string cgroup_root) : cgroup_root_(std::move(cgroup_root)) {}
  Expected<ContainerHandle> open(const Target& target) override { return open_container(target); }
  Expected<ContainerHandle> open_member(const Target& target) override {
    return open_container_member(target, cgroup_root_);
  }
  bool alive(const ContainerHandle& h) override { return h.alive(); }

 private:
  std::string cgroup_root_;
};

class RealRdmaSeam : public RdmaSeam {
 public:
  Status move(const std::string& device, int from_netns_fd, int to_netns_fd) override;
  Expected<bool> present(const std::string& device, int netns_fd) override;
};

// Where the real host's interfaces are, and the commands berth runs on it.
struct HostPaths {
  std::string cgroup_root = "/sys/fs/cgroup";
  std::string sysfs_root = "/sys";
  std::string dev_root = "/dev";
  // A bpffs directory: the runtime programs berth stands in for are pinned there (empty: none).
  std::string bpf_pin_dir = {};
  std::string lxc_cgroup = "lxc-cgroup";  // changes an LXC container's device rules (v2)
};

// LXC's rules changed through `lxc-cgroup` (argv[0] `lxc_cgroup`), run from the worker thread.
class RealRuntimeDeviceSeam : public RuntimeDeviceSeam {
 public:
  explicit RealRuntimeDeviceSeam(std::string lxc_cgroup) : lxc_cgroup_(std::move(lxc_cgroup)) {}
  Status lxc(const std::string& lxcpath, const std::string& name, bool allow, unsigned major,
             unsigned minor) override;
  Expected<DeviceAllowList> device_allow(const std::string& unit) override {
    return systemd_.device_allow(unit);
  }
  Status set_device_allow(const std::string& unit, const DeviceAllowList& list) override {
    return systemd_.set_device_allow(unit, list);
  }

 private:
  std::string lxc_cgroup_;
  SystemdUnits systemd_;
};

// All of them, for berthd.
struct RealHost {
  explicit RealHost(const HostPaths& p)
      : links(p.sysfs_root, p.dev_root),
        cgroups(p.cgroup_root, p.bpf_pin_dir),
        nodes(p.dev_root),
        containers(p.cgroup_root),
        runtimes(p.lxc_cgroup) {}
  RealLinkSeam links;
  RealCgroupSeam cgroups;
  RealDeviceNodeSeam nodes;
  RealContainerSeam containers;
  RealRdmaSeam rdma;
  RealRuntimeDeviceSeam runtimes;
  HostSeams seams() { return {links, cgroups, nodes, containers, rdma, runtimes}; }
};

}  // namespace berth::agent
