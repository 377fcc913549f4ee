#include "agent/host/host_actuator.hpp"

#include <fcntl.h>

#include <cstring>

#include "core/overloaded.hpp"

namespace berth::agent {
namespace {

StepOutcome done(std::string undo = {}) {
  return {true, std::move(undo), {}, {}};
}
StepOutcome failed(const Error& e) {
  return {false, {}, e.message, {}};
}
StepOutcome from(const Status& s) {
  return s ? done() : failed(s.error());
}

}  // namespace

HostActuator::HostActuator(std::string cgroup_root, std::string sysfs_root)
    : real_(std::make_unique<RealHost>(std::move(cgroup_root), std::move(sysfs_root))),
      host_(real_->seams()),
      host_netns_(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC)) {}

HostActuator::HostActuator(HostSeams seams)
    : host_(seams), host_netns_(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC)) {}

Expected<HostActuator::Open*> HostActuator::open(const Target& target) {
  if (open_ && open_->handle.target.pid == target.pid &&
      (target.start_time == 0 || open_->handle.target.start_time == target.start_time) &&
      host_.containers.alive(open_->handle))
    return &*open_;
  open_.reset();
  auto h = host_.containers.open(target);
  if (!h) return h.error();
  open_.emplace(Open{std::move(*h), nullptr});
  return &*open_;
}

Expected<net::LinkOps*> HostActuator::container_links(Open& o) {
  if (!o.links) {
    auto l = host_.links.in(o.handle.netns.get());
    if (!l) return l.error();
    o.links = std::move(*l);
  }
  return o.links.get();
}

Expected<net::LinkOps*> HostActuator::host_links() {
  if (!host_links_) {
    auto l = host_.links.host();
    if (!l) return l.error();
    host_links_ = std::move(*l);
  }
  return host_links_.get();
}

std::optional<std::string> HostActuator::host_link_of(const std::string& pci,
                                                      const std::string& hint) {
  auto host = host_links();
  if (!host) return std::nullopt;
  if (!hint.empty() && (*host)->exists(hint) && host_.links.pci_of(hint) == pci) return hint;
  for (const auto& name : host_.links.links_of(pci))
    if ((*host)->exists(name)) return name;
  return std::nullopt;
}

Expected<std::string> HostActuator::restore_vf_link(const std::string& current,
                                                    const std::string& host_name) {
  auto host = host_links();
  if (!host) return host.error();
  net::LinkOps& l = **host;
  if (auto s = l.set_up(current, false); !s) return s.error();
  if (auto s = l.flush_addresses(current); !s) return s.error();
  if (current != host_name) {
    if (l.exists(host_name))
      return make_error(ErrorCode::conflict, "cannot rename " + current + " back to " + host_name +
                                                 ": another link has that name");
    if (auto s = l.rename(current, host_name); !s) return s.error();
  }
  return "back on the host as " + current + "; restored as " + host_name +
         " (down, addresses flushed)";
}

StepOutcome HostActuator::recover_link(const step::MoveLinkOut& s) {
  auto host = host_links();
  if (!host) return failed(host.error());
  // Already back under its own name (and not another device that took the name meanwhile).
  if ((*host)->exists(s.host_name)) {
    const std::string pci = host_.links.pci_of(s.host_name);
    if (pci.empty() || s.pci.empty() || pci == s.pci) return done();
  }
  if (!s.pci.empty())
    if (auto current = host_link_of(s.pci, s.ifname)) {
      auto note = restore_vf_link(*current, s.host_name);
      if (!note) return failed(note.error());
      StepOutcome out = done();
      out.note = "link " + *note;
      return out;
    }
  StepOutcome out = done();
  out.note = "link " + s.host_name + " (" + s.ifname +
             " in the container) is not on the host: destroyed with the container's network "
             "namespace (a veth stand-in), or a VF still on its way back, restored when it appears";
  return out;
}

StepOutcome HostActuator::run(const Step& step, const Target& target, bool rollback) {
  auto o = open(target);
  if (!o) {
    // Undoing inside a container that has exited: its /dev, cgroup and namespace went with it.
    // Its links did not all go: a physical VF comes back to the host when the namespace dies.
    // A leftover retried after its berth let go of the container (no pid) is in the same case.
    if (rollback && (o.error().code == ErrorCode::target_not_found || target.pid <= 0)) {
      if (const auto* out = std::get_if<step::MoveLinkOut>(&step)) return recover_link(*out);
      // Its cgroup outlives it until the runtime deletes it: take back the rules written there.
      if (const auto* deny = std::get_if<step::DenyDevice>(&step);
          deny && !target.devices_cgroup.empty() &&
          host_.cgroups.exists("devices", target.devices_cgroup))
        return from(host_.cgroups.deny_device(target.devices_cgroup, deny->major, deny->minor));
      if (const auto* cpuset = std::get_if<step::SetCpuset>(&step);
          cpuset && !target.cpuset_cgroup.empty() &&
          host_.cgroups.exists("cpuset", target.cpuset_cgroup)) {
        auto previous = host_.cgroups.set_cpuset(target.cpuset_cgroup, cpuset->cpus, cpuset->mems);
        return previous ? done() : failed(previous.error());
      }
      return done();
    }
    return failed(o.error());
  }
  Open& c = **o;
  auto in_container = [&](auto&& fn) -> StepOutcome {
    auto links = container_links(c);
    if (!links) return failed(links.error());
    return fn(**links);
  };
  return std::visit(
      overloaded{
          [&](const step::MakeNode& s) {
            auto existed = host_.nodes.make(c.handle.root.get(), s.dev);
            return existed ? done(*existed ? "existed" : "") : failed(existed.error());
          },
          [&](const step::RemoveNode& s) {
            return from(host_.nodes.remove(c.handle.root.get(), s.dev));
          },
          [&](const step::AllowDevice& s) {
            auto already = host_.cgroups.allow_device(c.handle.devices_cgroup, s.major, s.minor);
            return already ? done(*already ? "already-allowed" : "") : failed(already.error());
          },
          [&](const step::DenyDevice& s) {
            return from(host_.cgroups.deny_device(c.handle.devices_cgroup, s.major, s.minor));
          },
          [&](const step::SetCpuset& s) {
            auto previous = host_.cgroups.set_cpuset(c.handle.cpuset_cgroup, s.cpus, s.mems);
            return previous ? done(*previous) : failed(previous.error());
          },
          [&](const step::MoveLinkIn& s) {
            auto host = host_links();
            if (!host) return failed(host.error());
            return from((*host)->move_to(s.host_name, c.handle.netns.get(), s.ifname));
          },
          [&](const step::MoveLinkOut& s) {
            return in_container([&](net::LinkOps& l) {
              if (!l.exists(s.ifname)) {
                auto host = host_links();
                if (host && (*host)->exists(s.host_name)) return done();  // already back
              }
              return from(l.move_to(s.ifname, host_netns_.get(), s.host_name));
            });
          },
          [&](const step::SetMtu& s) {
            return in_container([&](net::LinkOps& l) {
              auto previous = l.mtu(s.ifname);
              if (!previous) return failed(previous.error());
              auto st = l.set_mtu(s.ifname, s.mtu);
              return st ? done(std::to_string(*previous)) : failed(st.error());
            });
          },
          [&](const step::AddAddress& s) {
            return in_container(
                [&](net::LinkOps& l) { return from(l.add_address(s.ifname, s.cidr)); });
          },
          [&](const step::DelAddress& s) {
            return in_container(
                [&](net::LinkOps& l) { return from(l.del_address(s.ifname, s.cidr)); });
          },
          [&](const step::AddRoute& s) {
            return in_container(
                [&](net::LinkOps& l) { return from(l.add_route(s.ifname, s.dst, s.via)); });
          },
          [&](const step::DelRoute& s) {
            return in_container(
                [&](net::LinkOps& l) { return from(l.del_route(s.ifname, s.dst, s.via)); });
          },
          [&](const step::LinkUp& s) {
            return in_container([&](net::LinkOps& l) { return from(l.set_up(s.ifname, true)); });
          },
          [&](const step::LinkDown& s) {
            return in_container([&](net::LinkOps& l) {
              if (!l.exists(s.ifname)) return done();
              return from(l.set_up(s.ifname, false));
            });
          },
      },
      step);
}

}  // namespace berth::agent
