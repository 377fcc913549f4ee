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
#include "core/request.hpp"

namespace berth::agent {

// valid_runc_id and valid_container_name are in core/request.hpp.

Expected<int> pid_from_runc_state(const std::string& output, const std::string& id);
Expected<int> pid_from_lxc_info(const std::string& output, const std::string& name);
Expected<int> pid_from_apptainer_list(const std::string& output, const std::string& name);

std::vector<std::string> runc_state_argv(const std::string& runc, const std::string& root,
                                         const std::string& id);
std::vector<std::string> lxc_info_argv(const std::string& lxc_info, const std::string& lxcpath,
                                       const std::string& name);
std::vector<std::string> apptainer_list_argv(const std::string& apptainer);

}  // namespace berth::agent
