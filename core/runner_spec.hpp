#pragma once
// The runner's OCI bundle config, rendered from a flavor's runner template and the berth it got:
// its CPUs and memory nodes (the cpuset runc sets at create), a memory limit, its own
// namespaces. Pure: the agent writes the result and runs runc on it.
#include <map>
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "core/github.hpp"

namespace berth::github {

// {job_id} {run_id} {repo} {labels} {runner_name} {jit_config} -> values. Values from the payload
// keep only [A-Za-z0-9._/,:=+-] (anything else becomes '_'), so a placeholder inside a shell
// command cannot become more than one word of it.
using Placeholders = std::map<std::string, std::string>;
Placeholders placeholders_for(const Runner& r, const std::string& jit_config);
std::string expand(const std::string& text, const Placeholders& values);

struct RunnerPlacement {
  std::string cpus;  // cpuset.cpus, e.g. "0-3,8"
  std::string mems;  // cpuset.mems, e.g. "0"
};

nlohmann::json runner_oci_config(const RunnerTemplate& t, const Placeholders& values,
                                 const RunnerPlacement& placement, const std::string& hostname);

}  // namespace berth::github
