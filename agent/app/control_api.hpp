#pragma once
// The control API: routes HTTP requests to engine events and engine replies to JSON responses.
//
//   GET    /                               the live status page (HTML)
//   GET    /v1/usage                       per-berth CPU/memory and time held, GPU use (NVML)
//   GET    /metrics                        Prometheus text format
//   GET    /v1/health
//   GET    /v1/inventory
//   GET    /v1/berths
//   GET    /v1/berths/{kind}/{id}
//   PUT    /v1/berths/{kind}/{id}          create (body: the request)
//   POST   /v1/berths/{kind}/{id}/attach   body {"pid": N} or {"runc": "ID"}
//   POST   /v1/berths/{kind}/{id}/detach
//   DELETE /v1/berths/{kind}/{id}          release (detaches first)
//   GET    /v1/events[?since=SEQ]          Server-Sent Events: berth, inventory, link, warning
//   POST   /v1/slurm/prolog                reserve a job's berth (body: the job's variables)
//   POST   /v1/slurm/epilog                release it
//   GET    /v1/check-driver?pid=|runc=|lxc=|apptainer=   host vs container NVIDIA driver
//   GET    /v1/cdi                         the CDI spec of the reserved berths
//   POST   /v1/standing/start              a container started: attach its standing berths
//   GET    /v1/runners                     CI runners: queued, starting, running, finished
//   GET    /v1/links                       berthd's view of the host's links (from netlink)
#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/awaitable.hpp>

#include "agent/app/config.hpp"
#include "agent/app/engine.hpp"
#include "agent/app/event_bus.hpp"
#include "agent/app/metrics.hpp"
#include "agent/app/usage_view.hpp"
#include "net/http_server.hpp"
#include "net/rate_limited_log.hpp"

namespace berth::agent {

class ControlApi {
 public:
  // `mutators`: the group whose members may change state (root always may).
  ControlApi(Engine& engine, const Config& config, std::optional<gid_t> mutators,
             std::vector<std::string> warnings, EventBus& bus);
  boost::asio::awaitable<net::Reply> handle(net::Request req, net::Peer peer);
  // Attaches a standing berth to its container (as root would), now: the container's start, a
  // device back on the node, berthd's own start.
  boost::asio::awaitable<net::Response> attach_standing(const std::string& owner);
  // The standing berths whose container is `t` (lxc/lxcpath, runc or apptainer).
  std::vector<std::string> standing_for(const StandingTarget& t) const;
  // The TCP listener's handler: read-only, a fixed set of routes.
  boost::asio::awaitable<net::Reply> handle_tcp(net::Request req, net::Peer peer, bool status_page);
  void set_links(std::function<nlohmann::json()> links) { links_ = std::move(links); }
  // Extra fields for GET /v1/health (event sources' counters).
  void set_health(std::function<nlohmann::json()> health) { health_ = std::move(health); }
  void set_metrics(Metrics* metrics) { metrics_ = metrics; }
  void set_usage(const UsageView* usage) { usage_ = usage; }
  // POST /v1/inventory/rescan: `rescan(done)` reads the machine again; `done(error, changed,
  // warnings)` once a rescan that started after the request has ended.
  using RescanDone = std::function<void(const std::string&, bool, const std::vector<std::string>&)>;
  void set_rescan(std::function<void(RescanDone)> rescan) { rescan_ = std::move(rescan); }
  // GET /v1/runners (the CI webhook front door's runners), when it is configured.
  void set_runners(std::function<nlohmann::json()> runners) { runners_ = std::move(runners); }
  // A request as root on the unix socket would make it: for berthd's own front doors.
  boost::asio::awaitable<net::Response> as_root(boost::beast::http::verb method, std::string target,
                                                std::string body);

 private:
  boost::asio::awaitable<net::Response> attach(const net::Request& req, const std::string& owner,
                                               const net::Peer& peer, bool privileged);
  // The pid of the container a target names (runc, LXC, apptainer), from its runtime, now.
  boost::asio::awaitable<Expected<int>> resolve_pid(const Target& t);
  // Runs `job` on the worker thread (what reads /proc or a container's files), then resumes.
  // `for_operation`: see Engine::run_off_reactor.
  boost::asio::awaitable<void> off_reactor(std::function<void()> job, bool for_operation = false);
  boost::asio::awaitable<DriverCheck> check_driver_of(const Target& t);
  boost::asio::awaitable<net::Response> check_driver_route(const net::Request& req);
  boost::asio::awaitable<net::Response> slurm_prolog(const net::Request& req,
                                                     const net::Peer& peer);
  boost::asio::awaitable<net::Response> slurm_epilog(const net::Request& req);
  boost::asio::awaitable<net::Response> standing_start(const net::Request& req);
  boost::asio::awaitable<net::Response> rescan_route(const net::Request& req);
  // A peer that may not mutate may still attach a berth recorded as its own (a Slurm job's user).
  bool may_attach_own(const std::vector<std::string>& parts, const net::Peer& peer) const;
  // `op` names the operation for metrics; null: from the event's type.
  boost::asio::awaitable<net::Response> submit(const net::Request& req, Event ev,
                                               const char* op = nullptr);

  Engine& engine_;
  const Config& config_;
  std::optional<gid_t> mutators_;
  std::vector<std::string> warnings_;
  // A driver check that could not compare (no driver version on the host, no libcuda.so.1 in
  // the container) says the same at every attach: logged once in a while, per message.
  net::RateLimitedLog unknown_driver_log_{std::chrono::seconds(600)};
  EventBus& bus_;
  std::function<nlohmann::json()> links_;
  std::function<nlohmann::json()> health_;
  std::function<nlohmann::json()> runners_;
  std::function<void(RescanDone)> rescan_;
  Metrics* metrics_ = nullptr;
  const UsageView* usage_ = nullptr;
};

}  // namespace berth::agent
