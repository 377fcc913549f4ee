#pragma once
// The one thread that runs what would block the reactor: host steps (netlink round trips, setns,
// cgroup writes, mknodat) and state writes with their fsyncs. Jobs run in the order posted, so a
// record saved before a step is on disk before that step runs. A job's outcome comes back to the
// reactor as a handler posted there.
#include <functional>
#include <thread>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

namespace berth::agent {

class Worker {
 public:
  Worker() : guard_(ctx_.get_executor()), thread_([this] { ctx_.run(); }) {}
  ~Worker() {
    guard_.reset();
    thread_.join();
  }
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  void post(std::function<void()> job) { boost::asio::post(ctx_, std::move(job)); }

 private:
  boost::asio::io_context ctx_{1};
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> guard_;
  std::thread thread_;
};

}  // namespace berth::agent
