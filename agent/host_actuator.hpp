#pragma once
#include <memory>
#include <optional>

#include "agent/actuator.hpp"
#include "agent/cgroups.hpp"
#include "agent/container.hpp"
#include "agent/unique_fd.hpp"
#include "net/links.hpp"

namespace berth::agent {

// Performs steps on the real host: device nodes, cgroup v1, links over rtnetlink.
class HostActuator : public Actuator {
 public:
  explicit HostActuator(std::string cgroup_root);
  StepOutcome run(const Step& step, const Target& target, bool rollback) override;
  void idle() override { open_.reset(); }

 private:
  // The container handle and its rtnetlink socket, kept while steps target the same process.
  struct Open {
    ContainerHandle handle;
    std::optional<net::Links> links;
  };
  Expected<Open*> open(const Target& target);
  Expected<net::Links*> container_links(Open& o);
  Expected<net::Links*> host_links();

  CgroupV1 cgroups_;
  UniqueFd host_netns_;
  std::optional<net::Links> host_links_;
  std::optional<Open> open_;
};

}  // namespace berth::agent
