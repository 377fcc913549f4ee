#pragma once
// Runs a slow command (a container runtime, a Slurm tool) as a child process without blocking the
// reactor: output through a pipe, exit through a pidfd, both async on the io_context.
#include <chrono>
#include <string>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>

namespace berth::agent {

struct ChildResult {
  int exit_code = -1;  // -1 when it could not start or was killed
  std::string output;  // stdout and stderr together
  std::string error;   // why it could not start or finish
};

// `output_path`: the child's stdout and stderr go to this file (appended) instead of a pipe, for
// a command that leaves a process holding them (runc create). No descriptor of berthd's but 0-2
// reaches the child. `extra_env` (KEY=VALUE) is added to berthd's environment for the child, so
// a secret travels there rather than in its argv, which every user can read.
boost::asio::awaitable<ChildResult> run_child(std::vector<std::string> argv,
                                              std::chrono::milliseconds timeout,
                                              std::string output_path = {},
                                              std::vector<std::string> extra_env = {});

// The same, for the worker thread: blocks until the child ends or `timeout` passes (then it is
// killed). For a short command whose answer a step waits on (lxc-cgroup).
ChildResult run_blocking(std::vector<std::string> argv, std::chrono::milliseconds timeout);

}  // namespace berth::agent
