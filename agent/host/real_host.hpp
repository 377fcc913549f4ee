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
  explicit RealLinkSeam(std::string sysfs_root);
  Expected<std::unique_ptr<net::LinkOps>> host() override;
  Expected<std::unique_ptr<net::LinkOps>> in(int netns_fd) override;
  std::string pci_of(const std::string& name) override;
  std::vector<std::string> links_of(const std::string& pci) override;

 private:
  std::string sysfs_root_;
  UniqueFd home_netns_;
};

class RealCgroupSeam : public CgroupSeam {
 public:
  explicit RealCgroupSeam(std::string root) : v1_(std::move(root)) {}
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
  bool exists(const std::string& controller, const std::string& cgroup) override {
    return v1_.exists(controller, cgroup);
  }

 private:
  CgroupV1 v1_;
};

class RealDeviceNodeSeam : public DeviceNodeSeam {
 public:
  Expected<bool> make(int root_fd, const CharDevice& dev) override;
  Status remove(int root_fd, const CharDevice& dev) override;
};

class RealContainerSeam : public ContainerSeam {
 public:
  Expected<ContainerHandle> open(const Target& target) override { return open_container(target); }
  bool alive(const ContainerHandle& h) override { return h.alive(); }
};

// All four, for berthd.
struct RealHost {
  RealHost(std::string cgroup_root, std::string sysfs_root)
      : links(std::move(sysfs_root)), cgroups(std::move(cgroup_root)) {}
  RealLinkSeam links;
  RealCgroupSeam cgroups;
  RealDeviceNodeSeam nodes;
  RealContainerSeam containers;
  HostSeams seams() { return {links, cgroups, nodes, containers}; }
};

}  // namespace berth::agent
