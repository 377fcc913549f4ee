#pragma once
// RDMA netlink (NETLINK_RDMA, client RDMA_NL_NLDEV): the RDMA devices, the system's netns mode,
// and moving a device into a network namespace; plus the rtnetlink messages that configure an
// InfiniBand VF on its PF (node and port GUID, link state). Messages are built and parsed here
// (libnl's message and attribute code, the kernel's UAPI constants) so that they are tested byte
// for byte; RdmaSocket sends them, and a fake with the same interface stands in where the host
// has no RDMA.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/expected.hpp"
#include "core/guid.hpp"

namespace berth::net {

using Bytes = std::vector<uint8_t>;

struct RdmaDevice {
  uint32_t index = 0;
  std::string name;
};

// ib_core's netns_mode: exclusive (0) gives each RDMA device one namespace; shared (1, the
// default) shows every device in every namespace, so isolation is impossible.
enum class RdmaNetnsMode { exclusive, shared };

namespace rdma_msg {
// RDMA_NLDEV_CMD_GET, dumping every device.
Bytes get_devices(uint32_t seq);
// RDMA_NLDEV_CMD_SYS_GET.
Bytes sys_get(uint32_t seq);
// RDMA_NLDEV_CMD_SET with RDMA_NLDEV_ATTR_DEV_INDEX and RDMA_NLDEV_NET_NS_FD: sent from the
// namespace the device is in now.
Bytes set_netns(uint32_t seq, uint32_t dev_index, uint32_t netns_fd);

// The devices in a CMD_GET dump reply (one or more messages, ending in NLMSG_DONE).
Expected<std::vector<RdmaDevice>> parse_devices(const Bytes& reply);
Expected<RdmaNetnsMode> parse_sys(const Bytes& reply);
// An NLMSG_ERROR acknowledgement: success, or the kernel's errno as an error.
Status parse_ack(const Bytes& reply, const std::string& what);
}  // namespace rdma_msg

namespace vf_msg {
// RTM_SETLINK on the PF: IFLA_VFINFO_LIST > IFLA_VF_INFO > IFLA_VF_IB_NODE_GUID or
// IFLA_VF_IB_PORT_GUID. One GUID per message: the kernel applies only the node GUID when a
// message carries both.
Bytes set_guid(uint32_t seq, int pf_ifindex, uint32_t vf, uint64_t guid, bool port);
// IFLA_VF_LINK_STATE: 0 auto, 1 enable, 2 disable.
Bytes set_link_state(uint32_t seq, int pf_ifindex, uint32_t vf, uint32_t state);
}  // namespace vf_msg

namespace ipoib_msg {
// RTM_NEWLINK (NLM_F_CREATE | NLM_F_EXCL) of an IPoIB child `name` of the IPoIB link
// `parent_ifindex` on partition `pkey` (IFLA_LINKINFO > IFLA_INFO_KIND "ipoib", IFLA_INFO_DATA >
// IFLA_IPOIB_PKEY), what `ip link add link ib0 name ib0.8001 type ipoib pkey 0x8001` sends. The
// kernel sets the full-membership bit itself.
Bytes add_child(uint32_t seq, int parent_ifindex, const std::string& name, uint16_t pkey);
}  // namespace ipoib_msg

// One request acknowledged by the kernel (NLM_F_ACK) on a `protocol` netlink socket of the
// calling thread's namespace: success, or the kernel's error with `what`.
Status netlink_request(int protocol, const Bytes& request, const std::string& what);

// What attach needs of RDMA netlink. The real one is RdmaSocket; tests have a fake.
class RdmaOps {
 public:
  virtual ~RdmaOps() = default;
  // nullopt when the host has no RDMA (no NETLINK_RDMA: ib_core not loaded).
  virtual Expected<std::optional<RdmaNetnsMode>> netns_mode() = 0;
  virtual Expected<std::vector<RdmaDevice>> devices() = 0;
  virtual Status move_to_netns(const std::string& device, int netns_fd) = 0;
};

// NETLINK_RDMA from the calling thread's network namespace.
class RdmaSocket : public RdmaOps {
 public:
  Expected<std::optional<RdmaNetnsMode>> netns_mode() override;
  Expected<std::vector<RdmaDevice>> devices() override;
  Status move_to_netns(const std::string& device, int netns_fd) override;

 private:
  // One request, its whole reply. nullopt when the host has no NETLINK_RDMA.
  Expected<std::optional<Bytes>> exchange(const Bytes& request);
  uint32_t seq_ = 1;
};

}  // namespace berth::net
