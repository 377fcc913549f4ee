#include "tests/host/host.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include <nlohmann/json.hpp>

#include "agent/host/cgroups.hpp"
#include "agent/host/device_programs.hpp"

namespace berth::itest {
namespace fs = std::filesystem;

std::string skip_reason;

Cmd sh(const std::string& command) {
  Cmd c;
  FILE* p = ::popen((command + " 2>&1").c_str(), "r");
  if (!p) return c;
  std::array<char, 4096> buf{};
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) c.out.append(buf.data(), n);
  int status = ::pclose(p);
  c.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return c;
}

const char* to_string(CgroupMode m) {
  return m == CgroupMode::v1 ? "v1" : "v2";
}

std::string missing_for(CgroupMode m) {
  if (m == CgroupMode::v1)
    return fs::exists("/sys/fs/cgroup/devices/devices.allow")
               ? ""
               : "no cgroup v1 devices controller at /sys/fs/cgroup/devices";
  if (agent::find_unified_mount("/sys/fs/cgroup").empty())
    return "no cgroup2 mount at /sys/fs/cgroup or /sys/fs/cgroup/unified";
  if (!fs::exists("/sys/fs/cgroup/cpuset/cpuset.cpus") &&
      !fs::exists("/sys/fs/cgroup/cpuset.cpus.effective"))
    return "no cpuset controller in either cgroup version";
  return "";
}

namespace {
// Pure v2 on a hybrid host: runc sees cgroup2 at /sys/fs/cgroup in a mount namespace of its own.
// On a pure v2 host that is what /sys/fs/cgroup already is.
std::string runc_command(CgroupMode mode) {
  if (mode == CgroupMode::v1 || agent::find_unified_mount("/sys/fs/cgroup") == "/sys/fs/cgroup")
    return "runc";
  return "unshare -m --propagation private sh -c 'mount -t cgroup2 none /sys/fs/cgroup && exec "
         "\"$0\" \"$@\"' runc";
}
bool hybrid() {
  return agent::find_unified_mount("/sys/fs/cgroup") != "/sys/fs/cgroup";
}
}  // namespace

Cmd RuncContainer::runc(const std::string& args) const {
  // A process runc starts in the container (exec) keeps the v1 cgroups of whoever ran runc in
  // v2 mode: run it from the container's own, as the launch does.
  const std::string from = mode_ == CgroupMode::v2 && hybrid() && fs::exists(cpuset_dir())
                               ? "echo $$ > /sys/fs/cgroup/devices/cgroup.procs && echo $$ > " +
                                     cpuset_dir() + "/cgroup.procs && "
                               : "";
  return sh("sh -c '" + from + "exec \"$0\" \"$@\"' " + runc_command(mode_) + " " + args);
}

std::string RuncContainer::cpuset_dir() const {
  if (mode_ == CgroupMode::v2 && hybrid()) return "/sys/fs/cgroup/cpuset/berth-v2-" + id_;
  if (mode_ == CgroupMode::v2) return "/sys/fs/cgroup" + cgroup();
  return "/sys/fs/cgroup/cpuset" + cgroup();
}

std::string RuncContainer::device_rules() const {
  if (mode_ == CgroupMode::v1)
    return sh("cat /sys/fs/cgroup/devices" + cgroup() + "/devices.list").out;
  agent::DevicePrograms programs(agent::find_unified_mount("/sys/fs/cgroup"));
  auto ids = programs.attached(cgroup());
  if (!ids) return ids.error().message + "\n";
  std::string out = "device programs:";
  for (auto id : *ids) out += " " + std::to_string(id);
  return out + "\n";
}

bool RuncContainer::allows_device(unsigned major, unsigned minor) const {
  if (mode_ == CgroupMode::v1)
    return agent::devices_list_allows(
        sh("cat /sys/fs/cgroup/devices" + cgroup() + "/devices.list").out, major, minor);
  agent::DevicePrograms programs(agent::find_unified_mount("/sys/fs/cgroup"));
  auto allows = programs.allows(cgroup(), major, minor);
  return allows && allows->value_or(true);  // no program: cgroup v2 restricts nothing
}

namespace {
CgroupMode on_this_host(CgroupMode wanted) {
  const bool pure_v2 = !hybrid();
  return wanted == CgroupMode::v1 && pure_v2 ? CgroupMode::v2 : wanted;
}
}  // namespace

RuncContainer::RuncContainer(std::string id, std::string cgroup_parent, CgroupMode mode,
                             bool user_namespace)
    : id_(std::move(id)), parent_(std::move(cgroup_parent)), mode_(on_this_host(mode)) {
  bundle_ = (fs::temp_directory_path() / ("berth-bundle-" + id_)).string();
  runc("delete -f " + id_);
  fs::remove_all(bundle_);
  fs::create_directories(bundle_ + "/rootfs/bin");
  for (const char* d : {"dev", "proc", "sys", "tmp", "etc"})
    fs::create_directories(bundle_ + "/rootfs/" + d);
  fs::copy_file("/bin/busybox", bundle_ + "/rootfs/bin/busybox");
  for (const char* tool :
       {"sh", "ls", "cat", "ip", "ping", "sleep", "mknod", "test", "echo", "stat"})
    fs::create_symlink("busybox", bundle_ + "/rootfs/bin/" + tool);
  auto spec = sh("cd " + bundle_ + " && runc spec && cat config.json");
  if (spec.rc != 0) {
    error_ = "runc spec: " + spec.out;
    return;
  }
  auto j = nlohmann::json::parse(std::ifstream(bundle_ + "/config.json"));
  j["process"]["terminal"] = false;
  j["process"]["args"] = {"sleep", "1000000"};
  j["root"]["readonly"] = false;
  for (auto& [set, caps] : j["process"]["capabilities"].items())
    if (set != "ambient") caps.insert(caps.end(), {"CAP_MKNOD", "CAP_NET_RAW"});
  j["linux"]["cgroupsPath"] = cgroup();
  if (user_namespace) {
    j["linux"]["namespaces"].push_back({{"type", "user"}});
    const nlohmann::json map = {{{"containerID", 0}, {"hostID", 100000}, {"size", 65536}}};
    j["linux"]["uidMappings"] = map;
    j["linux"]["gidMappings"] = map;
    // sysfs and cgroupfs cannot be mounted from a user namespace here: the container goes without.
    auto& mounts = j["mounts"];
    for (auto it = mounts.begin(); it != mounts.end();)
      it = (*it)["type"] == "sysfs" || (*it)["type"] == "cgroup" ? mounts.erase(it) : it + 1;
    sh("chown -R 100000:100000 " + bundle_ + "/rootfs");
  }
  std::ofstream(bundle_ + "/config.json") << j.dump(1);
  std::string launch = "cd " + bundle_ + " && ";
  if (mode_ == CgroupMode::v2 && hybrid()) {
    // runc in v2 mode leaves the v1 controllers alone: the container keeps the launcher's, so
    // the launcher moves to the v1 devices root and to a cpuset cgroup of the container's own.
    const std::string cpuset = cpuset_dir();
    sh("mkdir -p " + cpuset + " && cat /sys/fs/cgroup/cpuset/cpuset.cpus > " + cpuset +
       "/cpuset.cpus && cat /sys/fs/cgroup/cpuset/cpuset.mems > " + cpuset + "/cpuset.mems");
    launch += "echo $$ > /sys/fs/cgroup/devices/cgroup.procs && echo $$ > " + cpuset +
              "/cgroup.procs && ";
  }
  auto run = sh(launch + runc_command(mode_) + " run -d " + id_ + " </dev/null >/dev/null 2>" +
                bundle_ + "/err; cat " + bundle_ + "/err");
  auto state = runc("state " + id_);
  if (state.rc != 0) {
    error_ = "runc run: " + run.out;
    return;
  }
  pid_ = nlohmann::json::parse(state.out).value("pid", 0);
}

RuncContainer::~RuncContainer() {
  runc("delete -f " + id_);
  if (mode_ == CgroupMode::v2 && hybrid()) ::rmdir(cpuset_dir().c_str());
  fs::remove_all(bundle_);
}

Cmd RuncContainer::exec(const std::string& shell_command) const {
  // The command goes through two shells in v2 mode: pass it in a file, not in quotes.
  const std::string script = bundle_ + "/rootfs/tmp/.berth-exec";
  std::ofstream(script) << shell_command << "\n";
  return runc("exec " + id_ + " sh /tmp/.berth-exec");
}

void create_vf_standins() {
  remove_vf_standins();
  std::string script;
  for (int n = 0; n < 2; ++n)
    for (int v = 0; v < 8; ++v) {
      std::string name = "bvf" + std::to_string(n) + "x" + std::to_string(v);
      script += "ip link add " + name + " type veth peer name " + name +
                "p && sysctl -qw net.ipv6.conf." + name + "p.disable_ipv6=1 && ip link set " +
                name + "p up && ";
    }
  script += "ip addr add 10.77.0.1/24 dev bvf0x0p && ip addr add 10.78.0.1/24 dev bvf1x0p";
  sh(script);
}

void remove_vf_standins() {
  for (int n = 0; n < 2; ++n)
    for (int v = 0; v < 8; ++v)
      sh("ip link del bvf" + std::to_string(n) + "x" + std::to_string(v) + "p");
}

std::string snapshot(const RuncContainer& c) {
  std::ostringstream s;
  const std::string pid = std::to_string(c.pid());
  // The peers ("<vf>p") stand for the far end of the wire: their carrier follows the VF's, as a
  // switch port's would, so their operstate is not host state that berth owns.
  s << "== host links\n"
    << sh("ip -o -d link show | grep -v 'bvf[0-9]x[0-9]p@'").out << "== host addresses\n"
    << sh("ip -o addr show").out;
  s << "== host routes\n" << sh("ip route show table all").out;
  s << "== container links\n" << sh("nsenter -t " + pid + " -n ip -o -d link show").out;
  s << "== container addresses\n" << sh("nsenter -t " + pid + " -n ip -o addr show").out;
  s << "== container routes\n" << sh("nsenter -t " + pid + " -n ip route show table all").out;
  s << "== device rules\n" << c.device_rules();
  s << "== cpuset\n"
    << sh("cat " + c.cpuset_dir() + "/cpuset.cpus " + c.cpuset_dir() + "/cpuset.mems").out;
  s << "== container /dev\n"
    << sh("ls -ln /proc/" + pid + "/root/dev | awk '{print $1, $5, $6, $NF}'").out;
  return s.str();
}

std::string diff(const std::string& before, const std::string& after) {
  auto lines = [](const std::string& text) {
    std::vector<std::string> out;
    std::istringstream in(text);
    for (std::string l; std::getline(in, l);) out.push_back(l);
    return out;
  };
  auto a = lines(before);
  auto b = lines(after);
  std::string out;
  for (const auto& l : a)
    if (std::find(b.begin(), b.end(), l) == b.end()) out += "- " + l + "\n";
  for (const auto& l : b)
    if (std::find(a.begin(), a.end(), l) == a.end()) out += "+ " + l + "\n";
  return out;
}

}  // namespace berth::itest
