#include "agent/host/real_host.hpp"

#include <fcntl.h>
#include <sched.h>

#include <cerrno>
#include <cstring>

#include <filesystem>

#include "agent/host/device_nodes.hpp"
#include "net/rdma_netlink.hpp"

namespace berth::agent {
namespace fs = std::filesystem;

RealLinkSeam::RealLinkSeam(std::string sysfs_root)
    : sysfs_root_(std::move(sysfs_root)),
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

Expected<bool> RealDeviceNodeSeam::make(int root_fd, const CharDevice& dev) {
  return make_device_node(root_fd, dev);
}

Status RealDeviceNodeSeam::remove(int root_fd, const CharDevice& dev) {
  return remove_device_node(root_fd, dev);
}

}  // namespace berth::agent
