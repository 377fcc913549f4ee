#include "agent/app/machine_watch.hpp"

#include <fcntl.h>
#include <sched.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <set>

#include <spdlog/spdlog.h>
#include <boost/asio/post.hpp>

#include "agent/host/container.hpp"
#include "agent/host/discovery.hpp"

namespace berth::agent {
namespace {

nlohmann::json link_json(const net::LinkState& l) {
  return {{"ifindex", l.ifindex},
          {"name", l.name},
          {"up", l.up},
          {"mtu", l.mtu},
          {"addresses", l.addresses}};
}

// The holder of VF `pci` that expects its netdev inside a container, if any.
const Berth* attached_holder(const Ledger& ledger, const std::string& pci) {
  for (const auto& [owner, b] : ledger.berths)
    if ((b.state == BerthState::attached || b.state == BerthState::degraded) &&
        b.op == Operation::none)
      for (const auto& v : b.placement.vfs)
        if (v == pci) return &b;
  return nullptr;
}

bool busy_holder(const Ledger& ledger, const std::string& pci) {
  for (const auto& [owner, b] : ledger.berths)
    if (b.op != Operation::none)
      for (const auto& v : b.placement.vfs)
        if (v == pci) return true;
  return false;
}

}  // namespace

MachineWatch::MachineWatch(boost::asio::io_context& io, Worker& worker, const Config& config,
                           Engine& engine, HostActuator& actuator, EventBus& bus)
    : io_(io),
      worker_(worker),
      config_(config),
      engine_(engine),
      actuator_(actuator),
      bus_(bus),
      links_(
          io, config.netlink_rcvbuf,
          [this](const std::vector<net::LinkChange>& c) { on_link_changes(c); },
          [this] { resync("netlink receive buffer overrun (ENOBUFS)"); }),
      udev_(
          io,
          [this](const net::Uevent& e) {
            bus_.publish("udev", {{"action", e.action},
                                  {"subsystem", e.subsystem},
                                  {"devpath", e.devpath},
                                  {"sysname", e.sysname}});
            // Each move of a VF between namespaces is a remove and an add: reading all of sysfs
            // again for them put a whole rescan on the worker, ahead of an operation's next
            // steps, at every attach and detach (and at every other tool's link move).
            if (!uevent_may_change_inventory(engine_.context().inventory, e.action, e.subsystem,
                                             e.sysname, netdev_of_a_host_device(e.sysname))) {
              spdlog::debug("BERTH_UDEV_NO_RESCAN {} {} {}", e.action, e.subsystem, e.sysname);
              return;
            }
            rescan("udev " + e.action + " " + e.subsystem + " " + e.sysname);
          },
          [this] { rescan("udev receive buffer overrun"); }),
      resync_timer_(io),
      rescan_delay_(io),
      host_netns_(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC)) {}

bool MachineWatch::netdev_of_a_host_device(const std::string& name) {
  // The kernel's name of a netdev (never '/', '.' or '..'). The kernel's own class/net, not
  // sysfs_root's: it shows the netdevs of the namespace it was mounted in, the host's, and
  // whether a device stands behind one; a fixture tree stands in for devices, not for that.
  if (name.empty() || name.find('/') != std::string::npos || name == "." || name == "..")
    return true;  // no name to look up: cannot tell, so read it all
  struct stat st {};
  return ::stat(("/sys/class/net/" + name + "/device").c_str(), &st) == 0;
}

MachineWatch::~MachineWatch() {
  containers_.clear();
  if (host_netns_ >= 0) ::close(host_netns_);
}

Status MachineWatch::start() {
  if (auto s = links_.start(); !s) return s;
  // The view starts from a dump taken after the subscription, so nothing falls in between.
  auto first = net::dump_links();
  if (!first) return first.error();
  links_.replace(std::move(*first));
  arm_resync_timer();
  // Berths re-adopted at start are watched from here on.
  for (const auto& [owner, b] : engine_.ledger().berths)
    if (b.state == BerthState::attached && b.target && !b.vfs.empty())
      watch_container(owner, *b.target);
  if (config_.udev_source != "off") {
    if (auto s = udev_.start(config_.udev_source, config_.udev_subsystems, 4 << 20, true); !s)
      spdlog::warn("BERTH_UDEV_UNAVAILABLE {}; device hot-plug is seen only on rescan",
                   s.error().message);
    else
      spdlog::info("BERTH_UDEV_MONITOR source {}", udev_.source());
  }
  return ok_status();
}

void MachineWatch::stop() {
  stopped_ = true;
  containers_.clear();
  links_.stop();
  resync_timer_.cancel();
  rescan_delay_.cancel();
  auto waiters = std::move(rescan_waiters_);
  for (auto& w : next_rescan_waiters_) waiters.push_back(std::move(w));
  rescan_waiters_.clear();
  next_rescan_waiters_.clear();
  for (auto& w : waiters) w({"berthd is stopping", false, {}});
}

nlohmann::json MachineWatch::links_view() const {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& [i, l] : links_.view()) out.push_back(link_json(l));
  return out;
}

void MachineWatch::arm_resync_timer() {
  resync_timer_.expires_after(std::chrono::seconds(config_.netlink_resync_s));
  resync_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (ec) return;
    resync("periodic resync");
    rescan("periodic resync");  // what changes without a uevent (MIG instances)
    arm_resync_timer();
  });
}

void MachineWatch::resync(const std::string& why) {
  if (stopped_) return;
  if (dump_in_flight_) {
    dump_again_ = true;  // what changed during this dump may be missing from it
    return;
  }
  dump_in_flight_ = true;
  ++resyncs_;
  spdlog::info("BERTH_NETLINK_RESYNC {}", why);
  auto result = std::make_shared<Expected<net::LinkView>>(net::LinkView{});
  worker_.post([this, result] {
    *result = net::dump_links();
    boost::asio::post(io_, [this, result] {
      dump_in_flight_ = false;
      if (stopped_) return;
      if (!*result) {
        spdlog::error("BERTH_NETLINK_DUMP_FAILED {}", result->error().message);
        dump_again_ = true;
      } else {
        links_.replace(std::move(**result));
      }
      if (dump_again_) {
        dump_again_ = false;
        resync("changes arrived during the last dump");
      }
    });
  });
}

void MachineWatch::on_link_changes(const std::vector<net::LinkChange>& changes) {
  // While a dump is pending the deltas are applied too; the dump's result wins.
  if (dump_in_flight_) dump_again_ = true;
  for (const auto& c : changes) {
    nlohmann::json ev = {{"change", net::to_string(c.kind)}};
    if (c.kind != net::LinkChange::Kind::added) ev["before"] = link_json(c.before);
    if (c.kind != net::LinkChange::Kind::removed) ev["after"] = link_json(c.after);
    ev["name"] = c.kind == net::LinkChange::Kind::removed ? c.before.name : c.after.name;
    bus_.publish("link", ev);
    if (c.kind != net::LinkChange::Kind::removed) check_vf_link(c.after, c.before.name);
  }
}

// A link on the host that is one of the inventory's VFs: under a foreign name it came back from
// a dead namespace (restore it) or was renamed by someone else (report); while its berth has it
// attached it should not be on the host at all (the berth is degraded).
void MachineWatch::check_vf_link(const net::LinkState& link, const std::string& old_name) {
  namespace fs = std::filesystem;
  std::error_code ec;
  auto dev =
      fs::read_symlink(fs::path(config_.sysfs_root) / "class/net" / link.name / "device", ec);
  if (ec) return;
  const std::string pci = dev.filename().string();
  const Vf* vf = engine_.context().inventory.vf_by_pci(pci);
  if (!vf) return;
  const Ledger& ledger = engine_.ledger();
  if (busy_holder(ledger, pci)) return;  // an attach or detach is moving it right now
  if (const Berth* b = attached_holder(ledger, pci)) {
    if (b->state == BerthState::attached)
      engine_.post(event::Fault{b->owner, "VF " + pci + " is back on the host as " + link.name +
                                              "; the container no longer has it"});
    return;
  }
  if (link.name == vf->netdev) return;
  if (!old_name.empty() && old_name == vf->netdev) {
    bus_.publish("warning", {{"message", "free VF " + pci + " was renamed from " + old_name +
                                             " to " + link.name + " by someone else; restoring"}});
  }
  const std::string current = link.name, host_name = vf->netdev;
  auto note = std::make_shared<Expected<std::string>>(std::string());
  worker_.post([this, note, current, host_name] {
    *note = actuator_.restore_vf_link(current, host_name);
    boost::asio::post(io_, [this, note, current] {
      if (*note) {
        spdlog::info("BERTH_VF_RESTORED {}", **note);
        bus_.publish("link", {{"change", "restored"}, {"name", current}, {"message", **note}});
      } else {
        spdlog::error("BERTH_VF_RESTORE_FAILED {}: {}", current, note->error().message);
        bus_.publish("warning", {{"message", "cannot restore VF link " + current + ": " +
                                                 note->error().message}});
      }
    });
  });
}

void MachineWatch::watch_container(const std::string& owner, const Target& target) {
  unwatch_container(owner);
  auto it = engine_.ledger().berths.find(owner);
  if (stopped_ || it == engine_.ledger().berths.end() || it->second.vfs.empty()) return;
  const uint64_t gen = next_gen_++;
  containers_[owner] = ContainerLinks{target, gen, nullptr};
  struct Opened {
    Expected<int> fd = make_error(ErrorCode::internal, "not opened");
    Expected<net::LinkView> view = net::LinkView{};
  };
  auto opened = std::make_shared<Opened>();
  const int host = host_netns_;
  const unsigned rcvbuf = config_.netlink_rcvbuf;
  worker_.post([opened, target, host, rcvbuf] {
    // Entered through a pidfd: the namespace of exactly the process attached, or of none.
    const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, target.pid, 0));
    auto start = process_start_time(target.pid);
    if (pidfd < 0 || !start || (target.start_time != 0 && *start != target.start_time)) {
      if (pidfd >= 0) ::close(pidfd);
      opened->fd = make_error(ErrorCode::target_not_found, "the container has exited");
      return;
    }
    if (::setns(pidfd, CLONE_NEWNET) != 0) {
      opened->fd = make_error(
          ErrorCode::internal,
          std::string("cannot enter the container's network namespace: ") + std::strerror(errno));
      ::close(pidfd);
      return;
    }
    ::close(pidfd);
    opened->fd = net::open_link_socket(rcvbuf);
    opened->view = net::dump_links();
    if (::setns(host, CLONE_NEWNET) != 0) {
      spdlog::critical("BERTH_NETNS_RETURN_FAILED cannot return to the host network namespace: {}",
                       std::strerror(errno));
      std::abort();
    }
  });
  worker_.post([this, opened, owner, gen] {
    boost::asio::post(io_, [this, opened, owner, gen] {
      auto it = containers_.find(owner);
      if (it == containers_.end() || it->second.gen != gen) {
        if (opened->fd) ::close(*opened->fd);
        return;
      }
      if (!opened->fd || !opened->view) {
        spdlog::warn("BERTH_CONTAINER_LINKS_UNWATCHED {}: {}", owner,
                     (!opened->fd ? opened->fd.error() : opened->view.error()).message);
        containers_.erase(it);
        if (opened->fd) ::close(*opened->fd);
        return;
      }
      it->second.monitor = std::make_unique<net::LinkMonitor>(
          io_, config_.netlink_rcvbuf,
          [this, owner](const std::vector<net::LinkChange>& c) { check_container_links(owner, c); },
          [this, owner] {
            // Lost notifications inside the container: watch it again from a fresh dump.
            if (auto w = containers_.find(owner); w != containers_.end())
              boost::asio::post(io_,
                                [this, owner, t = w->second.target] { watch_container(owner, t); });
          });
      it->second.monitor->replace(std::move(*opened->view));  // nothing to report: no baseline
      it->second.monitor->adopt(*opened->fd);
    });
  });
}

void MachineWatch::unwatch_container(const std::string& owner) {
  containers_.erase(owner);
}

void MachineWatch::check_container_links(const std::string& owner,
                                         const std::vector<net::LinkChange>& changes) {
  auto it = engine_.ledger().berths.find(owner);
  if (it == engine_.ledger().berths.end()) return;
  const Berth& b = it->second;
  // Only a settled, attached berth: its own attach and detach steps change these links too.
  if (b.state != BerthState::attached || b.op != Operation::none) return;
  for (const auto& c : changes) {
    bus_.publish("link", {{"owner", owner},
                          {"namespace", "container"},
                          {"change", net::to_string(c.kind)},
                          {"name", c.kind == net::LinkChange::Kind::removed ? c.before.name
                                                                            : c.after.name}});
    for (const auto& v : b.vfs) {
      if (c.before.name != v.ifname) continue;
      std::string fault;
      const std::string vf = "VF " + v.pci + " (" + v.ifname + " in the container)";
      if (c.kind == net::LinkChange::Kind::removed) {
        fault = vf + " was removed from the container";
      } else if (c.after.name != v.ifname) {
        fault = vf + " was renamed to " + c.after.name + " by someone else";
      } else if (c.before.up && !c.after.up) {
        fault = vf + " went down";
      } else {
        std::set<std::string> ours;
        for (const auto& a : v.addresses) ours.insert(a.to_string());
        for (const auto& a : c.after.addresses)
          if (!c.before.addresses.count(a) && !ours.count(a) && !a.starts_with("fe80:")) {
            fault = vf + " got address " + a + " from someone else";
            break;
          }
      }
      if (!fault.empty()) engine_.post(event::Fault{owner, fault});
    }
  }
}

void MachineWatch::rescan(const std::string& why, RescanDone done) {
  if (stopped_) {
    if (done) done({"berthd is stopping", false, {}});
    return;
  }
  if (rescan_running_) {
    // The discovery on the worker may have read what this caller changed before the change.
    if (done) next_rescan_waiters_.push_back(std::move(done));
    rescan_again_ = true;
    return;
  }
  if (done) rescan_waiters_.push_back(std::move(done));
  if (rescan_pending_) return;
  rescan_pending_ = true;
  // Events come in bursts (sriov_numvfs 0 -> 64 is hundreds): one rescan after 100 ms of them.
  rescan_delay_.expires_after(std::chrono::milliseconds(100));
  rescan_delay_.async_wait([this, why](const boost::system::error_code& ec) {
    if (ec) return;
    rescan_running_ = true;
    ++rescans_;
    spdlog::debug("BERTH_RESCAN {}", why);
    auto result = std::make_shared<Expected<Discovery>>(Discovery{});
    Config config = config_;
    worker_.post([this, result, config] {
      *result = discover(config);
      boost::asio::post(io_, [this, result] { rescan_finished(*result); });
    });
  });
}

void MachineWatch::rescan_finished(Expected<Discovery>& result) {
  rescan_pending_ = false;
  rescan_running_ = false;
  RescanResult out;
  if (!result) {
    out.error = result.error().message;
    spdlog::error("BERTH_RESCAN_FAILED {}", out.error);
  } else {
    out.warnings = result->warnings;
    const nlohmann::json before = engine_.context().inventory;
    const nlohmann::json after = result->inventory;
    out.changed = before != after;
    if (out.changed) {
      spdlog::info("BERTH_INVENTORY_CHANGED {} GPUs, {} VFs", result->inventory.gpus.size(),
                   result->inventory.vfs.size());
      bus_.publish("inventory", {{"gpus", result->inventory.gpus.size()},
                                 {"vfs", result->inventory.vfs.size()},
                                 {"hcas", result->inventory.hcas.size()}});
      if (!stopped_) engine_.post(event::InventoryChanged{std::move(result->inventory)});
    }
  }
  auto waiters = std::move(rescan_waiters_);
  rescan_waiters_ = std::move(next_rescan_waiters_);
  next_rescan_waiters_.clear();
  for (auto& w : waiters) w(out);
  if (rescan_again_) {
    rescan_again_ = false;
    rescan("asked for during the last rescan");
  }
}

}  // namespace berth::agent
