#pragma once
// CPU time and memory of a container, read from its cgroups (v1 cpuacct and memory, or the v2
// unified hierarchy), for the status page. Absent values stay unset.
#include <cstdint>
#include <optional>
#include <string>

namespace berth::agent {

struct CgroupUsage {
  std::optional<double> cpu_seconds;
  std::optional<uint64_t> memory_bytes;
};

// The cgroups of `pid` as /proc/<pid>/cgroup names them, under `cgroup_root` (/sys/fs/cgroup).
CgroupUsage read_cgroup_usage(int pid, const std::string& cgroup_root);

}  // namespace berth::agent
