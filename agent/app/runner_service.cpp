#include "agent/app/runner_service.hpp"

#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <spdlog/spdlog.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "agent/host/child_process.hpp"
#include "agent/host/state_store.hpp"
#include "core/runner_spec.hpp"
#include "net/webhook_payload.hpp"
#include "net/webhook_signature.hpp"

namespace berth::agent {
namespace asio = boost::asio;
namespace http = boost::beast::http;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

net::Response reply_json(const net::Request& req, unsigned status, const json& body) {
  return net::json_response(status, body.dump() + "\n", req.version(), req.keep_alive());
}

net::Response reply_error(const net::Request& req, ErrorCode code, const std::string& message) {
  return net::json_response(static_cast<unsigned>(http_status(code)),
                            net::error_body(to_string(code), message), req.version(),
                            req.keep_alive());
}

std::string first_line(std::string text) {
  if (auto nl = text.find('\n'); nl != std::string::npos) text.resize(nl);
  return text.substr(0, 300);
}

}  // namespace

RunnerService::RunnerService(asio::io_context& io, const Config& config,
                             std::vector<std::string> secrets, ControlApi& api, Worker& worker,
                             EventBus& bus, Metrics& metrics)
    : io_(io),
      config_(config),
      gh_(*config.github),
      keys_(secrets),
      api_(api),
      worker_(worker),
      bus_(bus),
      metrics_(metrics),
      registrar_(*config.github),
      runc_{config.runc, config.runc_root},
      path_(config.state_dir + "/github/runners.json"),
      journal_path_(config.state_dir + "/github/runners.journal"),
      journal_(journal_path_),
      tick_(io) {}

RunnerService::~RunnerService() = default;

int64_t RunnerService::now() const {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Status RunnerService::load() {
  auto read = [](const std::string& path, std::string& text) {
    std::ifstream in(path);
    if (!in) return false;
    std::stringstream ss;
    ss << in.rdbuf();
    text = ss.str();
    return true;
  };
  std::string text;
  if (read(path_, text)) {
    auto j = json::parse(text, nullptr, false);
    if (j.is_discarded())
      return make_error(ErrorCode::internal, "runner book " + path_ + " is not valid JSON");
    auto book = github::book_from_json(j);
    if (!book) return make_error(ErrorCode::internal, path_ + ": " + book.error().message);
    book_ = std::move(*book);
  }
  if (read(journal_path_, text)) {
    auto applied = github::replay_journal(book_, std::string(journal_text(text)),
                                          gh_.settings.deliveries_kept);
    if (!applied)
      return make_error(ErrorCode::internal, journal_path_ + ": " + applied.error().message);
    journal_lines_ = *applied;
  }
  book_.dirty.clear();
  book_.new_deliveries.clear();
  compact_ = true;  // the first write folds the journal into a fresh snapshot
  return ok_status();
}

void RunnerService::start() {
  asio::co_spawn(
      io_,
      [this]() -> asio::awaitable<void> {
        co_await resume();
        co_await tick_loop();
      },
      asio::detached);
}

void RunnerService::stop() {
  stopped_ = true;
  tick_.cancel();
}

std::string RunnerService::bundle_dir(uint64_t job) const {
  return config_.runtime_dir + "/runners/" + std::to_string(job);
}

const github::Flavor* RunnerService::flavor_of(uint64_t job) const {
  auto it = book_.runners.find(job);
  if (it == book_.runners.end()) return nullptr;
  for (const auto& f : gh_.settings.flavors)
    if (f.name == it->second.flavor) return &f;
  return nullptr;
}

bool RunnerService::stopping(uint64_t job) const {
  auto it = book_.runners.find(job);
  return it == book_.runners.end() || it->second.state == github::State::stopping;
}

// ---- the book on disk ------------------------------------------------------------------

asio::awaitable<void> RunnerService::save() {
  const uint64_t want = ++requested_;
  if (!writing_) write_next();
  if (written_ >= want) co_return;
  auto done = std::make_shared<asio::steady_timer>(io_, asio::steady_timer::time_point::max());
  waiters_.emplace_back(want, done);
  auto [ec] = co_await done->async_wait(asio::as_tuple(asio::use_awaitable));
  (void)ec;
}

void RunnerService::write_next() {
  writing_ = true;
  const uint64_t gen = requested_;
  auto finish = [this, gen](std::string error) {
    if (!error.empty()) {
      spdlog::error("BERTH_RUNNER_BOOK_WRITE_FAILED {}", error);
      compact_ = true;  // what this write took from the book is written whole with the next one
    }
    written_ = gen;
    writing_ = false;
    for (auto it = waiters_.begin(); it != waiters_.end();) {
      if (it->first <= gen) {
        it->second->cancel();
        it = waiters_.erase(it);
      } else {
        ++it;
      }
    }
    if (requested_ > written_) write_next();
  };
  if (compact_ || journal_lines_ > 4096 + 2 * book_.runners.size()) {
    // The whole book as a snapshot, then an empty journal: serialized on the worker from a copy.
    (void)github::take_journal(book_);
    compact_ = false;
    journal_lines_ = 0;
    worker_.post([this, finish, book = book_] {
      auto written = write_file_durably(path_, github::book_to_json(book).dump());
      if (written) written = journal_.reset();
      std::string error = written ? "" : written.error().message;
      asio::post(io_, [finish, error] { finish(error); });
    });
    return;
  }
  std::string lines = github::take_journal(book_);
  if (lines.empty()) {
    asio::post(io_, [finish] { finish({}); });
    return;
  }
  journal_lines_ += static_cast<size_t>(std::count(lines.begin(), lines.end(), '\n'));
  worker_.post([this, finish, lines = std::move(lines)] {
    auto appended = journal_.append(lines);
    std::string error = appended ? "" : appended.error().message;
    asio::post(io_, [finish, error] { finish(error); });
  });
}

asio::awaitable<void> RunnerService::off_reactor(std::function<void()> job) {
  auto done = std::make_shared<asio::steady_timer>(io_, asio::steady_timer::time_point::max());
  worker_.post([this, done, job = std::move(job)] {
    job();
    asio::post(io_, [done] { done->cancel(); });
  });
  auto [ec] = co_await done->async_wait(asio::as_tuple(asio::use_awaitable));
  (void)ec;
}

// ---- the loop: outcomes in, actions out ---------------------------------------------------

void RunnerService::apply(github::Outcome o) {
  if (o.changed)
    asio::co_spawn(
        io_, [this]() -> asio::awaitable<void> { co_await save(); }, asio::detached);
  perform(std::move(o.actions));
}

void RunnerService::perform(std::vector<github::Action> actions) {
  for (auto& a : actions) {
    if (auto* start = std::get_if<github::gh::Start>(&a)) {
      const uint64_t job = start->job_id;
      if (launching_->count(job)) continue;
      const auto* f = flavor_of(job);
      auto run = f && f->backend == github::Backend::slurm ? launch_slurm(job) : launch(job);
      asio::co_spawn(io_, std::move(run), asio::detached);
    } else if (auto* stop = std::get_if<github::gh::Stop>(&a)) {
      const uint64_t job = stop->job_id;
      spdlog::info("BERTH_RUNNER_STOPPING job {}: {}", job, stop->why);
      if (stop->why.starts_with("reaped")) {
        spdlog::warn("BERTH_RUNNER_REAPED job {} ({}): {}", job,
                     book_.runners.count(job) ? book_.runners.at(job).name : "?", stop->why);
        metrics_.runner("reaped");
      }
      // A launch in flight sees the stop between its steps and tears down itself.
      if (launching_->count(job) || tearing_down_.count(job)) continue;
      asio::co_spawn(io_, teardown(job), asio::detached);
    }
  }
}

// ---- the webhook ---------------------------------------------------------------------------

asio::awaitable<net::Reply> RunnerService::handle(net::Request req, net::Peer peer) {
  try {
    const std::string target(req.target());
    const std::string path = target.substr(0, target.find('?'));
    if (path == "/v1/health") {
      if (req.method() != http::verb::get)
        co_return reply_error(req, ErrorCode::method_not_allowed, "use GET");
      co_return reply_json(req, 200, {{"status", "ok"}});
    }
    if (path != "/v1/webhooks/github")
      co_return reply_error(req, ErrorCode::not_found,
                            "no route " + path + "; GitHub delivers to POST /v1/webhooks/github");
    if (req.method() != http::verb::post)
      co_return reply_error(req, ErrorCode::method_not_allowed, "use POST");
    // The signature first, over the raw body: nothing of an unsigned body is parsed.
    const auto check = keys_.check(req["X-Hub-Signature-256"], req.body());
    if (check != net::SignatureCheck::valid) {
      metrics_.webhook("bad_signature");
      const std::string why =
          check == net::SignatureCheck::missing ? "X-Hub-Signature-256 is missing"
          : check == net::SignatureCheck::malformed
              ? "X-Hub-Signature-256 is not sha256= and 64 hex digits"
              : "X-Hub-Signature-256 does not match the body under the configured secret";
      log_.warn("BERTH_WEBHOOK_REFUSED",
                [&] { return "delivery from " + peer.address + " refused: " + why; });
      co_return reply_error(req, ErrorCode::bad_signature, why);
    }
    github::Delivery d;
    d.id = std::string(req["X-GitHub-Delivery"]);
    d.event = std::string(req["X-GitHub-Event"]);
    d.payload = net::parse_webhook_payload(req.body());
    if (d.payload.is_discarded() || !d.payload.is_object()) {
      metrics_.webhook("bad_request");
      co_return reply_error(req, ErrorCode::bad_json, "the delivery's body is not a JSON object");
    }
    if (d.event.empty()) {
      metrics_.webhook("bad_request");
      co_return reply_error(req, ErrorCode::bad_request, "X-GitHub-Event is missing");
    }
    auto out = github::on_delivery(book_, gh_.settings, d, now());
    // Durable before the reply: GitHub does not redeliver by itself.
    if (out.changed) co_await save();
    perform(std::move(out.actions));
    const std::string action = d.payload.value("action", "");
    metrics_.webhook(out.status == 200   ? "accepted"
                     : out.status == 202 ? "ignored"
                                         : "bad_request");
    spdlog::info("BERTH_WEBHOOK delivery {} {}{}: {} {}", d.id.empty() ? "-" : d.id, d.event,
                 action.empty() ? "" : "." + action, out.status, out.reason);
    if (out.status >= 400) co_return reply_error(req, ErrorCode::bad_request, out.reason);
    json body = {{"result", out.status == 200 ? "accepted" : "ignored"}, {"reason", out.reason}};
    if (!d.id.empty()) body["delivery"] = d.id;
    co_return reply_json(req, out.status, body);
  } catch (const std::exception& e) {
    spdlog::error("BERTH_WEBHOOK_FAILED {}", e.what());
    co_return reply_error(req, ErrorCode::internal, e.what());
  }
}

json RunnerService::view() const {
  std::vector<const github::Runner*> all;
  for (const auto& [id, r] : book_.runners)
    if (!r.tombstone) all.push_back(&r);
  std::sort(all.begin(), all.end(), [](auto* a, auto* b) {
    if ((a->state == github::State::finished) != (b->state == github::State::finished))
      return b->state == github::State::finished;
    return a->seq < b->seq;
  });
  json runners = json::array();
  for (const auto* r : all) {
    json j = github::runner_to_json(*r);
    j.erase("seen");
    const auto* f = flavor_of(r->job.id);
    j["backend"] = f && f->backend == github::Backend::slurm ? "slurm" : "local";
    runners.push_back(std::move(j));
  }
  size_t active = 0, queued = 0;
  for (const auto* r : all) {
    if (r->state == github::State::queued) ++queued;
    if (r->state == github::State::starting || r->state == github::State::running ||
        r->state == github::State::stopping)
      ++active;
  }
  return {{"runners", runners},
          {"active", active},
          {"queued", queued},
          {"max_runners", gh_.settings.max_runners}};
}

// ---- starting a runner -------------------------------------------------------------------

asio::awaitable<void> RunnerService::launch_failed(uint64_t job, std::string why, bool retry) {
  const std::string owner = github::berth_owner(job);
  if (!retry) {
    spdlog::error("BERTH_RUNNER_START_FAILED job {}: {}", job, why);
    metrics_.runner("start_failed");
    bus_.publish("warning", {{"owner", owner}, {"message", "runner not started: " + why}});
  } else {
    spdlog::info("BERTH_RUNNER_WAITING job {}: {}", job, why);
  }
  co_await destroy(job);
  if (stopping(job)) {
    apply(github::on_stopped(book_, gh_.settings, job, now()));
    co_return;
  }
  apply(github::on_start_failed(book_, gh_.settings, job, why, retry, now()));
}

asio::awaitable<void> RunnerService::launch(uint64_t job) {
  LaunchGuard done(launching_, job);
  const std::string owner = github::berth_owner(job);
  const std::string id = runner_container_id(job);
  const std::string dir = bundle_dir(job);
  const github::Flavor* f = flavor_of(job);
  if (!f) {
    co_await launch_failed(job, "its flavor is no longer configured", false);
    co_return;
  }
  const github::Flavor flavor = *f;  // a reload must not pull it from under the launch

  std::string create_body = flavor.request.dump();
  auto created = co_await api_.as_root(http::verb::put, "/v1/berths/" + owner, create_body);
  auto created_body = json::parse(created.body(), nullptr, false);
  if (created.result_int() >= 400) {
    const std::string code = created_body.is_object() && created_body.contains("error")
                                 ? created_body["error"].value("code", "")
                                 : "";
    const bool wait = code == "no_capacity" || code == "pool_exhausted";
    co_await launch_failed(job, "berth " + owner + ": " + first_line(created.body()), wait);
    co_return;
  }
  if (stopping(job)) {
    co_await launch_failed(job, "stopped while starting", false);
    co_return;
  }
  const json view = created_body.value("berth", created_body);

  const github::Runner runner = book_.runners.at(job);
  auto jit = co_await registrar_.jit_config(runner);
  if (!jit) {
    co_await launch_failed(job, "registration: " + jit.error().message, false);
    co_return;
  }
  if (stopping(job)) {
    co_await launch_failed(job, "stopped while starting", false);
    co_return;
  }

  const auto spec = github::runner_oci_config(
      flavor.runner, github::placeholders_for(book_.runners.at(job), *jit),
      {view.value("cpus", ""), view.value("mems", "")}, book_.runners.at(job).name);
  Status written = ok_status();
  std::function<void()> write = [&] { written = write_bundle(dir, spec); };
  co_await off_reactor(std::move(write));
  if (!written) {
    co_await launch_failed(job, written.error().message, false);
    co_return;
  }

  auto pid = co_await runc_create(runc_, id, dir);
  if (!pid) {
    co_await launch_failed(job, pid.error().message, false);
    co_return;
  }
  // Devices, VF and cpuset go in while the container waits at its exec: the runner's first
  // instruction already sees them.
  std::string attach_body = json{{"runc", id}}.dump();
  auto attached =
      co_await api_.as_root(http::verb::post, "/v1/berths/" + owner + "/attach", attach_body);
  if (attached.result_int() >= 400) {
    co_await launch_failed(job, "attach: " + first_line(attached.body()), false);
    co_return;
  }
  if (stopping(job)) {
    co_await launch_failed(job, "stopped while starting", false);
    co_return;
  }
  // (No co_await in an if's init-statement: GCC 12 destroys its temporaries twice.)
  auto started = co_await runc_start(runc_, id);
  if (!started) {
    co_await launch_failed(job, started.error().message, false);
    co_return;
  }
  watch_exit(job, *pid);
  metrics_.runner("started");
  spdlog::info("BERTH_RUNNER_STARTED job {} runner {} container {} pid {} flavor {}", job,
               book_.runners.at(job).name, id, *pid, flavor.name);
  bus_.publish("runner", {{"owner", owner}, {"state", "running"}, {"container", id}});
  // No longer launching before the outcome: a stop that came after the last check must run.
  launching_->erase(job);
  apply(github::on_started(book_, gh_.settings, job, now()));
}

asio::awaitable<void> RunnerService::launch_slurm(uint64_t job) {
  LaunchGuard done(launching_, job);
  const github::Flavor* f = flavor_of(job);
  if (!f) {
    apply(github::on_start_failed(book_, gh_.settings, job, "flavor gone", false, now()));
    co_return;
  }
  const github::Flavor flavor = *f;
  const github::Runner r = book_.runners.at(job);
  auto jit = co_await registrar_.jit_config(r);
  if (!jit) {
    spdlog::error("BERTH_RUNNER_START_FAILED job {}: registration: {}", job, jit.error().message);
    metrics_.runner("start_failed");
    apply(github::on_start_failed(book_, gh_.settings, job, "registration: " + jit.error().message,
                                  false, now()));
    co_return;
  }
  const auto values = github::placeholders_for(book_.runners.at(job), *jit);
  std::vector<std::string> argv{gh_.sbatch, "--parsable", "--job-name", runner_container_id(job),
                                "--gres=gpu:" + std::to_string(flavor.slurm.gpus)};
  if (!flavor.slurm.partition.empty()) argv.push_back("--partition=" + flavor.slurm.partition);
  for (const auto& a : flavor.slurm.sbatch_args) argv.push_back(github::expand(a, values));
  argv.push_back(flavor.slurm.script);
  // What the batch script needs, in its environment (sbatch exports it), never in argv.
  std::vector<std::string> env{"BERTH_JOB_ID=" + values.at("job_id"),
                               "BERTH_RUN_ID=" + values.at("run_id"),
                               "BERTH_REPO=" + values.at("repo"),
                               "BERTH_LABELS=" + values.at("labels"),
                               "BERTH_RUNNER_NAME=" + values.at("runner_name"),
                               "BERTH_JIT_CONFIG=" + values.at("jit_config")};
  auto res = co_await run_child(argv, 30s, {}, env);
  std::string out = res.output;
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  const std::string slurm_id = out.substr(0, out.find(';'));
  if (res.exit_code != 0 || slurm_id.empty() ||
      slurm_id.find_first_not_of("0123456789") != std::string::npos) {
    const std::string why = "sbatch: " + first_line(res.error.empty() ? out : res.error);
    spdlog::error("BERTH_RUNNER_START_FAILED job {}: {}", job, why);
    metrics_.runner("start_failed");
    apply(github::on_start_failed(book_, gh_.settings, job, why, false, now()));
    co_return;
  }
  metrics_.runner("started");
  spdlog::info("BERTH_RUNNER_STARTED job {} runner {} as Slurm job {} (partition {}, gpu:{})", job,
               r.name, slurm_id,
               flavor.slurm.partition.empty() ? "default" : flavor.slurm.partition,
               flavor.slurm.gpus);
  launching_->erase(job);
  apply(github::on_started(book_, gh_.settings, job, now(), slurm_id));
}

// ---- stopping one --------------------------------------------------------------------------

asio::awaitable<bool> RunnerService::release_berth(uint64_t job) {
  const std::string owner = github::berth_owner(job);
  // The engine may be releasing it already (the container's exit): wait that out.
  for (int i = 0; i < 100; ++i) {
    auto res = co_await api_.as_root(http::verb::delete_, "/v1/berths/" + owner, "");
    const unsigned status = res.result_int();
    if (status < 400 || status == 404) co_return true;
    auto body = json::parse(res.body(), nullptr, false);
    const std::string code =
        body.is_object() && body.contains("error") ? body["error"].value("code", "") : "";
    if (code != "busy") {
      spdlog::error("BERTH_RUNNER_RELEASE_FAILED {}: {}", owner, first_line(res.body()));
      co_return false;
    }
    asio::steady_timer pause(io_, 100ms);
    co_await pause.async_wait(asio::as_tuple(asio::use_awaitable));
  }
  co_return false;
}

asio::awaitable<void> RunnerService::destroy(uint64_t job) {
  exits_.erase(job);
  const std::string id = runner_container_id(job);
  // The berth first, while the container's namespaces live: its VF comes back to the host by
  // berth's hand, not by the kernel's when the namespace dies, and its devices leave before the
  // runner is signalled.
  co_await release_berth(job);
  auto status = co_await runc_status(runc_, id);
  if (status && *status == "running") {
    // A grace period for the runner to end its job step cleanly.
    (void)co_await runc_kill(runc_, id, SIGTERM);
    for (int i = 0; i < 50; ++i) {
      asio::steady_timer pause(io_, 100ms);
      co_await pause.async_wait(asio::as_tuple(asio::use_awaitable));
      auto now_status = co_await runc_status(runc_, id);
      if (!now_status || *now_status != "running") break;
    }
  }
  auto deleted = co_await runc_delete(runc_, id);
  if (!deleted) spdlog::error("BERTH_RUNNER_DELETE_FAILED {}: {}", id, deleted.error().message);
  const std::string dir = bundle_dir(job);
  // Named, not a temporary in the co_await: GCC 12 destroys such temporaries twice.
  std::function<void()> remove = [dir] { remove_bundle(dir); };
  co_await off_reactor(std::move(remove));
}

asio::awaitable<void> RunnerService::teardown(uint64_t job) {
  tearing_down_.insert(job);
  const auto* f = flavor_of(job);
  auto it = book_.runners.find(job);
  if (f && f->backend == github::Backend::slurm) {
    if (it != book_.runners.end() && !it->second.backend_id.empty()) {
      std::vector<std::string> argv{gh_.scancel, it->second.backend_id};
      auto r = co_await run_child(std::move(argv), 30s);
      if (r.exit_code != 0)
        spdlog::error("BERTH_RUNNER_SCANCEL_FAILED Slurm job {}: {}", it->second.backend_id,
                      first_line(r.error.empty() ? r.output : r.error));
      else
        spdlog::info("BERTH_RUNNER_SCANCELLED job {} Slurm job {}", job, it->second.backend_id);
    }
  } else {
    co_await destroy(job);
  }
  tearing_down_.erase(job);
  spdlog::info("BERTH_RUNNER_FINISHED job {}: {}", job,
               book_.runners.count(job) ? book_.runners.at(job).outcome : "");
  bus_.publish("runner", {{"owner", github::berth_owner(job)}, {"state", "finished"}});
  apply(github::on_stopped(book_, gh_.settings, job, now()));
}

void RunnerService::watch_exit(uint64_t job, int pid) {
  const int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (fd < 0) {
    apply(github::on_exited(book_, gh_.settings, job, "runner exited", now()));
    return;
  }
  auto sd = std::make_unique<asio::posix::stream_descriptor>(io_, fd);
  auto* raw = sd.get();
  exits_[job] = std::move(sd);
  raw->async_wait(asio::posix::stream_descriptor::wait_read,
                  [this, job, raw](const boost::system::error_code& ec) {
                    if (ec) return;  // unwatched
                    auto it = exits_.find(job);
                    if (it == exits_.end() || it->second.get() != raw) return;
                    exits_.erase(it);
                    metrics_.runner("exited");
                    spdlog::info("BERTH_RUNNER_EXITED job {}", job);
                    apply(github::on_exited(book_, gh_.settings, job, "runner exited", now()));
                  });
}

// ---- after a restart, and the reaper ------------------------------------------------------

asio::awaitable<void> RunnerService::resume() {
  std::vector<uint64_t> jobs;
  for (const auto& [id, r] : book_.runners)
    if (r.state == github::State::starting || r.state == github::State::running ||
        r.state == github::State::stopping)
      jobs.push_back(id);
  for (uint64_t job : jobs) {
    auto& r = book_.runners.at(job);
    const auto* f = flavor_of(job);
    if (f && f->backend == github::Backend::slurm) {
      if (r.state == github::State::starting)  // sbatch may not have run: submit it again
        apply(github::on_start_failed(book_, gh_.settings, job, "berthd restarted", true, now()));
      else if (r.state == github::State::stopping)
        asio::co_spawn(io_, teardown(job), asio::detached);
      continue;
    }
    const std::string id = runner_container_id(job);
    auto status = co_await runc_status(runc_, id);
    int pid = 0;
    std::ifstream(bundle_dir(job) + "/pid") >> pid;
    if (status && *status == "running" && pid > 0 && r.state != github::State::stopping) {
      spdlog::info("BERTH_RUNNER_RESUMED job {} container {} pid {}", job, id, pid);
      if (r.state == github::State::starting)
        apply(github::on_started(book_, gh_.settings, job, now()));
      watch_exit(job, pid);
    } else if (r.state == github::State::starting) {
      // Interrupted before its runner ran: nothing of it started, so it may start once more.
      spdlog::info("BERTH_RUNNER_RESUMED job {}: start interrupted; back in the queue", job);
      co_await destroy(job);
      apply(github::on_start_failed(book_, gh_.settings, job, "berthd restarted", true, now()));
    } else {
      spdlog::info("BERTH_RUNNER_RESUMED job {}: runner gone while berthd was down", job);
      if (r.state == github::State::stopping)
        asio::co_spawn(io_, teardown(job), asio::detached);
      else
        apply(github::on_exited(book_, gh_.settings, job, "runner gone while berthd was down",
                                now()));
    }
  }
  co_await save();
}

asio::awaitable<void> RunnerService::tick_loop() {
  const auto period =
      std::chrono::seconds(std::clamp<int64_t>(gh_.settings.reap_after_s / 3, 1, 5));
  while (!stopped_) {
    apply(github::on_tick(book_, gh_.settings, now()));
    // Slurm-backed runners have no pidfd here: ask Slurm whether their job still exists.
    std::vector<std::pair<uint64_t, std::string>> slurm;
    for (const auto& [id, r] : book_.runners) {
      const auto* f = flavor_of(id);
      if (f && f->backend == github::Backend::slurm && r.state == github::State::running &&
          !r.backend_id.empty())
        slurm.emplace_back(id, r.backend_id);
    }
    for (const auto& [job, slurm_id] : slurm) {
      std::vector<std::string> argv{gh_.squeue, "-h", "-j", slurm_id, "-o", "%T"};
      auto q = co_await run_child(std::move(argv), 10s);
      std::string state = q.output;
      while (!state.empty() && std::isspace(static_cast<unsigned char>(state.back())))
        state.pop_back();
      const bool gone = (q.exit_code == 0 && state.empty()) || state == "COMPLETED" ||
                        state == "FAILED" || state == "CANCELLED" || state == "TIMEOUT" ||
                        q.output.find("Invalid job id") != std::string::npos;
      if (gone && book_.runners.count(job) &&
          book_.runners.at(job).state == github::State::running) {
        metrics_.runner("exited");
        apply(
            github::on_exited(book_, gh_.settings, job, "Slurm job " + slurm_id + " ended", now()));
      }
    }
    tick_.expires_after(period);
    auto [ec] = co_await tick_.async_wait(asio::as_tuple(asio::use_awaitable));
    if (ec) break;
  }
}

}  // namespace berth::agent
