#pragma once
// The machine's own events drive berthd: host links and addresses (rtnetlink), devices (udev),
// each an async source on the reactor, turned into inventory changes, faults and restorations
// for the engine, and into events for watchers. Blocking work (dumps, sysfs rescans, link
// restoration) runs on the worker.
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <nlohmann/json.hpp>

#include "agent/app/config.hpp"
#include "agent/app/engine.hpp"
#include "agent/app/event_bus.hpp"
#include "agent/app/worker.hpp"
#include "agent/host/discovery.hpp"
#include "agent/host/host_actuator.hpp"
#include "net/link_monitor.hpp"
#include "net/udev_monitor.hpp"

namespace berth::agent {

class MachineWatch {
 public:
  MachineWatch(boost::asio::io_context& io, Worker& worker, const Config& config, Engine& engine,
               HostActuator& actuator, EventBus& bus);
  Status start();
  void stop();
  // berthd's view of the host's links, as the API shows it.
  nlohmann::json links_view() const;
  // What a rescan found: an error, or whether the inventory changed and what discovery skipped.
  struct RescanResult {
    std::string error;
    bool changed = false;
    std::vector<std::string> warnings;
  };
  using RescanDone = std::function<void(const RescanResult&)>;
  // Reads sysfs and proc again (after a udev event, a gap, SIGHUP, the periodic resync or on
  // request: MIG instances come and go without a uevent) and hands the engine the new inventory
  // when it differs. `done`, when given, is called with the result of a rescan that started
  // after this call.
  void rescan(const std::string& why, RescanDone done = {});
  uint64_t resyncs() const { return resyncs_; }
  // Rescans of sysfs and /proc run since start (uevents, the API, SIGHUP, the resync timer).
  uint64_t rescans() const { return rescans_; }
  // An attached berth's container: its VF links are watched inside its network namespace (one
  // rtnetlink socket made there on the worker), so a VF that goes down, is renamed, removed or
  // given an address by someone else degrades the berth.
  void watch_container(const std::string& owner, const Target& target);
  void unwatch_container(const std::string& owner);
  size_t watched_containers() const { return containers_.size(); }
  uint64_t overruns() const { return links_.overruns(); }

 private:
  void resync(const std::string& why);
  void rescan_finished(Expected<Discovery>& result);
  void arm_resync_timer();
  void on_link_changes(const std::vector<net::LinkChange>& changes);
  void check_vf_link(const net::LinkState& link, const std::string& old_name);
  void check_container_links(const std::string& owner, const std::vector<net::LinkChange>& changes);

  struct ContainerLinks {
    Target target;
    uint64_t gen = 0;
    std::unique_ptr<net::LinkMonitor> monitor;
  };

  boost::asio::io_context& io_;
  Worker& worker_;
  const Config& config_;
  Engine& engine_;
  HostActuator& actuator_;
  EventBus& bus_;
  net::LinkMonitor links_;
  net::UdevMonitor udev_;
  boost::asio::steady_timer resync_timer_;
  boost::asio::steady_timer rescan_delay_;
  bool dump_in_flight_ = false;
  bool dump_again_ = false;
  bool rescan_pending_ = false;  // the delay is armed or the discovery is on the worker
  bool rescan_running_ = false;  // the discovery is on the worker
  bool rescan_again_ = false;    // asked for while it ran: once more after it
  std::vector<RescanDone> rescan_waiters_, next_rescan_waiters_;
  bool stopped_ = false;
  // Whether a netdev of that name in the host's namespace has a device behind it (not a veth).
  static bool netdev_of_a_host_device(const std::string& name);
  uint64_t resyncs_ = 0;
  uint64_t rescans_ = 0;
  int host_netns_ = -1;
  std::map<std::string, ContainerLinks> containers_;
  uint64_t next_gen_ = 1;

 public:
  ~MachineWatch();
};

}  // namespace berth::agent
