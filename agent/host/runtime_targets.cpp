#include "agent/host/runtime_targets.hpp"

#include <algorithm>

#include <nlohmann/json.hpp>

namespace berth::agent {
namespace {

Error not_found(const std::string& what) {
  return make_error(ErrorCode::target_not_found, what);
}

bool valid_pid(int64_t pid) {
  return pid > 1 && pid <= (1 << 22);
}

}  // namespace

Expected<int> pid_from_runc_state(const std::string& output, const std::string& id) {
  auto state = nlohmann::json::parse(output, nullptr, false);
  if (!state.is_object() || !state.contains("pid") || !state["pid"].is_number_integer() ||
      !state.contains("status") || !state["status"].is_string())
    return make_error(ErrorCode::internal, "runc state of '" + id + "' is not runc's JSON");
  const auto status = state["status"].get<std::string>();
  if (status != "running" && status != "created" && status != "paused")
    return not_found("runc container '" + id + "' is " + status);
  if (!valid_pid(state["pid"].get<int64_t>()))
    return not_found("runc container '" + id + "' has no process");
  return state["pid"].get<int>();
}

Expected<int> pid_from_lxc_info(const std::string& output, const std::string& name) {
  std::string text = output;
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  if (text.empty()) return not_found("LXC container '" + name + "' is not running");
  if (text.find_first_not_of("0123456789") != std::string::npos || text.size() > 8)
    return make_error(ErrorCode::internal,
                      "lxc-info for '" + name + "' answered '" + text.substr(0, 80) + "'");
  const int pid = std::stoi(text);
  if (!valid_pid(pid)) return not_found("LXC container '" + name + "' has no init process");
  return pid;
}

Expected<int> pid_from_apptainer_list(const std::string& output, const std::string& name) {
  auto list = nlohmann::json::parse(output, nullptr, false);
  if (!list.is_object() || !list.contains("instances") || !list["instances"].is_array())
    return make_error(ErrorCode::internal,
                      "apptainer instance list --json did not answer {\"instances\": [...]}");
  for (const auto& i : list["instances"]) {
    if (!i.is_object() || i.value("instance", "") != name) continue;
    if (!i.contains("pid") || !i["pid"].is_number_integer() || !valid_pid(i["pid"].get<int64_t>()))
      return not_found("apptainer instance '" + name + "' has no pid");
    return i["pid"].get<int>();
  }
  return not_found("no apptainer instance named '" + name + "'");
}

std::vector<std::string> runc_state_argv(const std::string& runc, const std::string& root,
                                         const std::string& id) {
  std::vector<std::string> argv{runc};
  if (!root.empty()) argv.insert(argv.end(), {"--root", root});
  argv.insert(argv.end(), {"state", id});
  return argv;
}

std::vector<std::string> lxc_info_argv(const std::string& lxc_info, const std::string& lxcpath,
                                       const std::string& name) {
  std::vector<std::string> argv{lxc_info};
  if (!lxcpath.empty()) argv.insert(argv.end(), {"-P", lxcpath});
  argv.insert(argv.end(), {"-n", name, "-H", "-p"});
  return argv;
}

std::vector<std::string> apptainer_list_argv(const std::string& apptainer) {
  return {apptainer, "instance", "list", "--json"};
}

}  // namespace berth::agent
