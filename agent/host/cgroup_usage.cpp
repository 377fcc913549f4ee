#include "agent/host/cgroup_usage.hpp"

#include <filesystem>
#include <fstream>
#include <sstream>

namespace berth::agent {
namespace {

std::optional<uint64_t> read_number(const std::filesystem::path& p) {
  std::ifstream in(p);
  uint64_t v = 0;
  if (in >> v) return v;
  return std::nullopt;
}

std::optional<uint64_t> read_key(const std::filesystem::path& p, const std::string& key) {
  std::ifstream in(p);
  std::string k;
  uint64_t v = 0;
  while (in >> k >> v)
    if (k == key) return v;
  return std::nullopt;
}

}  // namespace

CgroupUsage read_cgroup_usage(int pid, const std::string& cgroup_root) {
  namespace fs = std::filesystem;
  CgroupUsage u;
  std::ifstream cg("/proc/" + std::to_string(pid) + "/cgroup");
  std::string unified;
  for (std::string line; std::getline(cg, line);) {
    auto a = line.find(':');
    auto b = line.find(':', a + 1);
    if (a == std::string::npos || b == std::string::npos) continue;
    const std::string controllers = "," + line.substr(a + 1, b - a - 1) + ",";
    const std::string path = line.substr(b + 1);
    if (path.find("..") != std::string::npos) continue;
    if (controllers == ",,") unified = path;
    if (controllers.find(",cpuacct,") != std::string::npos)
      for (const char* dir : {"cpu,cpuacct", "cpuacct"})
        if (auto ns = read_number(fs::path(cgroup_root) / dir / path.substr(1) / "cpuacct.usage")) {
          u.cpu_seconds = static_cast<double>(*ns) / 1e9;
          break;
        }
    if (controllers.find(",memory,") != std::string::npos)
      if (auto m = read_number(fs::path(cgroup_root) / "memory" / path.substr(1) /
                               "memory.usage_in_bytes"))
        u.memory_bytes = *m;
  }
  if (!unified.empty() && (!u.cpu_seconds || !u.memory_bytes)) {
    // Pure v2 mounts it at the root; hybrid hosts at unified/.
    for (const char* base : {"", "unified"}) {
      fs::path dir = fs::path(cgroup_root) / base / unified.substr(1);
      if (!u.cpu_seconds)
        if (auto us = read_key(dir / "cpu.stat", "usage_usec"))
          u.cpu_seconds = static_cast<double>(*us) / 1e6;
      if (!u.memory_bytes)
        if (auto m = read_number(dir / "memory.current")) u.memory_bytes = *m;
    }
  }
  return u;
}

}  // namespace berth::agent
