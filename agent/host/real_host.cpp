#include "agent/host/real_host.hpp"

#include <fcntl.h>

#include <filesystem>

#include "agent/host/device_nodes.hpp"

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

Expected<bool> RealDeviceNodeSeam::make(int root_fd, const CharDevice& dev) {
  return make_device_node(root_fd, dev);
}

Status RealDeviceNodeSeam::remove(int root_fd, const CharDevice& dev) {
  return remove_device_node(root_fd, dev);
}

}  // namespace berth::agent
