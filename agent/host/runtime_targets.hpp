#pragma once
// How a container named by its runtime becomes a pid: the commands' output parsed into values,
// pure so that each format is tested on documented output (apptainer is not packaged for
// Debian 12). The commands themselves run as async children (agent/host/child_process.hpp).
//   runc      `runc [--root R] state ID`            -> {"pid": N, "status": "running", ...}
//   LXC       `lxc-info [-P PATH] -n NAME -H -p`    -> "N\n" (nothing when it is not running)
//   apptainer `apptainer instance list --json`      -> {"instances": [{"instance", "pid", ...}]}
#include <string>
#include <string_view>
#include <vector>

#include "core/expected.hpp"

namespace berth::agent {

// runc's own rule for container ids (^[\w+-\.]+$), so an id cannot smuggle a NUL, a slash or an
// option into the command line.
bool valid_runc_id(std::string_view id);
// LXC and apptainer names: [A-Za-z0-9][A-Za-z0-9_.-]*, at most 128.
bool valid_container_name(std::string_view name);

Expected<int> pid_from_runc_state(const std::string& output, const std::string& id);
Expected<int> pid_from_lxc_info(const std::string& output, const std::string& name);
Expected<int> pid_from_apptainer_list(const std::string& output, const std::string& name);

std::vector<std::string> runc_state_argv(const std::string& runc, const std::string& root,
                                         const std::string& id);
std::vector<std::string> lxc_info_argv(const std::string& lxc_info, const std::string& lxcpath,
                                       const std::string& name);
std::vector<std::string> apptainer_list_argv(const std::string& apptainer);

}  // namespace berth::agent
