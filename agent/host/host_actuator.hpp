#pragma once
#include <memory>
#include <optional>

#include "agent/app/actuator.hpp"
#include "agent/host/container.hpp"
#include "agent/host/real_host.hpp"
#include "agent/host/seams.hpp"
#include "agent/host/unique_fd.hpp"
#include "net/links.hpp"

namespace berth::agent {

// Performs steps on the host through its seams: device nodes, cgroups, links, containers.
class HostActuator : public Actuator {
 public:
  // The real host; with a bpffs `bpf_pin_dir` the runtime programs berth stands in for are
  // pinned there (prepare_pin_dir).
  explicit HostActuator(const HostPaths& paths);
  // Any host, e.g. fakes in unit tests.
  explicit HostActuator(HostSeams seams);
  StepOutcome run(const Step& step, const Target& target, bool rollback) override;
  // A VF's netdev found on the host under another name (its in-container name after its
  // namespace died, or devN when that was taken): renamed back to `host_name`, set down, its
  // addresses flushed. Returns a note on what was done, or the error.
  Expected<std::string> restore_vf_link(const std::string& current, const std::string& host_name);
  // The host link that is the netdev of PCI device `pci`, by sysfs, if any.
  std::optional<std::string> host_link_of(const std::string& pci, const std::string& hint);
  void idle() override {
    open_.reset();
    host_.cgroups.forget_dirs();
  }
  // One pass over the descriptors of every process in the container's cgroup v2 subtree.
  std::string still_open(const Target& target,
                         const std::vector<std::pair<unsigned, unsigned>>& devices) override;

 private:
  // The container handle and its rtnetlink socket, kept while steps target the same process.
  struct Open {
    ContainerHandle handle;
    std::unique_ptr<net::LinkOps> links;
    int stands_in_for = 0;  // the attached pid, when this is another process of its container
  };
  Expected<Open*> open(const Target& target, bool rollback);
  Expected<net::LinkOps*> container_links(Open& o);
  Expected<net::LinkOps*> host_links();

  // Undoing a move out of a container that has exited.
  StepOutcome recover_link(const step::MoveLinkOut& s);
  StepOutcome set_vf_guid(const step::SetVfGuid& s);
  StepOutcome delete_pkey_link(net::LinkOps& l, const step::DelPkeyLink& s);
  StepOutcome move_link_out(net::LinkOps& in_container, const step::MoveLinkOut& s);
  StepOutcome allow_device(const CgroupPaths& cg, const step::AllowDevice& s, const Target& target);
  StepOutcome allow_through_lxc(const CgroupPaths& cg, const step::AllowDevice& s,
                                const Target& target);
  StepOutcome deny_device(const CgroupPaths& cg, const step::DenyDevice& s, const Target& target);
  Expected<std::string> add_to_scope(const CgroupPaths& cg, const step::AllowDevice& s,
                                     std::string& note);
  Status remove_from_scope(const std::string& unit, unsigned major, unsigned minor);
  Expected<std::string> set_cpuset(const CgroupPaths& cg, const step::SetCpuset& s);

  std::unique_ptr<RealHost> real_;  // owned when the actuator was made for the real host
  HostSeams host_;
  UniqueFd host_netns_;
  std::unique_ptr<net::LinkOps> host_links_;
  std::optional<Open> open_;
};

}  // namespace berth::agent
