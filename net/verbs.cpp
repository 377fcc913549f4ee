#include "net/verbs.hpp"

#include <endian.h>
#include <infiniband/verbs.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>

namespace berth::net {
namespace {

std::string port_state(ibv_port_state s) {
  switch (s) {
    case IBV_PORT_NOP:
      return "nop";
    case IBV_PORT_DOWN:
      return "down";
    case IBV_PORT_INIT:
      return "init";
    case IBV_PORT_ARMED:
      return "armed";
    case IBV_PORT_ACTIVE:
      return "active";
    case IBV_PORT_ACTIVE_DEFER:
      return "active_defer";
  }
  return "unknown";
}

std::string link_layer(uint8_t l) {
  switch (l) {
    case IBV_LINK_LAYER_INFINIBAND:
      return "InfiniBand";
    case IBV_LINK_LAYER_ETHERNET:
      return "Ethernet";
    default:
      return "unspecified";
  }
}

// The PCI address the device's sysfs node points at; empty for a software device.
std::string pci_of(const ibv_device* dev) {
  std::error_code ec;
  auto target =
      std::filesystem::read_symlink(std::filesystem::path(dev->ibdev_path) / "device", ec);
  if (ec) return {};
  std::string name = target.filename().string();
  // "0000:1a:00.1": domain, bus, device and function.
  return name.size() == 12 && name[4] == ':' && name[7] == ':' && name[10] == '.' ? name : "";
}

struct DeviceList {
  ibv_device** list = nullptr;
  ~DeviceList() {
    if (list) ibv_free_device_list(list);
  }
};

struct Context {
  ibv_context* ctx = nullptr;
  ~Context() {
    if (ctx) ibv_close_device(ctx);
  }
};

}  // namespace

std::string format_verbs_guid(uint64_t be_guid) {
  const uint64_t g = be64toh(be_guid);
  char out[20];
  std::snprintf(out, sizeof out, "%04x:%04x:%04x:%04x", static_cast<unsigned>(g >> 48) & 0xffff,
                static_cast<unsigned>(g >> 32) & 0xffff, static_cast<unsigned>(g >> 16) & 0xffff,
                static_cast<unsigned>(g) & 0xffff);
  return out;
}

std::vector<RdmaDevice> enumerate_rdma_devices(std::vector<std::string>& warnings) {
  std::vector<RdmaDevice> out;
  int count = 0;
  DeviceList devices;
  devices.list = ibv_get_device_list(&count);
  if (!devices.list) {
    // ENOSYS: no RDMA in this kernel; anything else is worth saying, but still no devices.
    if (errno != ENOSYS && errno != 0)
      warnings.push_back(std::string("libibverbs: cannot list RDMA devices: ") +
                         std::strerror(errno));
    return out;
  }
  for (int i = 0; i < count; ++i) {
    ibv_device* dev = devices.list[i];
    RdmaDevice d;
    d.name = ibv_get_device_name(dev);
    d.pci = pci_of(dev);
    d.node_guid = format_verbs_guid(ibv_get_device_guid(dev));
    Context c;
    c.ctx = ibv_open_device(dev);
    if (!c.ctx) {
      warnings.push_back("libibverbs: cannot open " + d.name + ": " + std::strerror(errno));
      out.push_back(std::move(d));
      continue;
    }
    ibv_device_attr attr{};
    if (int rc = ibv_query_device(c.ctx, &attr); rc != 0) {
      warnings.push_back("libibverbs: cannot query " + d.name + ": " + std::strerror(rc));
      out.push_back(std::move(d));
      continue;
    }
    d.sys_image_guid = format_verbs_guid(attr.sys_image_guid);
    for (uint8_t port = 1; port <= attr.phys_port_cnt; ++port) {
      ibv_port_attr pa{};
      if (int rc = ibv_query_port(c.ctx, port, &pa); rc != 0) {
        warnings.push_back("libibverbs: cannot query port " + std::to_string(port) + " of " +
                           d.name + ": " + std::strerror(rc));
        continue;
      }
      RdmaPort p;
      p.port = port;
      p.state = port_state(pa.state);
      p.link_layer = link_layer(pa.link_layer);
      p.lid = pa.lid;
      ibv_gid gid{};
      if (ibv_query_gid(c.ctx, port, 0, &gid) == 0)
        p.guid = format_verbs_guid(gid.global.interface_id);
      d.ports.push_back(std::move(p));
    }
    out.push_back(std::move(d));
  }
  return out;
}

}  // namespace berth::net
