#include "core/runner_spec.hpp"

#include <nlohmann/json.hpp>

namespace berth::github {
namespace {

using nlohmann::json;

std::string plain(const std::string& v) {
  std::string out = v;
  for (char& c : out) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    std::string_view("._/,:=+-").find(c) != std::string_view::npos;
    if (!ok) c = '_';
  }
  return out;
}

json capabilities() {
  // runc's default set (runc spec), nothing more: the runner is a workload, not an admin.
  json caps = {"CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"};
  return {{"bounding", caps}, {"effective", caps}, {"permitted", caps}};
}

}  // namespace

Placeholders placeholders_for(const Runner& r, const std::string& jit_config) {
  std::string labels;
  for (const auto& l : r.job.labels) labels += (labels.empty() ? "" : ",") + l;
  return {{"job_id", std::to_string(r.job.id)}, {"run_id", std::to_string(r.job.run_id)},
          {"repo", plain(r.job.repo)},          {"labels", plain(labels)},
          {"runner_name", plain(r.name)},       {"jit_config", plain(jit_config)}};
}

std::string expand(const std::string& text, const Placeholders& values) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    if (text[i] == '{') {
      const auto close = text.find('}', i);
      if (close != std::string::npos) {
        auto it = values.find(text.substr(i + 1, close - i - 1));
        if (it != values.end()) {
          out += it->second;
          i = close + 1;
          continue;
        }
      }
    }
    out += text[i++];
  }
  return out;
}

json runner_oci_config(const RunnerTemplate& t, const Placeholders& values,
                       const RunnerPlacement& placement, const std::string& hostname) {
  json args = json::array();
  for (const auto& a : t.args) args.push_back(expand(a, values));
  json env = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"};
  for (const auto& e : t.env) env.push_back(expand(e, values));
  json mounts = {
      {{"destination", "/proc"}, {"type", "proc"}, {"source", "proc"}},
      {{"destination", "/dev"},
       {"type", "tmpfs"},
       {"source", "tmpfs"},
       {"options", {"nosuid", "strictatime", "mode=755", "size=65536k"}}},
      {{"destination", "/dev/pts"},
       {"type", "devpts"},
       {"source", "devpts"},
       {"options", {"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}}},
      {{"destination", "/dev/shm"},
       {"type", "tmpfs"},
       {"source", "shm"},
       {"options", {"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}}},
      {{"destination", "/dev/mqueue"},
       {"type", "mqueue"},
       {"source", "mqueue"},
       {"options", {"nosuid", "noexec", "nodev"}}},
      {{"destination", "/sys"},
       {"type", "sysfs"},
       {"source", "sysfs"},
       {"options", {"nosuid", "noexec", "nodev", "ro"}}},
  };
  for (const auto& dir : t.tmpfs)
    mounts.push_back({{"destination", dir},
                      {"type", "tmpfs"},
                      {"source", "tmpfs"},
                      {"options", {"nosuid", "nodev", "mode=1777"}}});
  json namespaces = {{{"type", "pid"}}, {{"type", "ipc"}}, {{"type", "uts"}}, {{"type", "mount"}}};
  if (!t.host_network) namespaces.push_back({{"type", "network"}});
  json resources = {{"devices", {{{"allow", false}, {"access", "rwm"}}}}};
  json cpu = json::object();
  if (!placement.cpus.empty()) cpu["cpus"] = placement.cpus;
  if (!placement.mems.empty()) cpu["mems"] = placement.mems;
  if (!cpu.empty()) resources["cpu"] = cpu;
  if (t.memory_mb) resources["memory"] = {{"limit", t.memory_mb * 1024 * 1024}};
  return {{"ociVersion", "1.0.2"},
          {"process",
           {{"terminal", false},
            {"user", {{"uid", 0}, {"gid", 0}}},
            {"args", args},
            {"env", env},
            {"cwd", t.cwd},
            {"capabilities", capabilities()},
            {"noNewPrivileges", true}}},
          {"root", {{"path", t.rootfs}, {"readonly", true}}},
          {"hostname", hostname},
          {"mounts", mounts},
          {"linux",
           {{"resources", resources},
            {"namespaces", namespaces},
            {"maskedPaths",
             {"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
              "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
              "/proc/scsi"}},
            {"readonlyPaths",
             {"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}}}}};
}

}  // namespace berth::github
