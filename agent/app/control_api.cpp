#include "agent/app/control_api.hpp"

#include <tuple>

#include <spdlog/spdlog.h>
#include <boost/asio/async_result.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <nlohmann/json.hpp>

#include "agent/app/await_callback.hpp"
#include "agent/app/event_stream.hpp"
#include "agent/app/status_page.hpp"
#include "agent/host/child_process.hpp"
#include "agent/host/container.hpp"
#include "agent/host/driver_check.hpp"
#include "agent/host/runtime_targets.hpp"
#include "core/cdi.hpp"
#include "core/slurm.hpp"
#include "core/view.hpp"

namespace berth::agent {
namespace asio = boost::asio;
namespace http = boost::beast::http;

namespace {

net::Response error_response(const net::Request& req, ErrorCode code, const std::string& message) {
  return net::json_response(static_cast<unsigned>(http_status(code)),
                            net::error_body(to_string(code), message), req.version(),
                            req.keep_alive());
}

net::Response ok_response(const net::Request& req, const nlohmann::json& body,
                          unsigned status = 200) {
  return net::json_response(status, body.dump() + "\n", req.version(), req.keep_alive());
}

std::vector<std::string> split_path(std::string_view target) {
  auto q = target.find('?');
  if (q != std::string_view::npos) target = target.substr(0, q);
  std::vector<std::string> parts;
  size_t pos = 0;
  while (pos < target.size()) {
    auto next = target.find('/', pos);
    if (next == std::string_view::npos) next = target.size();
    if (next > pos) parts.emplace_back(target.substr(pos, next - pos));
    pos = next + 1;
  }
  return parts;
}

Expected<nlohmann::json> parse_body(const net::Request& req) {
  if (req.body().empty()) return nlohmann::json::object();
  try {
    return nlohmann::json::parse(req.body());
  } catch (const nlohmann::json::parse_error& e) {
    return make_error(ErrorCode::bad_json,
                      std::string("request body is not valid JSON: ") + e.what());
  }
}

net::Response forbidden(const net::Request& req, const net::Peer& peer, const std::string& owner,
                        const std::string& why) {
  spdlog::warn("BERTH_API_FORBIDDEN uid {} pid {} on {}: {}", peer.uid, peer.pid, owner, why);
  return error_response(
      req, ErrorCode::forbidden,
      "uid " + std::to_string(peer.uid) + " may not attach " + owner + ": " + why);
}

// On the worker: opening the container's root and reading in it may wait on its filesystem.
DriverCheck driver_check_of(const Target& target, const std::string& proc_root) {
  auto root = open_container_root(target);
  if (!root) {
    DriverCheck failed;
    failed.message = "cannot open the container: " + root.error().message;
    return failed;
  }
  return check_driver(root->get(), proc_root);
}

}  // namespace

ControlApi::ControlApi(Engine& engine, const Config& config, std::optional<gid_t> mutators,
                       std::vector<std::string> warnings, EventBus& bus)
    : engine_(engine),
      config_(config),
      mutators_(mutators),
      warnings_(std::move(warnings)),
      bus_(bus) {}

asio::awaitable<net::Response> ControlApi::submit(const net::Request& req, Event ev,
                                                  const char* op) {
  if (!op)
    op = std::visit(
        [](const auto& e) -> const char* {
          using E = std::decay_t<decltype(e)>;
          if constexpr (std::is_same_v<E, event::Create>) return "create";
          if constexpr (std::is_same_v<E, event::Attach>) return "attach";
          if constexpr (std::is_same_v<E, event::Detach>) return "detach";
          return "release";
        },
        ev);
  const auto started = std::chrono::steady_clock::now();
  auto [error, view] = co_await await_callback<void(std::optional<Error>, nlohmann::json)>(
      [&](auto done) { engine_.submit(std::move(ev), std::move(done)); });
  if (metrics_)
    metrics_->operation(
        op, std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
  if (error) {
    nlohmann::json body = {
        {"error", {{"code", to_string(error->code)}, {"message", error->message}}}};
    if (!view.is_null()) body["berth"] = view;
    co_return net::json_response(static_cast<unsigned>(http_status(error->code)),
                                 body.dump() + "\n", req.version(), req.keep_alive());
  }
  co_return ok_response(req, {{"berth", view}});
}

asio::awaitable<Expected<int>> ControlApi::resolve_pid(const Target& t) {
  const std::chrono::milliseconds timeout(10000);
  std::vector<std::string> argv;
  if (!t.runc_id.empty())
    argv = runc_state_argv(config_.runc, config_.runc_root, t.runc_id);
  else if (!t.lxc.empty())
    argv = lxc_info_argv(config_.lxc_info, t.lxcpath, t.lxc);
  else if (!t.apptainer.empty())
    argv = apptainer_list_argv(config_.apptainer);
  else
    co_return t.pid;
  ChildResult r = co_await run_child(argv, timeout);
  const std::string what = !t.runc_id.empty() ? "runc container '" + t.runc_id + "'"
                           : !t.lxc.empty()   ? "LXC container '" + t.lxc + "'"
                                              : "apptainer instance '" + t.apptainer + "'";
  if (r.exit_code != 0)
    co_return make_error(ErrorCode::target_not_found, what + ": " + argv[0] + " failed: " +
                                                          (r.error.empty() ? r.output : r.error));
  if (!t.runc_id.empty()) co_return pid_from_runc_state(r.output, t.runc_id);
  if (!t.lxc.empty()) co_return pid_from_lxc_info(r.output, t.lxc);
  co_return pid_from_apptainer_list(r.output, t.apptainer);
}

asio::awaitable<net::Response> ControlApi::attach(const net::Request& req, const std::string& owner,
                                                  const net::Peer& peer, bool privileged) {
  auto body = parse_body(req);
  if (!body) co_return error_response(req, body.error().code, body.error().message);
  const auto& j = *body;
  static const char* kUsage =
      "attach takes exactly one of {\"pid\": N} (optionally with \"rootfs\"), {\"runc\": ID}, "
      "{\"lxc\": NAME} (optionally with \"lxcpath\") or {\"apptainer\": NAME}";
  if (!j.is_object()) co_return error_response(req, ErrorCode::bad_request, kUsage);
  int kinds = 0;
  for (const char* k : {"pid", "runc", "lxc", "apptainer"}) kinds += j.contains(k) ? 1 : 0;
  for (const auto& [k, v] : j.items())
    if (k != "pid" && k != "runc" && k != "lxc" && k != "apptainer" && k != "rootfs" &&
        k != "lxcpath")
      co_return error_response(req, ErrorCode::bad_request, "unknown field '" + k + "'; " + kUsage);
  if (kinds != 1 || (j.contains("rootfs") && !j.contains("pid")) ||
      (j.contains("lxcpath") && !j.contains("lxc")))
    co_return error_response(req, ErrorCode::bad_request, kUsage);
  auto text = [&](const char* key) {
    return j[key].is_string() ? j[key].get<std::string>() : std::string();
  };
  Target target;
  if (j.contains("pid")) {
    if (!j["pid"].is_number_integer() || j["pid"].get<int64_t>() <= 1 ||
        j["pid"].get<int64_t>() > (1 << 22))
      co_return error_response(req, ErrorCode::bad_request,
                               "field 'pid': must be a process id greater than 1");
    target.pid = j["pid"].get<int>();
    if (j.contains("rootfs")) {
      // Only a runtime's hook run by root knows where a container not yet switched to its root
      // has it; from anyone else it could point the agent at a directory of the host.
      if (!privileged) co_return forbidden(req, peer, owner, "only root may attach with 'rootfs'");
      const std::string r = text("rootfs");
      if (r.empty() || r[0] != '/' || r.find('\0') != std::string::npos ||
          r.find("/../") != std::string::npos)
        co_return error_response(req, ErrorCode::bad_request,
                                 "field 'rootfs': must be an absolute path without '..'");
      target.rootfs = r;
    }
  } else if (j.contains("runc")) {
    target.runc_id = text("runc");
    if (!valid_runc_id(target.runc_id))
      co_return error_response(req, ErrorCode::bad_request,
                               "field 'runc': must be a runc container id ([A-Za-z0-9_+.-]+)");
  } else if (j.contains("lxc")) {
    target.lxc = text("lxc");
    if (!valid_container_name(target.lxc))
      co_return error_response(req, ErrorCode::bad_request,
                               "field 'lxc': must be an LXC container name ([A-Za-z0-9_.-]+)");
    if (j.contains("lxcpath")) {
      target.lxcpath = text("lxcpath");
      if (target.lxcpath.empty() || target.lxcpath[0] != '/' ||
          target.lxcpath.find('\0') != std::string::npos)
        co_return error_response(req, ErrorCode::bad_request,
                                 "field 'lxcpath': must be an absolute path");
    }
  } else {
    target.apptainer = text("apptainer");
    if (!valid_container_name(target.apptainer))
      co_return error_response(req, ErrorCode::bad_request,
                               "field 'apptainer': must be an instance name ([A-Za-z0-9_.-]+)");
  }
  // Resolved now, for this attach only (never a cached pid)...
  auto pid = co_await resolve_pid(target);
  if (!pid) co_return error_response(req, pid.error().code, pid.error().message);
  target.pid = *pid;
  // A GPU berth's container is checked for a userspace driver that fits the host's.
  DriverPolicy policy = DriverPolicy::off;
  if (auto it = engine_.ledger().berths.find(owner);
      it != engine_.ledger().berths.end() && !it->second.placement.gpus.empty())
    policy = it->second.request.driver_check.value_or(config_.driver_check);
  const bool by_runtime_id =
      !target.runc_id.empty() || !target.lxc.empty() || !target.apptainer.empty();
  // What the attach records of its process is read from /proc, and the driver check reads in
  // its root: off the reactor, in one job (the driver check after the pid is confirmed, below,
  // when a runtime named the container).
  struct Inspection {
    Target target;
    std::optional<Error> error;
    bool not_owned = false;
    std::optional<DriverCheck> driver;
  };
  auto seen = std::make_shared<Inspection>();
  seen->target = target;
  const bool check_now = policy != DriverPolicy::off && !by_runtime_id;
  // (A closure built inside a co_await expression is destroyed twice by GCC 12: named locals.)
  std::function<void()> inspect = [seen, privileged, uid = peer.uid, check_now,
                                   proc_root = config_.proc_root] {
    Target& t = seen->target;
    auto start = process_start_time(t.pid);
    if (!start) {
      seen->error = start.error();
      return;
    }
    t.start_time = *start;
    if (!privileged) {
      // The workload's own user (a Slurm job's, recorded at prolog) into its own process only.
      if (auto own = check_owned_by(t.pid, uid); !own) {
        seen->error = own.error();
        seen->not_owned = true;
        return;
      }
    }
    std::pair<uint64_t, uint64_t> namespaces;
    if (auto c = check_is_container(t.pid, t.rootfs, &namespaces); !c) {
      seen->error = c.error();
      return;
    }
    auto cg = container_cgroups(t.pid);
    t.devices_cgroup = cg.devices;
    t.cpuset_cgroup = cg.cpuset;
    t.unified_cgroup = cg.unified;
    std::tie(t.netns, t.mntns) = namespaces;
    if (check_now) seen->driver = driver_check_of(t, proc_root);
  };
  co_await off_reactor(std::move(inspect), true);
  if (seen->not_owned) co_return forbidden(req, peer, owner, seen->error->message);
  if (seen->error) co_return error_response(req, seen->error->code, seen->error->message);
  target = seen->target;
  // ...and again once its process is pinned by its start time: a container stopped, restarted
  // or renamed meanwhile is refused, never attached to whatever now has the pid.
  if (target.pid != 0 && by_runtime_id) {
    auto again = co_await resolve_pid(target);
    auto start_again = std::make_shared<Expected<uint64_t>>(uint64_t{0});
    const bool confirmed = again && *again == target.pid;
    std::function<void()> read_again = [start_again, seen, confirmed, policy,
                                        proc_root = config_.proc_root] {
      *start_again = process_start_time(seen->target.pid);
      if (confirmed && policy != DriverPolicy::off && *start_again &&
          **start_again == seen->target.start_time)
        seen->driver = driver_check_of(seen->target, proc_root);
    };
    co_await off_reactor(std::move(read_again), true);
    if (!again || *again != target.pid || !*start_again || **start_again != target.start_time)
      co_return error_response(req, ErrorCode::conflict,
                               "the container changed while it was being attached (stopped, "
                               "restarted or renamed); nothing was done, try again");
  }
  if (seen->driver) {
    const DriverCheck& check = *seen->driver;
    target.driver = std::string(to_string(check.status)) + ": " + check.message;
    if (check.status == DriverCheck::Status::mismatch && policy == DriverPolicy::refuse)
      co_return error_response(
          req, ErrorCode::driver_mismatch,
          owner + " not attached: " + check.message + " (driver_check is refuse)");
    if (check.status != DriverCheck::Status::match) {
      if (check.status == DriverCheck::Status::unknown)
        unknown_driver_log_.warn("BERTH_DRIVER_CHECK", check.message,
                                 [&] { return owner + ": " + check.message; });
      else
        spdlog::warn("BERTH_DRIVER_CHECK {}: {}", owner, check.message);
      bus_.publish("warning", {{"owner", owner}, {"message", check.message}});
    }
  }
  // GCC 12 destroys temporaries inside a co_await expression twice: build events as named locals.
  Event ev = event::Attach{0, owner, target};
  co_return co_await submit(req, std::move(ev));
}

asio::awaitable<void> ControlApi::off_reactor(std::function<void()> job, bool for_operation) {
  co_await await_callback<void()>(
      [&](auto done) { engine_.run_off_reactor(std::move(job), std::move(done), for_operation); });
}

asio::awaitable<DriverCheck> ControlApi::check_driver_of(const Target& target) {
  // Opening the container's root and reading in it may wait on its filesystem: off the reactor.
  auto result = std::make_shared<DriverCheck>();
  std::function<void()> check = [result, target, proc_root = config_.proc_root] {
    *result = driver_check_of(target, proc_root);
  };
  co_await off_reactor(std::move(check));
  co_return *result;
}

asio::awaitable<net::Response> ControlApi::check_driver_route(const net::Request& req) {
  // GET /v1/check-driver?pid=N | runc=ID | lxc=NAME[&lxcpath=P] | apptainer=NAME
  std::string_view t = req.target();
  auto q = t.find('?');
  Target target;
  std::string query = q == std::string_view::npos ? "" : std::string(t.substr(q + 1));
  for (size_t pos = 0; pos < query.size();) {
    auto amp = query.find('&', pos);
    if (amp == std::string::npos) amp = query.size();
    auto kv = query.substr(pos, amp - pos);
    auto eq = kv.find('=');
    std::string k = kv.substr(0, eq), v = eq == std::string::npos ? "" : kv.substr(eq + 1);
    if (k == "pid" && v.find_first_not_of("0123456789") == std::string::npos && !v.empty() &&
        v.size() < 8)
      target.pid = std::stoi(v);
    else if (k == "runc" && valid_runc_id(v))
      target.runc_id = v;
    else if (k == "lxc" && valid_container_name(v))
      target.lxc = v;
    else if (k == "lxcpath" && !v.empty() && v[0] == '/')
      target.lxcpath = v;
    else if (k == "apptainer" && valid_container_name(v))
      target.apptainer = v;
    else
      co_return error_response(req, ErrorCode::bad_request,
                               "query '" + k +
                                   "': give pid=N, runc=ID, lxc=NAME[&lxcpath=P] or "
                                   "apptainer=NAME");
    pos = amp + 1;
  }
  auto pid = co_await resolve_pid(target);
  if (!pid || *pid <= 1)
    co_return error_response(req, pid ? ErrorCode::bad_request : pid.error().code,
                             pid ? "no target given" : pid.error().message);
  target.pid = *pid;
  auto is_container = std::make_shared<Status>(ok_status());
  std::function<void()> check_container = [is_container, pid = target.pid] {
    *is_container = check_is_container(pid);
  };
  co_await off_reactor(std::move(check_container));
  if (!*is_container)
    co_return error_response(req, is_container->error().code, is_container->error().message);
  DriverCheck check = co_await check_driver_of(target);
  co_return ok_response(req, {{"status", to_string(check.status)},
                              {"host", check.host},
                              {"container", check.container},
                              {"message", check.message}});
}

bool ControlApi::may_attach_own(const std::vector<std::string>& parts,
                                const net::Peer& peer) const {
  if (!peer.local || parts.size() != 5 || parts[1] != "berths" || parts[4] != "attach")
    return false;
  auto it = engine_.ledger().berths.find(parts[2] + "/" + parts[3]);
  return it != engine_.ledger().berths.end() && it->second.owner_uid &&
         *it->second.owner_uid == peer.uid;
}

asio::awaitable<net::Response> ControlApi::slurm_prolog(const net::Request& req,
                                                        const net::Peer& peer) {
  auto body = parse_body(req);
  if (!body) co_return error_response(req, body.error().code, body.error().message);
  auto job = parse_slurm_job(*body);
  if (!job) co_return error_response(req, job.error().code, job.error().message);
  const SlurmConfig none;
  auto spec =
      slurm_request(config_.slurm ? *config_.slurm : none, engine_.context().inventory, *job);
  if (!spec) co_return error_response(req, spec.error().code, spec.error().message);
  if (!*spec)
    co_return ok_response(req, {{"berth", nullptr},
                                {"message", "job " + job->job_id +
                                                " asks for no GPUs and no Slurm profile applies: "
                                                "nothing to reserve"}});
  spdlog::info("BERTH_SLURM_PROLOG job {} user {} gpus '{}' from uid {}", job->job_id, job->user,
               job->job_gpus.empty() ? job->cuda_visible : job->job_gpus, peer.uid);
  Event ev = event::Create{0, slurm_owner(*job), **spec, job->uid};
  co_return co_await submit(req, std::move(ev), "slurm_prolog");
}

asio::awaitable<net::Response> ControlApi::slurm_epilog(const net::Request& req) {
  auto body = parse_body(req);
  if (!body) co_return error_response(req, body.error().code, body.error().message);
  auto job = parse_slurm_job(*body);
  if (!job) co_return error_response(req, job.error().code, job.error().message);
  const std::string owner = slurm_owner(*job);
  if (!engine_.ledger().berths.count(owner))
    co_return ok_response(
        req, {{"berth", nullptr}, {"message", "no berth " + owner + ": nothing to release"}});
  spdlog::info("BERTH_SLURM_EPILOG job {}", job->job_id);
  Event ev = event::Release{0, owner};
  co_return co_await submit(req, std::move(ev), "slurm_epilog");
}

namespace {

nlohmann::json standing_body(const StandingTarget& t) {
  nlohmann::json b = nlohmann::json::object();
  if (!t.lxc.empty()) b["lxc"] = t.lxc;
  if (!t.lxcpath.empty()) b["lxcpath"] = t.lxcpath;
  if (!t.runc.empty()) b["runc"] = t.runc;
  if (!t.apptainer.empty()) b["apptainer"] = t.apptainer;
  return b;
}

}  // namespace

std::vector<std::string> ControlApi::standing_for(const StandingTarget& t) const {
  std::vector<std::string> out;
  for (const auto& [owner, b] : engine_.ledger().berths)
    if (b.state != BerthState::released && b.request.standing && *b.request.standing == t)
      out.push_back(owner);
  return out;
}

asio::awaitable<net::Response> ControlApi::as_root(http::verb method, std::string target,
                                                   std::string body) {
  net::Request req{method, target, 11};
  req.body() = std::move(body);
  req.prepare_payload();
  net::Peer root;
  root.uid = 0;
  root.gid = 0;
  auto reply = co_await handle(std::move(req), root);
  co_return std::move(reply.response);
}

asio::awaitable<net::Response> ControlApi::attach_standing(const std::string& owner) {
  net::Request req{http::verb::post, "/v1/berths/" + owner + "/attach", 11};
  auto it = engine_.ledger().berths.find(owner);
  if (it == engine_.ledger().berths.end() || !it->second.request.standing)
    co_return error_response(req, ErrorCode::unknown_owner, "no standing berth " + owner);
  req.body() = standing_body(*it->second.request.standing).dump();
  net::Peer root;
  root.uid = 0;
  root.gid = 0;
  auto res = co_await attach(req, owner, root, true);
  if (res.result_int() >= 400)
    spdlog::info("BERTH_STANDING {} not attached: {}", owner, res.body());
  else
    spdlog::info("BERTH_STANDING {} attached", owner);
  co_return res;
}

asio::awaitable<net::Response> ControlApi::standing_start(const net::Request& req) {
  auto body = parse_body(req);
  if (!body) co_return error_response(req, body.error().code, body.error().message);
  auto spec = parse_request(nlohmann::json{{"standing", *body}});
  if (!spec) co_return error_response(req, spec.error().code, spec.error().message);
  nlohmann::json results = nlohmann::json::object();
  for (const auto& owner : standing_for(*spec->standing)) {
    auto res = co_await attach_standing(owner);
    auto doc = nlohmann::json::parse(res.body(), nullptr, false);
    results[owner] = res.result_int() < 400 ? nlohmann::json("attached")
                     : doc.is_discarded()   ? nlohmann::json(res.body())
                                            : doc["error"];
  }
  co_return ok_response(req, {{"standing", results}});
}

asio::awaitable<net::Response> ControlApi::rescan_route(const net::Request& req) {
  if (!rescan_)
    co_return error_response(req, ErrorCode::internal, "this berthd cannot rescan the machine");
  auto [error, changed, warnings] =
      co_await await_callback<void(std::string, bool, std::vector<std::string>)>(
          [&](auto done) { rescan_(std::move(done)); });
  if (!error.empty()) co_return error_response(req, ErrorCode::internal, "rescan failed: " + error);
  warnings_ = warnings;
  const auto& inv = engine_.context().inventory;
  co_return ok_response(req, {{"changed", changed},
                              {"gpus", inv.gpus.size()},
                              {"vfs", inv.vfs.size()},
                              {"hcas", inv.hcas.size()},
                              {"warnings", warnings_}});
}

asio::awaitable<net::Reply> ControlApi::handle_tcp(net::Request req, net::Peer peer,
                                                   bool status_page) {
  // TCP is read-only: metrics and health always, the status page and what it reads when
  // configured; nothing there can change a berth.
  const std::string_view target = req.target();
  const std::string_view path = target.substr(0, target.find('?'));
  const bool get = req.method() == http::verb::get || req.method() == http::verb::head;
  bool allowed = path == "/metrics" || path == "/v1/health";
  if (status_page)
    allowed = allowed || path == "/" || path == "/v1/inventory" || path == "/v1/usage" ||
              path == "/v1/events" || path == "/v1/berths" || path.starts_with("/v1/berths/");
  if (!get)
    co_return error_response(
        req, ErrorCode::forbidden,
        "the TCP listener is read-only; change berths through the unix socket");
  if (!allowed)
    co_return error_response(req, ErrorCode::not_found,
                             "no route " + std::string(path) + " on the TCP listener" +
                                 (status_page ? "" : " (http.status_page is off)"));
  peer.local = false;
  co_return co_await handle(std::move(req), std::move(peer));
}

asio::awaitable<net::Reply> ControlApi::handle(net::Request req, net::Peer peer) {
  try {
    auto parts = split_path(req.target());
    const auto method = req.method();
    const bool mutating = method != http::verb::get && method != http::verb::head;
    if (parts.empty() && (req.target() == "/" || req.target().starts_with("/?"))) {
      if (mutating) co_return error_response(req, ErrorCode::method_not_allowed, "use GET");
      net::Response res{http::status::ok, req.version()};
      res.set(http::field::server, "berthd");
      res.set(http::field::content_type, "text/html; charset=utf-8");
      res.set(http::field::cache_control, "no-cache");
      // Everything the page needs is inline; it may only talk back to berthd itself.
      res.set("Content-Security-Policy",
              "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
              "connect-src 'self'; img-src 'self'");
      res.keep_alive(req.keep_alive());
      res.body() = std::string(status_page_html());
      res.prepare_payload();
      co_return res;
    }
    if (parts.size() == 1 && parts[0] == "metrics") {
      if (mutating) co_return error_response(req, ErrorCode::method_not_allowed, "use GET");
      if (!metrics_) co_return error_response(req, ErrorCode::not_found, "no metrics here");
      Metrics::Sources sources{bus_.counts(), 0};
      if (health_) {
        const auto health = health_();
        sources.netlink_resyncs = health.value("netlink_resyncs", uint64_t{0});
        sources.rescans = health.value("rescans", uint64_t{0});
      }
      net::Response res{http::status::ok, req.version()};
      res.set(http::field::server, "berthd");
      res.set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
      res.keep_alive(req.keep_alive());
      res.body() = metrics_->scrape(engine_.ledger(), engine_.context().inventory, sources);
      res.prepare_payload();
      co_return res;
    }
    if (parts.empty() || parts[0] != "v1")
      co_return error_response(req, ErrorCode::not_found, "no route " + std::string(req.target()));
    const bool privileged =
        peer.local && (peer.uid == 0 || (mutators_ && peer.in_group(*mutators_)));
    if (mutating && !privileged && !may_attach_own(parts, peer))
      co_return error_response(
          req, ErrorCode::forbidden,
          "uid " + std::to_string(peer.uid) + " may read but not change berths (needs root" +
              (config_.control_group ? " or group " + *config_.control_group : std::string()) +
              ")");
    if (parts.size() == 2 && parts[1] == "health") {
      if (mutating) co_return error_response(req, ErrorCode::method_not_allowed, "use GET");
      nlohmann::json health = {{"status", "ok"}, {"berths", engine_.ledger().berths.size()}};
      if (health_) health.update(health_());
      co_return ok_response(req, health);
    }
    if (parts.size() == 2 && parts[1] == "runners") {
      if (mutating) co_return error_response(req, ErrorCode::method_not_allowed, "use GET");
      if (!runners_)
        co_return error_response(req, ErrorCode::not_found,
                                 "no CI runners here: berthd's config has no \"github\" section");
      co_return ok_response(req, runners_());
    }
    if (parts.size() == 2 && parts[1] == "events") {
      if (mutating) co_return error_response(req, ErrorCode::method_not_allowed, "use GET");
      uint64_t since = bus_.last_seq();
      std::string_view target = req.target();
      const bool follow = target.find("follow=0") == std::string_view::npos;
      if (auto q = target.find("since="); q != std::string_view::npos) {
        try {
          since = std::stoull(std::string(target.substr(q + 6)));
        } catch (const std::exception&) {
          co_return error_response(req, ErrorCode::bad_request,
                                   "query 'since': must be an event sequence number");
        }
      } else if (auto last = req.find("Last-Event-ID"); last != req.end()) {
        try {
          since = std::stoull(std::string(last->value()));
        } catch (const std::exception&) {
        }
      }
      net::Response head{http::status::ok, req.version()};
      head.set(http::field::server, "berthd");
      head.set(http::field::content_type, "text/event-stream");
      head.set(http::field::cache_control, "no-cache");
      auto ex = co_await asio::this_coro::executor;
      co_return net::Reply(std::move(head), std::make_shared<EventStream>(ex, bus_, since, follow));
    }
    if (parts.size() == 3 && parts[1] == "standing" && parts[2] == "start") {
      if (method != http::verb::post)
        co_return error_response(req, ErrorCode::method_not_allowed, "use POST");
      co_return co_await standing_start(req);
    }
    if (parts.size() == 3 && parts[1] == "slurm") {
      if (method != http::verb::post)
        co_return error_response(req, ErrorCode::method_not_allowed, "use POST");
      if (parts[2] == "prolog") co_return co_await slurm_prolog(req, peer);
      if (parts[2] == "epilog") co_return co_await slurm_epilog(req);
      co_return error_response(req, ErrorCode::not_found,
                               "no route " + std::string(req.target()) + " (prolog, epilog)");
    }
    if (parts.size() == 2 && parts[1] == "check-driver") {
      if (mutating) co_return error_response(req, ErrorCode::method_not_allowed, "use GET");
      co_return co_await check_driver_route(req);
    }
    if (parts.size() == 2 && parts[1] == "usage") {
      if (mutating) co_return error_response(req, ErrorCode::method_not_allowed, "use GET");
      if (!usage_) co_return error_response(req, ErrorCode::not_found, "no usage here");
      co_return ok_response(req, usage_->render(engine_.ledger(), engine_.context().inventory));
    }
    if (parts.size() == 2 && parts[1] == "cdi") {
      if (mutating) co_return error_response(req, ErrorCode::method_not_allowed, "use GET");
      co_return ok_response(req, cdi_spec(engine_.ledger(), engine_.context().inventory,
                                          {config_.cdi_hook, config_.control_socket}));
    }
    if (parts.size() == 2 && parts[1] == "links") {
      if (mutating) co_return error_response(req, ErrorCode::method_not_allowed, "use GET");
      co_return ok_response(req, {{"links", links_ ? links_() : nlohmann::json::array()}});
    }
    if (parts.size() == 3 && parts[1] == "inventory" && parts[2] == "rescan") {
      if (method != http::verb::post)
        co_return error_response(req, ErrorCode::method_not_allowed, "use POST");
      co_return co_await rescan_route(req);
    }
    if (parts.size() == 2 && parts[1] == "inventory") {
      if (mutating) co_return error_response(req, ErrorCode::method_not_allowed, "use GET");
      auto view = inventory_view(engine_.context().inventory, engine_.ledger());
      view["warnings"] = warnings_;
      co_return ok_response(req, view);
    }
    if (parts.size() == 2 && parts[1] == "berths") {
      if (mutating)
        co_return error_response(req, ErrorCode::method_not_allowed,
                                 "use GET; create with PUT /v1/berths/{kind}/{id}");
      // Concatenated from each berth's rendered view (kept until the ledger changes).
      std::string body = "{\"berths\":[";
      bool first = true;
      for (const auto& [owner, b] : engine_.ledger().berths) {
        if (!first) body += ',';
        first = false;
        body += engine_.view_text(owner);
      }
      body += "]}\n";
      co_return net::json_response(200, body, req.version(), req.keep_alive());
    }
    if ((parts.size() == 4 || parts.size() == 5) && parts[1] == "berths") {
      const std::string owner = parts[2] + "/" + parts[3];
      if (auto v = validate_owner(owner); !v)
        co_return error_response(req, v.error().code, v.error().message);
      if (parts.size() == 5) {
        if (method != http::verb::post)
          co_return error_response(req, ErrorCode::method_not_allowed, "use POST");
        if (parts[4] == "attach") co_return co_await attach(req, owner, peer, privileged);
        if (parts[4] == "detach") {
          Event ev = event::Detach{0, owner};
          co_return co_await submit(req, std::move(ev));
        }
        co_return error_response(req, ErrorCode::not_found,
                                 "no action '" + parts[4] + "' (attach, detach)");
      }
      if (method == http::verb::get) {
        auto it = engine_.ledger().berths.find(owner);
        if (it == engine_.ledger().berths.end())
          co_return error_response(req, ErrorCode::unknown_owner, "no berth " + owner);
        co_return net::json_response(200, "{\"berth\":" + engine_.view_text(owner) + "}\n",
                                     req.version(), req.keep_alive());
      }
      if (method == http::verb::put) {
        auto body = parse_body(req);
        if (!body) co_return error_response(req, body.error().code, body.error().message);
        auto spec = parse_request(*body);
        if (!spec) co_return error_response(req, spec.error().code, spec.error().message);
        Event ev = event::Create{0, owner, *spec};
        co_return co_await submit(req, std::move(ev));
      }
      if (method == http::verb::delete_) {
        Event ev = event::Release{0, owner};
        co_return co_await submit(req, std::move(ev));
      }
      co_return error_response(req, ErrorCode::method_not_allowed, "use GET, PUT or DELETE");
    }
    co_return error_response(req, ErrorCode::not_found, "no route " + std::string(req.target()));
  } catch (const std::exception& e) {
    spdlog::error("BERTH_HANDLER_FAILED {}", e.what());
    co_return error_response(req, ErrorCode::internal, e.what());
  }
}

}  // namespace berth::agent
