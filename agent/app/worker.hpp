#pragma once
// The one thread that runs what would block the reactor: host steps (netlink round trips, setns,
// cgroup writes, mknodat) and state writes with their fsyncs. Jobs run in the order posted, so a
// record saved before a step is on disk before that step runs. A job's outcome comes back to the
// reactor as a handler posted there.
#include <functional>
#include <future>
#include <thread>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include "agent/app/stay_awake.hpp"

namespace berth::agent {

class Worker {
 public:
  Worker()
      : guard_(ctx_.get_executor()),
        thread_([this] { run_staying_awake(ctx_, [this] { return stay_awake_; }); }) {}
  ~Worker() {
    guard_.reset();
    thread_.join();
  }
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Returns once every job posted before this call has run. Never from the worker's own thread.
  void drain() {
    if (std::this_thread::get_id() == thread_.get_id()) return;
    std::promise<void> ran;
    auto all_ran = ran.get_future();
    boost::asio::post(ctx_, [&ran] { ran.set_value(); });
    all_ran.wait();
  }

  // `stay_awake`: the next job is likely to follow at once (a step of an operation; see
  // stay_awake.hpp), so the thread polls a little while before it sleeps.
  void post(std::function<void()> job, bool stay_awake = false) {
    boost::asio::post(ctx_, [this, job = std::move(job), stay_awake] {
      job();
      stay_awake_ = stay_awake;  // read and written on the worker thread only
    });
  }

 private:
  boost::asio::io_context ctx_{1};
  bool stay_awake_ = false;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> guard_;
  std::thread thread_;
};

}  // namespace berth::agent
