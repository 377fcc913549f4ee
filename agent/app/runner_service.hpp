#pragma once
// The CI webhook front door's adapter: deliveries in, core::github decides, and what it decides
// is performed here on the reactor, each slow thing an async child process or a worker job.
//
//   POST /v1/webhooks/github --verify HMAC--> github::on_delivery --> book written (fsync) -->
//   reply --> Start: create berth github/<job> -> JIT config -> bundle -> runc create -> attach
//                    -> runc start -> pidfd watch -> on_started
//             Stop:  runc kill/delete -> release the berth -> on_stopped -> the queue moves
//   the runner's exit (pidfd) -> on_exited -> Stop;  a timer -> on_tick (reaping)
//
// The book (runners, queue, delivery record) lives in <state_dir>/github/: a snapshot
// (runners.json) and a journal of changes since (runners.journal, written into space laid down
// ahead and flushed once per batch, folded into the snapshot now and then), so a restart loses
// nothing and starts nothing twice, and a delivery costs one small append however long the queue.
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <nlohmann/json.hpp>

#include "agent/app/config.hpp"
#include "agent/app/control_api.hpp"
#include "agent/app/github_registrar.hpp"
#include "agent/app/metrics.hpp"
#include "agent/app/worker.hpp"
#include "agent/host/journal_file.hpp"
#include "agent/host/runner_container.hpp"
#include "core/github.hpp"
#include "net/http_server.hpp"
#include "net/rate_limited_log.hpp"
#include "net/webhook_signature.hpp"

namespace berth::agent {

class RunnerService {
 public:
  RunnerService(boost::asio::io_context& io, const Config& config, std::vector<std::string> secrets,
                ControlApi& api, Worker& worker, EventBus& bus, Metrics& metrics);
  ~RunnerService();
  RunnerService(const RunnerService&) = delete;
  RunnerService& operator=(const RunnerService&) = delete;

  // Reads the book; an unreadable one is an error (berthd does not start over a lost queue).
  Status load();
  // Resumes what was running before a restart, then moves the queue and arms the reaper.
  void start();
  void stop();
  // The webhook listener's handler.
  boost::asio::awaitable<net::Reply> handle(net::Request req, net::Peer peer);
  // GET /v1/runners: every runner the book holds, queue order first.
  nlohmann::json view() const;
  const std::string& book_path() const { return path_; }

 private:
  int64_t now() const;
  void perform(std::vector<github::Action> actions);
  void apply(github::Outcome o);
  boost::asio::awaitable<void> save();
  void write_next();
  boost::asio::awaitable<void> off_reactor(std::function<void()> job);
  boost::asio::awaitable<void> launch(uint64_t job);
  boost::asio::awaitable<void> launch_slurm(uint64_t job);
  // Logs why, removes what the launch made, and puts the runner back in line or finishes it.
  boost::asio::awaitable<void> launch_failed(uint64_t job, std::string why, bool retry);
  boost::asio::awaitable<void> teardown(uint64_t job);
  // Container, berth and bundle gone (each step tolerant of what is already gone).
  boost::asio::awaitable<void> destroy(uint64_t job);
  boost::asio::awaitable<bool> release_berth(uint64_t job);
  boost::asio::awaitable<void> resume();
  boost::asio::awaitable<void> tick_loop();
  void watch_exit(uint64_t job, int pid);
  bool stopping(uint64_t job) const;
  const github::Flavor* flavor_of(uint64_t job) const;
  std::string bundle_dir(uint64_t job) const;

  // Marks a launch in flight until the coroutine ends, however it ends; a frame destroyed with
  // the io_context after the service is gone touches nothing.
  struct LaunchGuard {
    LaunchGuard(const std::shared_ptr<std::set<uint64_t>>& set, uint64_t id)
        : launching(set), job(id) {
      set->insert(id);
    }
    ~LaunchGuard() {
      if (auto l = launching.lock()) l->erase(job);
    }
    LaunchGuard(const LaunchGuard&) = delete;
    LaunchGuard& operator=(const LaunchGuard&) = delete;
    std::weak_ptr<std::set<uint64_t>> launching;
    uint64_t job;
  };

  boost::asio::io_context& io_;
  const Config& config_;
  const GithubConfig& gh_;
  net::WebhookKeys keys_;
  ControlApi& api_;
  Worker& worker_;
  EventBus& bus_;
  Metrics& metrics_;
  GithubRegistrar registrar_;
  RuncTool runc_;
  std::string path_;          // the snapshot
  std::string journal_path_;  // changes since the snapshot, one JSON line each
  JournalFile journal_;       // written on the worker thread only
  size_t journal_lines_ = 0;
  bool compact_ = false;
  github::Book book_;
  std::shared_ptr<std::set<uint64_t>> launching_ = std::make_shared<std::set<uint64_t>>();
  std::set<uint64_t> tearing_down_;
  std::map<uint64_t, std::unique_ptr<boost::asio::posix::stream_descriptor>> exits_;
  // Coalesced durable writes of the book: a save() returns once a write that began after it
  // was called has finished.
  uint64_t requested_ = 0;
  uint64_t written_ = 0;
  bool writing_ = false;
  std::vector<std::pair<uint64_t, std::shared_ptr<boost::asio::steady_timer>>> waiters_;
  boost::asio::steady_timer tick_;
  bool stopped_ = false;
  net::RateLimitedLog log_;
};

}  // namespace berth::agent
