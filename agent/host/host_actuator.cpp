#include "agent/host/host_actuator.hpp"

#include <fcntl.h>

#include <algorithm>
#include <cstring>

#include "core/guid.hpp"
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
// A failed step whose take-back of its partial change failed too (`take_back_errors` not
// empty): the error says so, and the rollback undoes what is left with `undo`.
StepOutcome failed_leaving(const Error& e, const std::vector<std::string>& take_back_errors,
                           std::string undo) {
  StepOutcome out = failed(e);
  if (take_back_errors.empty()) return out;
  for (const auto& t : take_back_errors) out.error += "; taking the change back failed: " + t;
  out.left_behind = true;
  out.undo = std::move(undo);
  return out;
}

StepOutcome done_with_note(std::string note) {
  StepOutcome out = done();
  out.note = std::move(note);
  return out;
}

bool own(const std::string& cgroup) {
  return !cgroup.empty() && cgroup != "/";
}

UserNs userns_of(const ContainerHandle& h) {
  return {h.userns_mntns.get(), h.userns_uid, h.userns_gid};
}

CgroupPaths paths_of(const ContainerHandle& h) {
  return {h.devices_cgroup, h.cpuset_cgroup, h.unified_cgroup};
}

// LXC on cgroup v2 builds its device program from its own rule list and attaches a new one
// whenever a rule changes, which would drop a program berth put in its place: its rules are
// changed through LXC instead.
bool lxc_decides(const CgroupPaths& cg, const Target& target) {
  return !target.lxc.empty() && !own(cg.devices) && own(cg.unified);
}

}  // namespace

StepOutcome HostActuator::allow_through_lxc(const CgroupPaths& cg, const step::AllowDevice& s,
                                            const Target& target) {
  auto allows = host_.cgroups.device_programs_allow(cg.unified, s.major, s.minor);
  if (!allows) return failed(allows.error());
  // No program: LXC restricts no devices. Allowed already: the container's own rule, which
  // detach must leave alone.
  if (!allows->has_value() || **allows) return done("already-allowed");
  if (auto st = host_.runtimes.lxc(target.lxcpath, target.lxc, true, s.major, s.minor); !st)
    return failed(st.error());
  return done("lxc");
}

// Two gates decide device access: the v1 devices list of the container's own devices cgroup (a
// root cgroup cannot be restricted, so there is no gate to open), and the cgroup v2 device
// programs on its own cgroup. Both are opened; a container with neither of its own is refused.
StepOutcome HostActuator::allow_device(const CgroupPaths& cg, const step::AllowDevice& s,
                                       const Target& target) {
  if (lxc_decides(cg, target)) return allow_through_lxc(cg, s, target);
  auto v2 = host_.cgroups.allow_program(cg.unified, s.major, s.minor);
  if (!v2) return failed(v2.error());
  const bool v1 = own(cg.devices);
  if (!v1 && !v2->present)
    return failed(make_error(
        ErrorCode::attach_failed,
        "the container has no devices cgroup of its own: neither a cgroup v1 devices cgroup "
        "nor a cgroup v2 device program; berth will not change the root cgroup"));
  bool v1_already = true;
  if (v1) {
    auto already = host_.cgroups.allow_device(cg.devices, s.major, s.minor);
    if (!already) {
      std::vector<std::string> left;
      if (v2->present && !v2->already)
        if (auto t = host_.cgroups.deny_program(cg.unified, s.major, s.minor); !t)
          left.push_back(t.error().message);
      // What is left is the program's allow alone: undone like an allow whose v1 gate was open.
      return failed_leaving(already.error(), left,
                            "v1-already" + (v2->note.empty() ? "" : "; " + v2->note));
    }
    v1_already = *already;
  }
  const bool v2_already = !v2->present || v2->already;
  if (v1_already && v2_already) return done("already-allowed");
  std::string undo;
  if (v1 && v1_already) undo = "v1-already";
  if (v2->present && v2->already) undo = "v2-already";
  // The program ids go to the ledger with the step, not to the log as a warning.
  if (!v2->note.empty()) undo += (undo.empty() ? "" : "; ") + v2->note;
  std::string note;
  auto listed = add_to_scope(cg, s, note);
  if (!listed) {
    // A failed step is not undone by the rollback: what this one changed is taken back here.
    std::vector<std::string> left;
    if (!v2_already)
      if (auto t = host_.cgroups.deny_program(cg.unified, s.major, s.minor); !t)
        left.push_back(t.error().message);
    if (v1 && !v1_already)
      if (auto t = host_.cgroups.deny_device(cg.devices, s.major, s.minor); !t)
        left.push_back(t.error().message);
    return failed_leaving(listed.error(), left, undo);
  }
  if (!listed->empty()) undo += (undo.empty() ? "" : "; ") + *listed;
  StepOutcome out = done(undo);
  out.note = note;
  return out;
}

// A systemd scope rebuilds its device program from its DeviceAllow= list (on daemon-reload and
// on any property change), which would drop berth's program: the device goes in that list too,
// as a runtime property. Returns the undo token "systemd=UNIT", or "" when there is no scope to
// tell or the list has the device already.
Expected<std::string> HostActuator::add_to_scope(const CgroupPaths& cg, const step::AllowDevice& s,
                                                 std::string& note) {
  const auto unit = scope_of(cg.unified);
  if (!unit || !own(cg.unified)) return std::string();
  auto list = host_.runtimes.device_allow(*unit);
  if (!list) {
    // systemd does not manage it: a cgroup that merely ends in ".scope".
    if (list.error().code == ErrorCode::target_not_found) return std::string();
    if (list.error().code != ErrorCode::host_unsupported) return list.error();
    note = list.error().message + "; DeviceAllow= of " + *unit + " not set";
    return std::string();
  }
  const auto entry = device_allow_entry(s.major, s.minor);
  if (std::find(list->begin(), list->end(), entry) != list->end()) return std::string();
  list->push_back(entry);
  if (auto st = host_.runtimes.set_device_allow(*unit, *list); !st) return st.error();
  return "systemd=" + *unit;
}

// The device's entry out of the scope's DeviceAllow=, the rest as it is now.
Status HostActuator::remove_from_scope(const std::string& unit, unsigned major, unsigned minor) {
  auto list = host_.runtimes.device_allow(unit);
  if (!list) {
    // The scope went with its container, or systemd with the host's bus: nothing to take out.
    const auto code = list.error().code;
    if (code == ErrorCode::target_not_found || code == ErrorCode::host_unsupported)
      return ok_status();
    return list.error();
  }
  const auto entry = device_allow_entry(major, minor);
  const auto it = std::find(list->begin(), list->end(), entry);
  if (it == list->end()) return ok_status();
  list->erase(it);
  return host_.runtimes.set_device_allow(unit, *list);
}

StepOutcome HostActuator::deny_device(const CgroupPaths& cg, const step::DenyDevice& s,
                                      const Target& target) {
  // A completed allow into such a container leaves undo "lxc" or nothing to deny: a plain deny
  // there is the inverse of an allow berthd was killed in the middle of, which may have reached
  // LXC's list.
  const bool through_lxc =
      s.via == "lxc" || (s.via.empty() && s.skip.empty() && lxc_decides(cg, target));
  if (through_lxc) {
    // The cgroup is gone with the container: so are LXC's rules.
    if (cg.unified.empty()) return done();
    if (auto st = host_.runtimes.lxc(target.lxcpath, target.lxc, false, s.major, s.minor); !st)
      return failed(st.error());
  } else if (s.skip != "v2" && !cg.unified.empty()) {
    auto v2 = host_.cgroups.deny_program(cg.unified, s.major, s.minor);
    if (!v2) return failed(v2.error());
  }
  if (s.skip != "v1" && own(cg.devices))
    if (auto st = host_.cgroups.deny_device(cg.devices, s.major, s.minor); !st)
      return failed(st.error());
  std::string unit = s.unit;
  // A plain deny is also the inverse of an allow berthd was killed in the middle of (undo ""),
  // which may have reached the scope's DeviceAllow= (its undo never recorded). An entry there is
  // berth's: one the scope had itself would have allowed the device already (undo
  // "already-allowed" or "v1-already"/"v2-already", never a plain deny), and one left behind
  // would give the device back to the container on the next daemon-reload.
  if (unit.empty() && s.skip.empty() && s.via.empty() && own(cg.unified))
    if (const auto scope = scope_of(cg.unified)) unit = *scope;
  if (!unit.empty())
    if (auto st = remove_from_scope(unit, s.major, s.minor); !st) return failed(st.error());
  // Who still holds it open is asked after the operation's reply (still_open).
  return done();
}

std::string HostActuator::still_open(const Target& target,
                                     const std::vector<std::pair<unsigned, unsigned>>& devices) {
  if (devices.empty()) return {};
  std::string cgroup = target.unified_cgroup;
  if (cgroup.empty() && target.pid > 0) {
    // A target given without its cgroups: the one its process is in now, if it still runs.
    auto h = host_.containers.open(target);
    if (h) cgroup = h->unified_cgroup;
  }
  if (cgroup.empty()) return {};
  const HeldDevices held = host_.cgroups.held_devices(cgroup);
  std::string note;
  for (const auto& device : devices) {
    const auto it = held.find(device);
    if (it == held.end()) continue;
    std::string list;
    for (const auto& h : it->second) list += (list.empty() ? "" : ", ") + h;
    note += (note.empty() ? "" : "; ") + std::string("c ") + std::to_string(device.first) + ":" +
            std::to_string(device.second) + " is still open in the container: " + list;
  }
  return note;
}

// The v1 cpuset cgroup when the container has one of its own, else its cgroup v2 cgroup.
Expected<std::string> HostActuator::set_cpuset(const CgroupPaths& cg, const step::SetCpuset& s) {
  if (own(cg.cpuset) || !own(cg.unified))
    return host_.cgroups.set_cpuset(cg.cpuset, s.cpus, s.mems);
  return host_.cgroups.set_cpuset_v2(cg.unified, s.cpus, s.mems);
}

// The VF is the link with the ifindex it got in the container, and only if it is still the same
// device (driver and bus address): a container that renamed the VF and gave its name to a link
// of its own, or moved the VF to a namespace of its own and reused the ifindex, keeps what it
// made, and the VF is reported where it is.
StepOutcome HostActuator::move_link_out(net::LinkOps& l, const step::MoveLinkOut& s) {
  auto host = host_links();
  if (!host) return failed(host.error());
  const auto back_on_host = [&]() -> Expected<bool> {
    auto there = (*host)->exists(s.host_name);
    if (!there || !*there) return there;
    const std::string pci = host_.links.pci_of(s.host_name);
    return pci.empty() || s.pci.empty() || pci == s.pci;
  };
  const auto recorded = net::LinkIdentity::parse(s.identity);
  if (!recorded) {
    // A record from before identities were kept: by name, as then.
    auto inside = l.exists(s.ifname);
    if (!inside) return failed(inside.error());
    if (!*inside) {
      auto back = back_on_host();
      if (!back) return failed(back.error());
      if (*back) return done();
    }
    return from(l.move_to(s.ifname, host_netns_.get(), s.host_name));
  }
  auto name = l.name_of(recorded->ifindex);
  if (!name) return failed(name.error());
  const std::string what = "the VF " + s.host_name + (s.pci.empty() ? "" : " (" + s.pci + ")");
  if (name->empty()) {
    auto back = back_on_host();
    if (!back) return failed(back.error());
    if (*back) return done();
    return failed(make_error(
        ErrorCode::detach_failed,
        what + " is no longer in the container's network namespace (it had ifindex " +
            std::to_string(recorded->ifindex) +
            " there): the container moved it to another namespace; it returns to the host when "
            "that namespace is destroyed, and berth restores it then"));
  }
  auto now = l.identity(*name);
  if (!now) return failed(now.error());
  if (now->ifindex != recorded->ifindex || !now->same_device(*recorded))
    return failed(make_error(ErrorCode::detach_failed,
                             "link " + std::to_string(recorded->ifindex) +
                                 " in the container is now '" + *name + "' (driver " + now->driver +
                                 ", bus '" + now->bus + "'), not " + what + " (driver " +
                                 recorded->driver + ", bus '" + recorded->bus +
                                 "'): not moved; the container moved the VF to another namespace"));
  if (auto st = l.move_index(recorded->ifindex, host_netns_.get(), s.host_name); !st)
    return failed(st.error());
  // The index could have changed hands between the check and the move: check on the host too.
  auto arrived = (*host)->identity(s.host_name);
  if (arrived && !arrived->same_device(*recorded)) {
    (void)(*host)->move_to(s.host_name, open_->handle.netns.get(), *name);
    return failed(make_error(ErrorCode::detach_failed, "the link moved out of the container as " +
                                                           s.host_name + " is not " + what +
                                                           ": sent back; the VF is still inside"));
  }
  StepOutcome out = done();
  if (*name != s.ifname)
    out.note = what + " was named '" + *name + "' in the container (not " + s.ifname + ")";
  return out;
}

// The child is found by the ifindex it got at creation, never by its name: a container that
// renamed it and made another link under its name keeps that one, and the child (which would
// keep the partition on a VF that goes to the next berth) is deleted all the same.
StepOutcome HostActuator::delete_pkey_link(net::LinkOps& l, const step::DelPkeyLink& s) {
  const auto recorded = net::LinkIdentity::parse(s.identity);
  if (!recorded) {
    // Cut off before its identity was recorded: the child under its planned name, if it is one
    // of this VF's (same device bus as its parent).
    auto there = l.exists(s.name);
    if (!there) return failed(there.error());
    if (!*there) return done();
    auto child = l.identity(s.name);
    auto parent = l.identity(s.parent);
    if (!child) return failed(child.error());
    if (!parent || child->bus != parent->bus)
      return done_with_note("a link named " + s.name + " is not an IPoIB child of " + s.parent +
                            ": left alone");
    return from(l.delete_index(child->ifindex));
  }
  auto name = l.name_of(recorded->ifindex);
  if (!name) return failed(name.error());
  if (name->empty()) return done();  // deleted already
  auto now = l.identity(*name);
  if (!now) return failed(now.error());
  if (!now->same_device(*recorded)) return done();  // its ifindex went to another link
  StepOutcome out = from(l.delete_index(recorded->ifindex));
  if (out.ok && *name != s.name)
    out.note = "IPoIB child " + s.name + " was named '" + *name + "' in the container";
  return out;
}

// Node GUID, then port GUID, as two messages (the kernel applies only the node GUID of a message
// that carries both). A port GUID that fails puts the node GUID back.
StepOutcome HostActuator::set_vf_guid(const step::SetVfGuid& s) {
  auto previous = host_.links.vf_guids(s.vf_pci);
  if (!previous) return failed(previous.error());
  const auto bar = previous->find('|');
  auto node = parse_guid(s.node_guid);
  auto port = parse_guid(s.port_guid);
  auto old_node = bar == std::string::npos ? std::nullopt : parse_guid(previous->substr(0, bar));
  if (!node || !port || !old_node)
    return failed(make_error(ErrorCode::internal, "a VF GUID is not of the form xx:xx:..:xx (" +
                                                      s.node_guid + ", " + s.port_guid + ", " +
                                                      *previous + ")"));
  if (auto st = host_.links.set_vf_guid(s.pf_pci, s.vf_index, *node, false); !st)
    return failed(st.error());
  // What could not be put back is left to the rollback, which restores `previous` as the undo
  // of a step that succeeded would.
  std::vector<std::string> left;
  auto keep = [&](const auto& result) {
    if (!result) left.push_back(result.error().message);
  };
  if (auto st = host_.links.set_vf_guid(s.pf_pci, s.vf_index, *port, true); !st) {
    keep(host_.links.set_vf_guid(s.pf_pci, s.vf_index, *old_node, false));
    return failed_leaving(st.error(), left, *previous);
  }
  auto put_back = [&] {
    const auto old_port = parse_guid(previous->substr(bar + 1));
    if (old_port) keep(host_.links.set_vf_guid(s.pf_pci, s.vf_index, *old_port, true));
    keep(host_.links.set_vf_guid(s.pf_pci, s.vf_index, *old_node, false));
  };
  if (auto st = host_.links.set_vf_link_state(s.pf_pci, s.vf_index, s.link_state); !st) {
    put_back();
    return failed_leaving(st.error(), left, *previous);
  }
  if (s.rebind.empty()) return done(*previous);
  auto now = host_.links.rebind_vf(s.vf_pci, s.rebind);
  if (!now) {
    // The GUIDs it had, and a probe that takes them, so the VF is left as it was found.
    put_back();
    keep(host_.links.set_vf_link_state(s.pf_pci, s.vf_index, 0));
    keep(host_.links.rebind_vf(s.vf_pci, s.rebind));
    return failed_leaving(now.error(), left, *previous);
  }
  StepOutcome out = done(*previous);
  out.vf = std::move(*now);
  return out;
}

HostActuator::HostActuator(const HostPaths& paths)
    : real_(std::make_unique<RealHost>(paths)),
      host_(real_->seams()),
      host_netns_(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC)) {}

HostActuator::HostActuator(HostSeams seams)
    : host_(seams), host_netns_(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC)) {}

Expected<HostActuator::Open*> HostActuator::open(const Target& target, bool rollback) {
  if (open_ && host_.containers.alive(open_->handle) &&
      ((open_->handle.target.pid == target.pid &&
        (target.start_time == 0 || open_->handle.target.start_time == target.start_time)) ||
       (rollback && target.pid > 0 && open_->stands_in_for == target.pid)))
    return &*open_;
  open_.reset();
  host_.cgroups.forget_dirs();
  auto h = host_.containers.open(target);
  if (!h && rollback && target.pid > 0 && h.error().code == ErrorCode::target_not_found) {
    // The attached process exited (a `runc exec` process, a job step) but its container may
    // live on: what berth put inside is still there, and is undone through another of its
    // processes, found by the namespaces recorded at attach.
    auto member = host_.containers.open_member(target);
    if (member) {
      open_.emplace(Open{std::move(*member), nullptr, target.pid});
      return &*open_;
    }
  }
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
  auto present = [&](const std::string& name) {
    auto there = (*host)->exists(name);
    return there && *there;  // a failed lookup finds nothing; the caller then reports the VF
  };
  if (!hint.empty() && present(hint) && host_.links.pci_of(hint) == pci) return hint;
  for (const auto& name : host_.links.links_of(pci))
    if (present(name)) return name;
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
    auto taken = l.exists(host_name);
    if (!taken) return taken.error();
    if (*taken)
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
  auto there = (*host)->exists(s.host_name);
  if (!there) return failed(there.error());
  if (*there) {
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
  auto o = open(target, rollback);
  if (!o) {
    // Undoing inside a container that has exited: its /dev, cgroup and namespace went with it.
    // Its links did not all go: a physical VF comes back to the host when the namespace dies.
    // A leftover retried after its berth let go of the container (no pid) is in the same case.
    if (rollback && (o.error().code == ErrorCode::target_not_found || target.pid <= 0)) {
      if (const auto* out = std::get_if<step::MoveLinkOut>(&step)) return recover_link(*out);
      // GUIDs live on the PF, on the host: put back whether the container is there or not.
      if (const auto* guid = std::get_if<step::SetVfGuid>(&step)) return set_vf_guid(*guid);
      // The kernel moves a namespace's RDMA devices back to the host's when it dies.
      if (const auto* rdma = std::get_if<step::MoveRdmaOut>(&step)) {
        StepOutcome out = done();
        auto back = host_.rdma.present(rdma->device, -1);
        if (!back || !*back)
          out.note = "RDMA device " + rdma->device +
                     " is not back on the host yet: the kernel returns it when the container's "
                     "network namespace is destroyed";
        return out;
      }
      // Its cgroups outlive it until the runtime deletes them: take back what berth wrote there.
      // A cgroup berth cannot look at is not taken for gone: the undo fails and is retried.
      const auto has_devices = host_.cgroups.exists("devices", target.devices_cgroup);
      const auto has_cpuset = host_.cgroups.exists("cpuset", target.cpuset_cgroup);
      const auto has_unified = host_.cgroups.exists("unified", target.unified_cgroup);
      for (const auto* e : {&has_devices, &has_cpuset, &has_unified})
        if (!*e) return failed(e->error());
      const CgroupPaths left{*has_devices ? target.devices_cgroup : "",
                             *has_cpuset ? target.cpuset_cgroup : "",
                             *has_unified ? target.unified_cgroup : ""};
      if (const auto* deny = std::get_if<step::DenyDevice>(&step)) {
        // LXC's rules live in its monitor, which went with the container.
        if (deny->via == "lxc") return done();
        return deny_device(left, *deny, target);
      }
      // The cpuset went to the cgroup attach chose (v1 when it had one of its own): back there,
      // if that cgroup is still there.
      const bool v1_cpuset = own(target.cpuset_cgroup) || !own(target.unified_cgroup);
      if (const auto* cpuset = std::get_if<step::SetCpuset>(&step);
          cpuset && !(v1_cpuset ? left.cpuset : left.unified).empty()) {
        auto previous = set_cpuset(left, *cpuset);
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
            const UserNs ns = userns_of(c.handle);
            auto made = ns.mntns_fd >= 0 ? host_.nodes.bind(c.handle.root.get(), ns, s.dev)
                                         : host_.nodes.make(c.handle.root.get(), s.dev);
            if (!made) return failed(made.error());
            if (made->existed) return done("existed");
            std::string undo = made->bound ? "bind" : "";
            if (made->dirs)
              undo += (undo.empty() ? "" : " ") + std::string("dirs=") + std::to_string(made->dirs);
            return done(undo);
          },
          [&](const step::RemoveNode& s) {
            // In a user-namespaced container berth's nodes are always bind mounts, also when
            // the undo that says so was never recorded (berthd killed during the step); the
            // removal there takes a plain node away as well.
            const UserNs ns = userns_of(c.handle);
            return from(host_.nodes.remove(c.handle.root.get(), s.dev, s.dirs,
                                           ns.mntns_fd >= 0 ? &ns : nullptr));
          },
          [&](const step::AllowDevice& s) { return allow_device(paths_of(c.handle), s, target); },
          [&](const step::DenyDevice& s) { return deny_device(paths_of(c.handle), s, target); },
          [&](const step::SetCpuset& s) {
            auto previous = set_cpuset(paths_of(c.handle), s);
            return previous ? done(*previous) : failed(previous.error());
          },
          [&](const step::MoveLinkIn& s) {
            auto host = host_links();
            if (!host) return failed(host.error());
            if (auto st = (*host)->move_to(s.host_name, c.handle.netns.get(), s.ifname); !st)
              return failed(st.error());
            // What the link is once inside: detach finds it by this, not by its name.
            return in_container([&](net::LinkOps& l) {
              auto id = l.identity(s.ifname);
              if (id) return done(id->to_string());
              // A failed step is not undone by the rollback: the move is taken back here.
              auto back = l.move_to(s.ifname, host_netns_.get(), s.host_name);
              if (back) return failed(id.error());
              // Still inside and not identified: an undo by name finds it (the cut-off case).
              return failed_leaving(id.error(), {back.error().message}, "");
            });
          },
          [&](const step::MoveLinkOut& s) {
            return in_container([&](net::LinkOps& l) { return move_link_out(l, s); });
          },
          [&](const step::SetVfGuid& s) { return set_vf_guid(s); },
          [&](const step::MoveRdmaIn& s) {
            auto there = host_.rdma.present(s.device, c.handle.netns.get());
            if (there && *there) return done();
            return from(host_.rdma.move(s.device, -1, c.handle.netns.get()));
          },
          [&](const step::MoveRdmaOut& s) {
            auto back = host_.rdma.present(s.device, -1);
            if (back && *back) return done();
            return from(host_.rdma.move(s.device, c.handle.netns.get(), -1));
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
            // An address does not outlive its link (an IPoIB child the container deleted).
            return in_container([&](net::LinkOps& l) {
              auto there = l.exists(s.ifname);
              if (!there) return failed(there.error());
              return *there ? from(l.del_address(s.ifname, s.cidr)) : done();
            });
          },
          [&](const step::AddRoute& s) {
            return in_container(
                [&](net::LinkOps& l) { return from(l.add_route(s.ifname, s.dst, s.via)); });
          },
          [&](const step::DelRoute& s) {
            return in_container([&](net::LinkOps& l) {
              auto there = l.exists(s.ifname);
              if (!there) return failed(there.error());
              return *there ? from(l.del_route(s.ifname, s.dst, s.via)) : done();
            });
          },
          [&](const step::LinkUp& s) {
            return in_container([&](net::LinkOps& l) { return from(l.set_up(s.ifname, true)); });
          },
          [&](const step::LinkDown& s) {
            return in_container([&](net::LinkOps& l) {
              auto there = l.exists(s.ifname);
              if (!there) return failed(there.error());
              if (!*there) return done();
              return from(l.set_up(s.ifname, false));
            });
          },
          [&](const step::AddPkeyLink& s) {
            return in_container([&](net::LinkOps& l) {
              if (auto st = l.add_pkey_child(s.parent, s.name, s.pkey); !st)
                return failed(st.error());
              auto id = l.identity(s.name);
              if (id) return done(id->to_string());
              return failed(id.error());
            });
          },
          [&](const step::DelPkeyLink& s) {
            return in_container([&](net::LinkOps& l) { return delete_pkey_link(l, s); });
          },
      },
      step);
}

}  // namespace berth::agent
