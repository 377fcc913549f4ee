#include "agent/app/machine_watch.hpp"

#include <filesystem>

#include <spdlog/spdlog.h>
#include <boost/asio/post.hpp>

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
            rescan("udev " + e.action + " " + e.subsystem + " " + e.sysname);
          },
          [this] { rescan("udev receive buffer overrun"); }),
      resync_timer_(io),
      rescan_delay_(io) {}

Status MachineWatch::start() {
  if (auto s = links_.start(); !s) return s;
  // The view starts from a dump taken after the subscription, so nothing falls in between.
  auto first = net::dump_links();
  if (!first) return first.error();
  links_.replace(std::move(*first));
  arm_resync_timer();
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
  links_.stop();
  resync_timer_.cancel();
  rescan_delay_.cancel();
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
    bus_.publish("link", std::move(ev));
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

void MachineWatch::rescan(const std::string& why) {
  if (stopped_ || rescan_pending_) return;
  rescan_pending_ = true;
  // Events come in bursts (sriov_numvfs 0 -> 64 is hundreds): one rescan after 100 ms of them.
  rescan_delay_.expires_after(std::chrono::milliseconds(100));
  rescan_delay_.async_wait([this, why](const boost::system::error_code& ec) {
    if (ec) return;
    auto result = std::make_shared<Expected<Discovery>>(Discovery{});
    Config config = config_;
    worker_.post([this, result, config] {
      *result = discover(config);
      boost::asio::post(io_, [this, result] {
        rescan_pending_ = false;
        if (!*result) {
          spdlog::error("BERTH_RESCAN_FAILED {}", result->error().message);
          return;
        }
        const nlohmann::json before = engine_.context().inventory;
        const nlohmann::json after = (*result)->inventory;
        if (before == after) return;
        spdlog::info("BERTH_INVENTORY_CHANGED {} GPUs, {} VFs", (*result)->inventory.gpus.size(),
                     (*result)->inventory.vfs.size());
        bus_.publish("inventory", {{"gpus", (*result)->inventory.gpus.size()},
                                   {"vfs", (*result)->inventory.vfs.size()},
                                   {"hcas", (*result)->inventory.hcas.size()}});
        engine_.post(event::InventoryChanged{std::move((*result)->inventory)});
      });
    });
  });
}

}  // namespace berth::agent
