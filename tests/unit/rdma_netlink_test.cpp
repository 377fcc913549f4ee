// RDMA netlink and VF configuration messages, byte for byte against the kernel's UAPI layout,
// and replies decoded as the kernel sends them.
#include "net/rdma_netlink.hpp"

#include <gtest/gtest.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <rdma/rdma_netlink.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

namespace berth::net {
namespace {

// The values the fact sheet measured against linux-libc-dev, so a header change cannot move them.
static_assert(NETLINK_RDMA == 20 && RDMA_NL_NLDEV == 5);
static_assert(RDMA_NL_GET_TYPE(RDMA_NL_NLDEV, RDMA_NLDEV_CMD_SET) == 5122);
static_assert(RDMA_NL_GET_TYPE(RDMA_NL_NLDEV, RDMA_NLDEV_CMD_SYS_SET) == 5127);
static_assert(RDMA_NLDEV_ATTR_DEV_INDEX == 1 && RDMA_NLDEV_ATTR_DEV_NAME == 2);
static_assert(RDMA_NLDEV_SYS_ATTR_NETNS_MODE == 66 && RDMA_NLDEV_NET_NS_FD == 68);
static_assert(IFLA_VFINFO_LIST == 22 && IFLA_VF_INFO == 1 && IFLA_VF_LINK_STATE == 5);
static_assert(IFLA_VF_IB_NODE_GUID == 10 && IFLA_VF_IB_PORT_GUID == 11);
static_assert(sizeof(ifla_vf_guid) == 16 && RTM_SETLINK == 19);

// A little-endian writer for expected messages, from the UAPI structs.
struct Writer {
  Bytes b;
  template <typename T>
  void put(const T& v) {
    const auto* p = reinterpret_cast<const uint8_t*>(&v);
    b.insert(b.end(), p, p + sizeof v);
  }
  void header(uint16_t type, uint16_t flags, uint32_t seq) {
    nlmsghdr h{};
    h.nlmsg_type = type;
    h.nlmsg_flags = flags;
    h.nlmsg_seq = seq;
    put(h);
  }
  void attr(uint16_t type, const void* data, uint16_t len) {
    nlattr a{static_cast<uint16_t>(NLA_HDRLEN + len), type};
    put(a);
    const auto* p = static_cast<const uint8_t*>(data);
    b.insert(b.end(), p, p + len);
    b.resize(NLA_ALIGN(b.size()));
  }
  size_t open(uint16_t type) {
    const size_t at = b.size();
    nlattr a{0, type};
    put(a);
    return at;
  }
  void close(size_t at) {
    auto len = static_cast<uint16_t>(b.size() - at);
    std::memcpy(&b[at], &len, 2);
  }
  Bytes done() {
    auto len = static_cast<uint32_t>(b.size());
    std::memcpy(b.data(), &len, 4);
    return b;
  }
};

std::string hex(const Bytes& b) {
  std::string out;
  char buf[4];
  for (uint8_t c : b) {
    std::snprintf(buf, sizeof buf, "%02x ", c);
    out += buf;
  }
  return out;
}

TEST(RdmaNetlink, SetNetnsIsCmdSetWithDevIndexAndNetNsFd) {
  Writer w;
  w.header(RDMA_NL_GET_TYPE(RDMA_NL_NLDEV, RDMA_NLDEV_CMD_SET), NLM_F_REQUEST | NLM_F_ACK, 7);
  const uint32_t index = 3, fd = 9;
  w.attr(RDMA_NLDEV_ATTR_DEV_INDEX, &index, 4);
  w.attr(RDMA_NLDEV_NET_NS_FD, &fd, 4);
  const Bytes want = w.done();
  EXPECT_EQ(want.size(), 32u);
  EXPECT_EQ(hex(rdma_msg::set_netns(7, 3, 9)), hex(want));
}

TEST(RdmaNetlink, SysGetAndDeviceDumpRequests) {
  Writer sys;
  sys.header(RDMA_NL_GET_TYPE(RDMA_NL_NLDEV, RDMA_NLDEV_CMD_SYS_GET), NLM_F_REQUEST | NLM_F_ACK, 1);
  EXPECT_EQ(hex(rdma_msg::sys_get(1)), hex(sys.done()));
  Writer get;
  get.header(RDMA_NL_GET_TYPE(RDMA_NL_NLDEV, RDMA_NLDEV_CMD_GET), NLM_F_REQUEST | NLM_F_DUMP, 2);
  EXPECT_EQ(hex(rdma_msg::get_devices(2)), hex(get.done()));
}

Bytes device_message(uint32_t seq, uint32_t index, const char* name) {
  Writer w;
  w.header(RDMA_NL_GET_TYPE(RDMA_NL_NLDEV, RDMA_NLDEV_CMD_GET), NLM_F_MULTI, seq);
  w.attr(RDMA_NLDEV_ATTR_DEV_INDEX, &index, 4);
  w.attr(RDMA_NLDEV_ATTR_DEV_NAME, name, static_cast<uint16_t>(std::strlen(name) + 1));
  const uint64_t caps = 0x1234;
  w.attr(RDMA_NLDEV_ATTR_CAP_FLAGS, &caps, 8);  // an attribute berth does not read
  return w.done();
}

Bytes done_message(uint32_t seq) {
  Writer w;
  w.header(NLMSG_DONE, NLM_F_MULTI, seq);
  const int zero = 0;
  w.put(zero);
  return w.done();
}

Bytes error_message(uint32_t seq, int error) {
  Writer w;
  w.header(NLMSG_ERROR, 0, seq);
  nlmsgerr e{};
  e.error = error;
  w.put(e);
  return w.done();
}

TEST(RdmaNetlink, ADeviceDumpReplyDecodes) {
  Bytes reply = device_message(2, 0, "mlx5_0");
  for (const Bytes& m : {device_message(2, 4, "mlx5_4"), done_message(2)})
    reply.insert(reply.end(), m.begin(), m.end());
  auto devices = rdma_msg::parse_devices(reply);
  ASSERT_TRUE(devices) << devices.error().message;
  ASSERT_EQ(devices->size(), 2u);
  EXPECT_EQ((*devices)[0].name, "mlx5_0");
  EXPECT_EQ((*devices)[1].index, 4u);
  EXPECT_EQ((*devices)[1].name, "mlx5_4");
  // Cut anywhere inside a message: an error, never a device made up of the rest.
  Bytes cut(reply.begin(), reply.begin() + 40);
  EXPECT_FALSE(rdma_msg::parse_devices(cut));
}

TEST(RdmaNetlink, TheNetnsModeAndAcknowledgementsDecode) {
  for (uint8_t mode : {0, 1}) {
    Writer w;
    w.header(RDMA_NL_GET_TYPE(RDMA_NL_NLDEV, RDMA_NLDEV_CMD_SYS_GET), 0, 1);
    w.attr(RDMA_NLDEV_SYS_ATTR_NETNS_MODE, &mode, 1);
    Bytes reply = w.done();
    const Bytes ack = error_message(1, 0);
    reply.insert(reply.end(), ack.begin(), ack.end());
    auto m = rdma_msg::parse_sys(reply);
    ASSERT_TRUE(m) << m.error().message;
    EXPECT_EQ(*m, mode ? RdmaNetnsMode::shared : RdmaNetnsMode::exclusive);
  }
  EXPECT_TRUE(rdma_msg::parse_ack(error_message(3, 0), "move"));
  auto refused = rdma_msg::parse_ack(error_message(3, -EOPNOTSUPP), "moving RDMA device mlx5_4");
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message.find("moving RDMA device mlx5_4: Operation not supported"),
            std::string::npos)
      << refused.error().message;
  EXPECT_FALSE(rdma_msg::parse_ack(done_message(3), "move"));
}

Bytes vf_message(uint32_t seq, int pf, uint16_t type, const void* data, uint16_t len) {
  Writer w;
  w.header(RTM_SETLINK, NLM_F_REQUEST | NLM_F_ACK, seq);
  ifinfomsg ifi{};
  ifi.ifi_family = AF_UNSPEC;
  ifi.ifi_index = pf;
  w.put(ifi);
  const size_t list = w.open(IFLA_VFINFO_LIST | NLA_F_NESTED);
  const size_t info = w.open(IFLA_VF_INFO | NLA_F_NESTED);
  w.attr(type, data, len);
  w.close(info);
  w.close(list);
  return w.done();
}

TEST(VfConfig, NodeAndPortGuidGoInSeparateSetlinkMessages) {
  ifla_vf_guid g{};
  g.vf = 2;
  g.guid = 0x0011223344556677ULL;
  const Bytes node = vf_message(1, 5, IFLA_VF_IB_NODE_GUID, &g, sizeof g);
  EXPECT_EQ(node.size(), 60u);
  EXPECT_EQ(hex(vf_msg::set_guid(1, 5, 2, 0x0011223344556677ULL, false)), hex(node));
  const Bytes port = vf_message(2, 5, IFLA_VF_IB_PORT_GUID, &g, sizeof g);
  EXPECT_EQ(hex(vf_msg::set_guid(2, 5, 2, 0x0011223344556677ULL, true)), hex(port));
  ifla_vf_link_state s{2, IFLA_VF_LINK_STATE_ENABLE};
  EXPECT_EQ(hex(vf_msg::set_link_state(3, 5, 2, IFLA_VF_LINK_STATE_ENABLE)),
            hex(vf_message(3, 5, IFLA_VF_LINK_STATE, &s, sizeof s)));
}

static_assert(IFLA_LINKINFO == 18 && IFLA_INFO_KIND == 1 && IFLA_INFO_DATA == 2);
static_assert(IFLA_IPOIB_PKEY == 1 && IFLA_LINK == 5 && IFLA_IFNAME == 3 && RTM_NEWLINK == 16);

// `ip link add link <parent> name ib0.8001 type ipoib pkey 0x8001`, as iproute2 sends it.
TEST(PkeyChild, NewlinkCarriesNameParentKindAndPkey) {
  Writer w;
  w.header(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, 4);
  ifinfomsg ifi{};
  ifi.ifi_family = AF_UNSPEC;
  w.put(ifi);
  w.attr(IFLA_IFNAME, "ib0.8001", 9);
  const uint32_t parent = 12;
  w.attr(IFLA_LINK, &parent, 4);
  const size_t info = w.open(IFLA_LINKINFO | NLA_F_NESTED);
  w.attr(IFLA_INFO_KIND, "ipoib", 6);
  const size_t data = w.open(IFLA_INFO_DATA | NLA_F_NESTED);
  const uint16_t pkey = 0x8001;
  w.attr(IFLA_IPOIB_PKEY, &pkey, 2);
  w.close(data);
  w.close(info);
  const Bytes expected = w.done();
  EXPECT_EQ(expected.size(), 84u);
  EXPECT_EQ(hex(ipoib_msg::add_child(4, 12, "ib0.8001", 0x8001)), hex(expected));
  // The pkey attribute, literally: length 6, type 1, 0x8001 little-endian, padding.
  EXPECT_NE(hex(expected).find("06 00 01 00 01 80 00 00"), std::string::npos);
}

TEST(VfConfig, GuidsParseFormatAndDeriveDeterministically) {
  EXPECT_EQ(parse_guid("00:11:22:33:44:55:66:77"), 0x0011223344556677ULL);
  EXPECT_EQ(format_guid(0x0011223344556677ULL), "00:11:22:33:44:55:66:77");
  for (const char* bad : {"", "00:11:22:33:44:55:66", "00-11-22-33-44-55-66-77",
                          "00:11:22:33:44:55:66:7g", "00:11:22:33:44:55:66:777"})
    EXPECT_FALSE(parse_guid(bad)) << bad;
  const uint64_t a = derive_guid("gpu01", "0000:1a:00.0", 3, 0);
  EXPECT_EQ(a, derive_guid("gpu01", "0000:1a:00.0", 3, 0));
  EXPECT_NE(a, derive_guid("gpu01", "0000:1a:00.0", 3, 1));
  EXPECT_NE(a, derive_guid("gpu02", "0000:1a:00.0", 3, 0));
  EXPECT_NE(a, derive_guid("gpu01", "0000:1a:00.0", 4, 0));
  EXPECT_NE(a, 0u);
  EXPECT_NE(a, ~uint64_t{0});
}

TEST(RdmaNetlink, AHostWithoutRdmaHasNoDevicesRatherThanAnError) {
  RdmaSocket s;
  auto mode = s.netns_mode();
  ASSERT_TRUE(mode) << mode.error().message;
  auto devices = s.devices();
  ASSERT_TRUE(devices) << devices.error().message;
  if (!*mode) {
    EXPECT_TRUE(devices->empty()) << "no NETLINK_RDMA here, so no RDMA devices";
  }
}

}  // namespace
}  // namespace berth::net
