#include "agent/host/runner_container.hpp"

#include <signal.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "agent/host/child_process.hpp"
#include "agent/host/state_store.hpp"

namespace berth::agent {
namespace asio = boost::asio;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

std::vector<std::string> runc_argv(const RuncTool& t, std::vector<std::string> rest) {
  std::vector<std::string> argv{t.runc};
  if (!t.root.empty()) {
    argv.push_back("--root");
    argv.push_back(t.root);
  }
  for (auto& r : rest) argv.push_back(std::move(r));
  return argv;
}

Error runc_error(const std::string& what, const ChildResult& r) {
  std::string out = r.output;
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return make_error(ErrorCode::internal,
                    "runc " + what + " failed: " + (r.error.empty() ? out : r.error));
}

}  // namespace

std::string runner_container_id(uint64_t job_id) {
  return "berth-runner-" + std::to_string(job_id);
}

Status write_bundle(const std::string& dir, const nlohmann::json& config) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return make_error(ErrorCode::internal, "cannot create " + dir + ": " + ec.message());
  ::chmod(dir.c_str(), 0700);
  return write_file_durably(dir + "/config.json", config.dump(2));
}

void remove_bundle(const std::string& dir) {
  std::error_code ec;
  fs::remove_all(dir, ec);
}

asio::awaitable<Expected<int>> runc_create(const RuncTool& t, const std::string& id,
                                           const std::string& dir) {
  const std::string pid_file = dir + "/pid";
  const std::string log = dir + "/output.log";
  std::vector<std::string> args{"create", "--bundle", dir, "--pid-file", pid_file, id};
  auto argv = runc_argv(t, std::move(args));
  auto r = co_await run_child(std::move(argv), 30s, log);
  if (r.exit_code != 0) {
    std::ifstream in(log);
    ChildResult shown = r;
    shown.output.assign(std::istreambuf_iterator<char>(in), {});
    if (shown.output.size() > 400) shown.output = shown.output.substr(shown.output.size() - 400);
    co_return runc_error("create " + id, shown);
  }
  std::ifstream in(pid_file);
  int pid = 0;
  if (!(in >> pid) || pid <= 0)
    co_return make_error(ErrorCode::internal, "runc create " + id + " wrote no pid");
  co_return pid;
}

asio::awaitable<Status> runc_start(const RuncTool& t, const std::string& id) {
  std::vector<std::string> args{"start", id};
  auto argv = runc_argv(t, std::move(args));
  auto r = co_await run_child(std::move(argv), 30s);
  if (r.exit_code != 0) co_return runc_error("start " + id, r);
  co_return ok_status();
}

asio::awaitable<Status> runc_kill(const RuncTool& t, const std::string& id, int signal) {
  std::vector<std::string> args{"kill", id, std::to_string(signal)};
  auto argv = runc_argv(t, std::move(args));
  auto r = co_await run_child(std::move(argv), 10s);
  if (r.exit_code != 0) co_return runc_error("kill " + id, r);
  co_return ok_status();
}

asio::awaitable<Status> runc_delete(const RuncTool& t, const std::string& id) {
  std::vector<std::string> args{"delete", "--force", id};
  auto argv = runc_argv(t, std::move(args));
  auto r = co_await run_child(std::move(argv), 30s);
  if (r.exit_code != 0 && r.output.find("does not exist") == std::string::npos &&
      r.output.find("not exist") == std::string::npos)
    co_return runc_error("delete " + id, r);
  co_return ok_status();
}

asio::awaitable<std::optional<std::string>> runc_status(const RuncTool& t, const std::string& id) {
  std::vector<std::string> args{"state", id};
  auto argv = runc_argv(t, std::move(args));
  auto r = co_await run_child(std::move(argv), 10s);
  if (r.exit_code != 0) co_return std::nullopt;
  auto j = nlohmann::json::parse(r.output, nullptr, false);
  if (j.is_discarded() || !j.contains("status")) co_return std::nullopt;
  co_return j["status"].get<std::string>();
}

}  // namespace berth::agent
