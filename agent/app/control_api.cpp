#include "agent/app/control_api.hpp"

#include <tuple>

#include <spdlog/spdlog.h>
#include <boost/asio/async_result.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <nlohmann/json.hpp>

#include "agent/app/event_stream.hpp"
#include "agent/app/status_page.hpp"
#include "agent/host/child_process.hpp"
#include "agent/host/container.hpp"
#include "core/cdi.hpp"
#include "core/slurm.hpp"
#include "core/view.hpp"

namespace berth::agent {
namespace asio = boost::asio;
namespace http = boost::beast::http;

namespace {

net::Response error_response(const net::Request& req, ErrorCode code, const std::string& message) {
  nlohmann::json body = {{"error", {{"code", to_string(code)}, {"message", message}}}};
  return net::json_response(static_cast<unsigned>(http_status(code)), body.dump() + "\n",
                            req.version(), req.keep_alive());
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
  return error_response(req, ErrorCode::forbidden, "uid " + std::to_string(peer.uid) +
                                                        " may not attach " + owner + ": " + why);
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
  auto [error, view] = co_await asio::async_initiate<decltype(asio::use_awaitable),
                                                     void(std::optional<Error>, nlohmann::json)>(
      [&](auto handler) {
        auto shared = std::make_shared<decltype(handler)>(std::move(handler));
        engine_.submit(std::move(ev), [shared](std::optional<Error> e, nlohmann::json v) {
          // Resume the request's coroutine on its own executor, not inside the engine's dispatch.
          auto ex = asio::get_associated_executor(*shared);
          asio::post(ex, [shared, e = std::move(e), v = std::move(v)]() mutable {
            (*shared)(std::move(e), std::move(v));
          });
        });
      },
      asio::use_awaitable);
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

asio::awaitable<net::Response> ControlApi::attach(const net::Request& req,
                                                  const std::string& owner, const net::Peer& peer,
                                                  bool privileged) {
  auto body = parse_body(req);
  if (!body) co_return error_response(req, body.error().code, body.error().message);
  const auto& j = *body;
  bool has_pid = j.is_object() && j.contains("pid");
  bool has_runc = j.is_object() && j.contains("runc");
  bool has_rootfs = j.is_object() && j.contains("rootfs");
  if (!j.is_object() || has_pid == has_runc || j.size() != 1u + (has_rootfs ? 1u : 0u))
    co_return error_response(
        req, ErrorCode::bad_request,
        "attach takes exactly one of {\"pid\": N} or {\"runc\": \"ID\"}, and optionally "
        "\"rootfs\"");
  Target target;
  if (has_pid) {
    if (!j["pid"].is_number_integer() || j["pid"].get<int64_t>() <= 1 ||
        j["pid"].get<int64_t>() > (1 << 22))
      co_return error_response(req, ErrorCode::bad_request,
                               "field 'pid': must be a process id greater than 1");
    target.pid = j["pid"].get<int>();
    if (has_rootfs) {
      // Only a runtime's hook run by root knows where a container not yet switched to its root
      // has it; from anyone else it could point the agent at a directory of the host.
      if (!privileged)
        co_return forbidden(req, peer, owner, "only root may attach with 'rootfs'");
      const auto& r = j["rootfs"];
      if (!r.is_string() || r.get<std::string>().empty() || r.get<std::string>()[0] != '/' ||
          r.get<std::string>().find('\0') != std::string::npos ||
          r.get<std::string>().find("/../") != std::string::npos)
        co_return error_response(req, ErrorCode::bad_request,
                                 "field 'rootfs': must be an absolute path without '..'");
      target.rootfs = r.get<std::string>();
    }
  } else {
    if (!j["runc"].is_string() || j["runc"].get<std::string>().empty() ||
        j["runc"].get<std::string>().front() == '-')
      co_return error_response(req, ErrorCode::bad_request, "field 'runc': must be a container id");
    target.runc_id = j["runc"].get<std::string>();
    std::vector<std::string> argv{config_.runc};
    if (!config_.runc_root.empty()) argv.insert(argv.end(), {"--root", config_.runc_root});
    argv.insert(argv.end(), {"state", target.runc_id});
    const std::chrono::milliseconds timeout(10000);
    ChildResult r = co_await run_child(std::move(argv), timeout);
    if (r.exit_code != 0)
      co_return error_response(
          req, ErrorCode::target_not_found,
          "runc container '" + target.runc_id + "': " + (r.error.empty() ? r.output : r.error));
    try {
      auto state = nlohmann::json::parse(r.output);
      target.pid = state.at("pid").get<int>();
      auto status = state.at("status").get<std::string>();
      if (status != "running" && status != "created" && status != "paused")
        co_return error_response(req, ErrorCode::target_not_found,
                                 "runc container '" + target.runc_id + "' is " + status);
    } catch (const std::exception& e) {
      co_return error_response(req, ErrorCode::internal,
                               std::string("cannot read runc state: ") + e.what());
    }
  }
  auto start = process_start_time(target.pid);
  if (!start) co_return error_response(req, start.error().code, start.error().message);
  target.start_time = *start;
  if (!privileged) {
    // The workload's own user (a Slurm job's, recorded at prolog) into its own process only.
    if (auto own = check_owned_by(target.pid, peer.uid); !own)
      co_return forbidden(req, peer, owner, own.error().message);
  }
  if (auto c = check_is_container(target.pid, target.rootfs); !c)
    co_return error_response(req, c.error().code, c.error().message);
  std::tie(target.devices_cgroup, target.cpuset_cgroup) = container_cgroups(target.pid);
  // GCC 12 destroys temporaries inside a co_await expression twice: build events as named locals.
  Event ev = event::Attach{0, owner, target};
  co_return co_await submit(req, std::move(ev));
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
  auto spec = slurm_request(config_.slurm ? *config_.slurm : none, engine_.context().inventory,
                            *job);
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
    co_return ok_response(req, {{"berth", nullptr},
                                {"message", "no berth " + owner + ": nothing to release"}});
  spdlog::info("BERTH_SLURM_EPILOG job {}", job->job_id);
  Event ev = event::Release{0, owner};
  co_return co_await submit(req, std::move(ev), "slurm_epilog");
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
    co_return error_response(req, ErrorCode::forbidden,
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
      if (health_) sources.netlink_resyncs = health_().value("netlink_resyncs", uint64_t{0});
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
    if (parts.size() == 3 && parts[1] == "slurm") {
      if (method != http::verb::post)
        co_return error_response(req, ErrorCode::method_not_allowed, "use POST");
      if (parts[2] == "prolog") co_return co_await slurm_prolog(req, peer);
      if (parts[2] == "epilog") co_return co_await slurm_epilog(req);
      co_return error_response(req, ErrorCode::not_found,
                               "no route " + std::string(req.target()) + " (prolog, epilog)");
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
