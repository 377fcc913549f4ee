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

RuncContainer::RuncContainer(std::string id, std::string cgroup_parent)
    : id_(std::move(id)), parent_(std::move(cgroup_parent)) {
  bundle_ = (fs::temp_directory_path() / ("berth-bundle-" + id_)).string();
  sh("runc delete -f " + id_);
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
  std::ofstream(bundle_ + "/config.json") << j.dump(1);
  auto run = sh("cd " + bundle_ + " && runc run -d " + id_ + " </dev/null >/dev/null 2>" + bundle_ +
                "/err; cat " + bundle_ + "/err");
  auto state = sh("runc state " + id_);
  if (state.rc != 0) {
    error_ = "runc run: " + run.out;
    return;
  }
  pid_ = nlohmann::json::parse(state.out).value("pid", 0);
}

RuncContainer::~RuncContainer() {
  sh("runc delete -f " + id_);
  fs::remove_all(bundle_);
}

Cmd RuncContainer::exec(const std::string& shell_command) const {
  return sh("runc exec " + id_ + " sh -c '" + shell_command + "'");
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
  s << "== devices.list\n" << sh("cat /sys/fs/cgroup/devices" + c.cgroup() + "/devices.list").out;
  s << "== cpuset\n"
    << sh("cat /sys/fs/cgroup/cpuset" + c.cgroup() + "/cpuset.cpus /sys/fs/cgroup/cpuset" +
          c.cgroup() + "/cpuset.mems")
           .out;
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
