#include "agent/host/real_host.hpp"

#include <fcntl.h>
#include <linux/netlink.h>
#include <net/if.h>
#include <sched.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <filesystem>
#include <fstream>

#include "agent/host/child_process.hpp"
#include "agent/host/device_nodes.hpp"
#include "agent/host/discovery.hpp"
#include "net/rdma_netlink.hpp"

namespace berth::agent {
namespace fs = std::filesystem;

RealLinkSeam::RealLinkSeam(std::string sysfs_root, std::string dev_root)
    : sysfs_root_(std::move(sysfs_root)),
      dev_root_(std::move(dev_root)),
      home_netns_(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC)) {}

Expected<std::unique_ptr<net::LinkOps>> RealLinkSeam::host() {
  auto l = net::Links::open_current();
  if (!l) return l.error();
  return std::unique_ptr<net::LinkOps>(new net::Links(std::move(*l)));
}

Expected<std::unique_ptr<net::LinkOps>> RealLinkSeam::in(int netns_fd) {
  auto l = net::Links::open_in(netns_fd, home_netns_.get());
  if (!l) return l.error();
  return std::unique_ptr<net::LinkOps>(new net::Links(std::move(*l)));
}

std::string RealLinkSeam::pci_of(const std::string& name) {
  std::error_code ec;
  auto target = fs::read_symlink(fs::path(sysfs_root_) / "class/net" / name / "device", ec);
  return ec ? std::string() : target.filename().string();
}

std::vector<std::string> RealLinkSeam::links_of(const std::string& pci) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e :
       fs::directory_iterator(fs::path(sysfs_root_) / "bus/pci/devices" / pci / "net", ec))
    out.push_back(e.path().filename().string());
  return out;
}

namespace {

// Runs fn on this thread from inside the namespace `netns_fd` (-1: where it is), then back.
template <typename Fn>
auto from_netns(int netns_fd, Fn&& fn) -> decltype(fn()) {
  if (netns_fd < 0) return fn();
  UniqueFd home(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
  if (!home || ::setns(netns_fd, CLONE_NEWNET) != 0)
    return make_error(ErrorCode::internal, std::string("cannot enter the container's network "
                                                       "namespace: ") +
                                               std::strerror(errno));
  auto result = fn();
  // Staying in the container's namespace would send every later host step there.
  if (::setns(home.get(), CLONE_NEWNET) != 0) std::abort();
  return result;
}

}  // namespace

Status RealRdmaSeam::move(const std::string& device, int from_netns_fd, int to_netns_fd) {
  UniqueFd own;
  if (to_netns_fd < 0) {
    own.reset(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
    if (!own) return make_error(ErrorCode::internal, "cannot open the agent's network namespace");
    to_netns_fd = own.get();
  }
  return from_netns(from_netns_fd, [&]() -> Status {
    net::RdmaSocket s;
    return s.move_to_netns(device, to_netns_fd);
  });
}

Expected<bool> RealRdmaSeam::present(const std::string& device, int netns_fd) {
  return from_netns(netns_fd, [&]() -> Expected<bool> {
    net::RdmaSocket s;
    auto all = s.devices();
    if (!all) return all.error();
    for (const auto& d : *all)
      if (d.name == device) return true;
    return false;
  });
}

Expected<std::string> RealLinkSeam::vf_guids(const std::string& vf_pci) {
  const std::string unset = "ff:ff:ff:ff:ff:ff:ff:ff";
  const fs::path dev = fs::path(sysfs_root_) / "bus/pci/devices" / vf_pci;
  auto first_line = [](const fs::path& p) {
    std::ifstream in(p);
    std::string line;
    std::getline(in, line);
    return line;
  };
  // The node GUID as its RDMA device shows it ("0011:2233:4455:6677").
  std::string node = unset;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dev / "infiniband", ec)) {
    std::string g = first_line(e.path() / "node_guid");
    std::string hex;
    for (char ch : g)
      if (ch != ':') hex += ch;
    if (hex.size() == 16) {
      node.clear();
      for (size_t i = 0; i < 16; i += 2) node += (i ? ":" : "") + hex.substr(i, 2);
    }
    break;
  }
  // The port GUID: the last 8 bytes of the IPoIB netdev's 20-byte hardware address.
  std::string port = unset;
  for (const auto& e : fs::directory_iterator(dev / "net", ec)) {
    std::string addr = first_line(e.path() / "address");
    if (addr.size() == 59) port = addr.substr(36);
    break;
  }
  return node + "|" + port;
}

// The PF's netdev on the host: its name and ifindex, which the VF messages are sent to.
Expected<std::pair<std::string, int>> RealLinkSeam::pf_link(const std::string& pf_pci) {
  const auto names = links_of(pf_pci);
  const unsigned index = names.empty() ? 0 : ::if_nametoindex(names.front().c_str());
  if (index == 0)
    return make_error(ErrorCode::internal, "the PF " + pf_pci + " has no netdev on the host");
  return std::make_pair(names.front(), static_cast<int>(index));
}

Status RealLinkSeam::set_vf_guid(const std::string& pf_pci, int vf, uint64_t guid, bool port) {
  auto pf = pf_link(pf_pci);
  if (!pf) return pf.error();
  return net::netlink_request(
      NETLINK_ROUTE, net::vf_msg::set_guid(1, pf->second, static_cast<uint32_t>(vf), guid, port),
      std::string("setting the ") + (port ? "port" : "node") + " GUID of VF " + std::to_string(vf) +
          " on " + pf->first);
}

Status RealLinkSeam::set_vf_link_state(const std::string& pf_pci, int vf, int state) {
  auto pf = pf_link(pf_pci);
  if (!pf) return pf.error();
  return net::netlink_request(
      NETLINK_ROUTE,
      net::vf_msg::set_link_state(1, pf->second, static_cast<uint32_t>(vf),
                                  static_cast<uint32_t>(state)),
      "setting the link state of VF " + std::to_string(vf) + " on " + pf->first);
}

namespace {

// One write of `text` to a sysfs attribute (bind, unbind): the kernel acts within the write.
Status write_attribute(const fs::path& file, const std::string& text, const std::string& what) {
  UniqueFd fd(::open(file.c_str(), O_WRONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd)
    return make_error(ErrorCode::internal,
                      what + ": cannot open " + file.string() + ": " + std::strerror(errno));
  if (::write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size()))
    return make_error(ErrorCode::internal,
                      what + ": writing " + file.string() + ": " + std::strerror(errno));
  return ok_status();
}

}  // namespace

Expected<Vf> RealLinkSeam::rebind_vf(const std::string& pci, const std::string& driver) {
  if (driver.empty() || driver.find('/') != std::string::npos || driver == "." || driver == "..")
    return make_error(ErrorCode::internal, "'" + driver + "' is not a driver name");
  const fs::path dev = fs::path(sysfs_root_) / "bus/pci/devices" / pci;
  const fs::path drivers = fs::path(sysfs_root_) / "bus/pci/drivers";
  std::error_code ec;
  const std::string bound = fs::read_symlink(dev / "driver", ec).filename().string();
  if (!bound.empty() && bound != driver)
    return make_error(ErrorCode::internal, "VF " + pci + " is bound to " + bound + ", not " +
                                               driver + ": not rebinding it");
  const std::string what = "rebinding VF " + pci + " to " + driver;
  if (!bound.empty())
    if (auto st = write_attribute(drivers / driver / "unbind", pci, what); !st) return st.error();
  if (auto st = write_attribute(drivers / driver / "bind", pci, what); !st) return st.error();
  // The probe runs within the write, but the netdev may be registered by a driver's own
  // auxiliary device a moment later: wait for it, up to 5 s, on the worker thread.
  std::vector<std::string> warnings;
  for (int i = 0; i < 100; ++i) {
    Vf v = discover_vf(sysfs_root_, dev_root_, pci, warnings);
    if (!v.netdev.empty()) return v;
    ::usleep(50 * 1000);
  }
  return make_error(ErrorCode::internal,
                    what + ": the VF has no netdev 5 s after binding it again");
}

Expected<NodeMade> RealDeviceNodeSeam::make(int root_fd, const CharDevice& dev) {
  return make_device_node(root_fd, dev);
}

Expected<NodeMade> RealDeviceNodeSeam::bind(int root_fd, const UserNs& ns, const CharDevice& dev) {
  return bind_device_node(root_fd, ns, dev, dev_root_ + dev.path.substr(4));
}

Status RealDeviceNodeSeam::remove(int root_fd, const CharDevice& dev, int dirs, const UserNs* ns) {
  return remove_device_node(root_fd, dev, dirs, ns);
}

Status RealRuntimeDeviceSeam::lxc(const std::string& lxcpath, const std::string& name, bool allow,
                                  unsigned major, unsigned minor) {
  std::vector<std::string> argv{lxc_cgroup_};
  if (!lxcpath.empty()) argv.insert(argv.end(), {"-P", lxcpath});
  const std::string rule = "c " + std::to_string(major) + ":" + std::to_string(minor) + " rw";
  argv.insert(argv.end(), {"-n", name, allow ? "devices.allow" : "devices.deny", rule});
  const auto r = run_blocking(std::move(argv), std::chrono::seconds(10));
  if (r.exit_code == 0) return ok_status();
  std::string why = !r.error.empty() ? r.error : "exit code " + std::to_string(r.exit_code);
  std::string out = r.output.substr(0, 512);
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return make_error(ErrorCode::attach_failed,
                    "LXC did not " + std::string(allow ? "allow" : "deny") + " " + rule +
                        " for container '" + name + "' (" + lxc_cgroup_ + ": " + why +
                        (out.empty() ? "" : ": " + out) + ")");
}

}  // namespace berth::agent
