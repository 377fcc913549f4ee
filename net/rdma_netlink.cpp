#include "net/rdma_netlink.hpp"

#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <rdma/rdma_netlink.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

#include <netlink/attr.h>
#include <netlink/msg.h>

namespace berth::net {
namespace {

struct MsgFree {
  void operator()(nl_msg* m) const { nlmsg_free(m); }
};
using Msg = std::unique_ptr<nl_msg, MsgFree>;

Msg new_msg(int type, int flags, uint32_t seq) {
  Msg m(nlmsg_alloc_simple(type, flags));
  if (m) nlmsg_hdr(m.get())->nlmsg_seq = seq;
  return m;
}

Bytes bytes_of(const Msg& m) {
  if (!m) return {};
  const nlmsghdr* h = nlmsg_hdr(m.get());
  const auto* p = reinterpret_cast<const uint8_t*>(h);
  return Bytes(p, p + h->nlmsg_len);
}

constexpr int nldev(int op) {
  return RDMA_NL_GET_TYPE(RDMA_NL_NLDEV, op);
}

Error bad_reply(const std::string& why) {
  return make_error(ErrorCode::internal, "RDMA netlink reply: " + why);
}

// Calls fn(header) for each message in `reply`; stops at NLMSG_DONE. An NLMSG_ERROR with a
// non-zero error ends the walk with that error.
template <typename Fn>
Status each_message(const Bytes& reply, const std::string& what, Fn&& fn) {
  int remaining = static_cast<int>(reply.size());
  auto* h = reinterpret_cast<nlmsghdr*>(const_cast<uint8_t*>(reply.data()));
  for (; nlmsg_ok(h, remaining); h = nlmsg_next(h, &remaining)) {
    if (h->nlmsg_type == NLMSG_DONE) return ok_status();
    if (h->nlmsg_type == NLMSG_ERROR) {
      if (h->nlmsg_len < NLMSG_LENGTH(sizeof(nlmsgerr))) return bad_reply("short error message");
      const auto* e = static_cast<const nlmsgerr*>(nlmsg_data(h));
      if (e->error != 0)
        return make_error(ErrorCode::internal, what + ": " + std::strerror(-e->error));
      continue;
    }
    if (auto s = fn(h); !s) return s;
  }
  if (remaining != 0) return bad_reply("truncated message");
  return ok_status();
}

}  // namespace

namespace rdma_msg {

Bytes get_devices(uint32_t seq) {
  return bytes_of(new_msg(nldev(RDMA_NLDEV_CMD_GET), NLM_F_REQUEST | NLM_F_DUMP, seq));
}

Bytes sys_get(uint32_t seq) {
  return bytes_of(new_msg(nldev(RDMA_NLDEV_CMD_SYS_GET), NLM_F_REQUEST | NLM_F_ACK, seq));
}

Bytes set_netns(uint32_t seq, uint32_t dev_index, uint32_t netns_fd) {
  Msg m = new_msg(nldev(RDMA_NLDEV_CMD_SET), NLM_F_REQUEST | NLM_F_ACK, seq);
  if (!m || nla_put_u32(m.get(), RDMA_NLDEV_ATTR_DEV_INDEX, dev_index) < 0 ||
      nla_put_u32(m.get(), RDMA_NLDEV_NET_NS_FD, netns_fd) < 0)
    return {};
  return bytes_of(m);
}

Expected<std::vector<RdmaDevice>> parse_devices(const Bytes& reply) {
  std::vector<RdmaDevice> out;
  auto s = each_message(reply, "listing RDMA devices", [&](nlmsghdr* h) -> Status {
    if (h->nlmsg_type != nldev(RDMA_NLDEV_CMD_GET)) return ok_status();
    nlattr* tb[RDMA_NLDEV_ATTR_MAX + 1] = {};
    if (nlmsg_parse(h, 0, tb, RDMA_NLDEV_ATTR_MAX, nullptr) < 0)
      return bad_reply("attributes do not parse");
    if (!tb[RDMA_NLDEV_ATTR_DEV_INDEX] || !tb[RDMA_NLDEV_ATTR_DEV_NAME] ||
        nla_len(tb[RDMA_NLDEV_ATTR_DEV_INDEX]) != 4)
      return bad_reply("a device without index or name");
    const auto* name = static_cast<const char*>(nla_data(tb[RDMA_NLDEV_ATTR_DEV_NAME]));
    const auto len = static_cast<size_t>(nla_len(tb[RDMA_NLDEV_ATTR_DEV_NAME]));
    out.push_back(
        {nla_get_u32(tb[RDMA_NLDEV_ATTR_DEV_INDEX]), std::string(name, strnlen(name, len))});
    return ok_status();
  });
  if (!s) return s.error();
  return out;
}

Expected<RdmaNetnsMode> parse_sys(const Bytes& reply) {
  std::optional<RdmaNetnsMode> mode;
  auto s = each_message(reply, "reading the RDMA netns mode", [&](nlmsghdr* h) -> Status {
    if (h->nlmsg_type != nldev(RDMA_NLDEV_CMD_SYS_GET)) return ok_status();
    nlattr* tb[RDMA_NLDEV_ATTR_MAX + 1] = {};
    if (nlmsg_parse(h, 0, tb, RDMA_NLDEV_ATTR_MAX, nullptr) < 0)
      return bad_reply("attributes do not parse");
    const nlattr* a = tb[RDMA_NLDEV_SYS_ATTR_NETNS_MODE];
    if (!a || nla_len(a) != 1) return bad_reply("no netns mode");
    mode = nla_get_u8(const_cast<nlattr*>(a)) ? RdmaNetnsMode::shared : RdmaNetnsMode::exclusive;
    return ok_status();
  });
  if (!s) return s.error();
  if (!mode) return bad_reply("no system attributes");
  return *mode;
}

Status parse_ack(const Bytes& reply, const std::string& what) {
  bool acked = false;
  int remaining = static_cast<int>(reply.size());
  auto* h = reinterpret_cast<nlmsghdr*>(const_cast<uint8_t*>(reply.data()));
  if (nlmsg_ok(h, remaining) && h->nlmsg_type == NLMSG_ERROR) acked = true;
  if (!acked) return bad_reply("no acknowledgement for " + what);
  return each_message(reply, what, [](nlmsghdr*) { return ok_status(); });
}

}  // namespace rdma_msg

namespace vf_msg {
namespace {

Msg setlink(uint32_t seq, int pf_ifindex) {
  Msg m = new_msg(RTM_SETLINK, NLM_F_REQUEST | NLM_F_ACK, seq);
  ifinfomsg ifi{};
  ifi.ifi_family = AF_UNSPEC;
  ifi.ifi_index = pf_ifindex;
  if (m && nlmsg_append(m.get(), &ifi, sizeof ifi, NLMSG_ALIGNTO) < 0) return nullptr;
  return m;
}

Bytes one_vf_attribute(uint32_t seq, int pf_ifindex, int type, const void* data, int len) {
  Msg m = setlink(seq, pf_ifindex);
  if (!m) return {};
  nlattr* list = nla_nest_start(m.get(), IFLA_VFINFO_LIST);
  nlattr* info = list ? nla_nest_start(m.get(), IFLA_VF_INFO) : nullptr;
  if (!info || nla_put(m.get(), type, len, data) < 0) return {};
  nla_nest_end(m.get(), info);
  nla_nest_end(m.get(), list);
  return bytes_of(m);
}

}  // namespace

Bytes set_guid(uint32_t seq, int pf_ifindex, uint32_t vf, uint64_t guid, bool port) {
  ifla_vf_guid g{};
  g.vf = vf;
  g.guid = guid;
  return one_vf_attribute(seq, pf_ifindex, port ? IFLA_VF_IB_PORT_GUID : IFLA_VF_IB_NODE_GUID, &g,
                          sizeof g);
}

Bytes set_link_state(uint32_t seq, int pf_ifindex, uint32_t vf, uint32_t state) {
  ifla_vf_link_state s{};
  s.vf = vf;
  s.link_state = state;
  return one_vf_attribute(seq, pf_ifindex, IFLA_VF_LINK_STATE, &s, sizeof s);
}

}  // namespace vf_msg

namespace ipoib_msg {

Bytes add_child(uint32_t seq, int parent_ifindex, const std::string& name, uint16_t pkey) {
  Msg m = new_msg(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, seq);
  if (!m) return {};
  ifinfomsg ifi{};
  ifi.ifi_family = AF_UNSPEC;
  if (nlmsg_append(m.get(), &ifi, sizeof ifi, NLMSG_ALIGNTO) < 0 ||
      nla_put_string(m.get(), IFLA_IFNAME, name.c_str()) < 0 ||
      nla_put_u32(m.get(), IFLA_LINK, static_cast<uint32_t>(parent_ifindex)) < 0)
    return {};
  nlattr* info = nla_nest_start(m.get(), IFLA_LINKINFO);
  if (!info || nla_put_string(m.get(), IFLA_INFO_KIND, "ipoib") < 0) return {};
  nlattr* data = nla_nest_start(m.get(), IFLA_INFO_DATA);
  if (!data || nla_put_u16(m.get(), IFLA_IPOIB_PKEY, pkey) < 0) return {};
  nla_nest_end(m.get(), data);
  nla_nest_end(m.get(), info);
  return bytes_of(m);
}

}  // namespace ipoib_msg

namespace {

// One request on a `protocol` netlink socket of the calling thread's namespace, and its whole
// reply (every part of a dump, up to NLMSG_DONE or an error). nullopt when the kernel has no such
// netlink protocol (NETLINK_RDMA without ib_core).
Expected<std::optional<Bytes>> exchange_on(int protocol, const Bytes& request,
                                           const std::string& what) {
  int fd = ::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, protocol);
  if (fd < 0) {
    if (errno == EPROTONOSUPPORT || errno == EAFNOSUPPORT) return std::optional<Bytes>{};
    return make_error(ErrorCode::internal,
                      what + ": cannot open a netlink socket: " + std::strerror(errno));
  }
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (::sendto(fd, request.data(), request.size(), 0, reinterpret_cast<sockaddr*>(&kernel),
               sizeof kernel) != static_cast<ssize_t>(request.size()))
    return make_error(ErrorCode::internal, what + ": cannot send: " + std::strerror(errno));
  const bool dump = reinterpret_cast<const nlmsghdr*>(request.data())->nlmsg_flags & NLM_F_DUMP;
  Bytes reply;
  std::vector<uint8_t> buf(32768);
  for (;;) {
    const ssize_t n = ::recv(fd, buf.data(), buf.size(), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0)
      return make_error(ErrorCode::internal, what + ": no reply: " + std::strerror(errno));
    reply.insert(reply.end(), buf.begin(), buf.begin() + n);
    int remaining = static_cast<int>(n);
    bool end = !dump;
    for (auto* h = reinterpret_cast<nlmsghdr*>(buf.data()); nlmsg_ok(h, remaining);
         h = nlmsg_next(h, &remaining))
      if (h->nlmsg_type == NLMSG_DONE || h->nlmsg_type == NLMSG_ERROR) end = true;
    if (end) return std::optional<Bytes>(std::move(reply));
  }
}

}  // namespace

Status netlink_request(int protocol, const Bytes& request, const std::string& what) {
  auto r = exchange_on(protocol, request, what);
  if (!r) return r.error();
  if (!*r) return make_error(ErrorCode::internal, what + ": this kernel has no such netlink");
  return rdma_msg::parse_ack(**r, what);
}

Expected<std::optional<Bytes>> RdmaSocket::exchange(const Bytes& request) {
  return exchange_on(NETLINK_RDMA, request, "RDMA netlink");
}

Expected<std::optional<RdmaNetnsMode>> RdmaSocket::netns_mode() {
  auto r = exchange(rdma_msg::sys_get(seq_++));
  if (!r) return r.error();
  if (!*r) return std::optional<RdmaNetnsMode>{};
  auto mode = rdma_msg::parse_sys(**r);
  if (!mode) return mode.error();
  return std::optional<RdmaNetnsMode>(*mode);
}

Expected<std::vector<RdmaDevice>> RdmaSocket::devices() {
  auto r = exchange(rdma_msg::get_devices(seq_++));
  if (!r) return r.error();
  if (!*r) return std::vector<RdmaDevice>{};
  return rdma_msg::parse_devices(**r);
}

Status RdmaSocket::move_to_netns(const std::string& device, int netns_fd) {
  auto all = devices();
  if (!all) return all.error();
  for (const auto& d : *all)
    if (d.name == device) {
      auto r = exchange(rdma_msg::set_netns(seq_++, d.index, static_cast<uint32_t>(netns_fd)));
      if (!r) return r.error();
      if (!*r) break;
      return rdma_msg::parse_ack(**r, "moving RDMA device " + device + " to another namespace");
    }
  return make_error(ErrorCode::internal,
                    "RDMA device " + device + " is not in this network namespace");
}

}  // namespace berth::net
