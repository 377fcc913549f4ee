#pragma once
// A CI runner's container under runc, every call an async child process on the reactor:
// bundle written (config.json 0600, it may hold a registration secret), create, start, signal,
// delete, state. Container ids are "berth-runner-<job id>".
#include <optional>
#include <string>

#include <boost/asio/awaitable.hpp>
#include <nlohmann/json_fwd.hpp>

#include "core/expected.hpp"

namespace berth::agent {

struct RuncTool {
  std::string runc = "runc";
  std::string root;  // runc --root; empty: runc's default
};

std::string runner_container_id(uint64_t job_id);

// Writes `dir`/config.json (0600; `dir` made 0700). Blocking: run it off the reactor.
Status write_bundle(const std::string& dir, const nlohmann::json& config);
// Removes the bundle directory. Blocking.
void remove_bundle(const std::string& dir);

// runc create with the container's stdio in dir/output.log; the pid from dir/pid.
boost::asio::awaitable<Expected<int>> runc_create(const RuncTool& t, const std::string& id,
                                                  const std::string& dir);
boost::asio::awaitable<Status> runc_start(const RuncTool& t, const std::string& id);
boost::asio::awaitable<Status> runc_kill(const RuncTool& t, const std::string& id, int signal);
// runc delete --force: the container and what is left of its processes. Missing is fine.
boost::asio::awaitable<Status> runc_delete(const RuncTool& t, const std::string& id);
// "created", "running", "stopped", or nothing when runc does not know the id.
boost::asio::awaitable<std::optional<std::string>> runc_status(const RuncTool& t,
                                                               const std::string& id);

}  // namespace berth::agent
