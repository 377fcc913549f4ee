#include "net/links.hpp"

#include <linux/ethtool.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>

#include <cstdlib>
#include <cstring>
#include <vector>

#include <netlink/cache.h>
#include <netlink/errno.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/route.h>
#include <netlink/socket.h>
#include <spdlog/spdlog.h>

#include "net/rdma_netlink.hpp"

namespace berth::net {
namespace {

template <typename T, void (*Free)(T*)>
struct NlPtr {
  T* p = nullptr;
  NlPtr() = default;
  explicit NlPtr(T* x) : p(x) {}
  NlPtr(const NlPtr&) = delete;
  NlPtr& operator=(const NlPtr&) = delete;
  ~NlPtr() {
    if (p) Free(p);
  }
  T* get() const { return p; }
};

void free_link(rtnl_link* l) {
  rtnl_link_put(l);
}
void free_addr(rtnl_addr* a) {
  rtnl_addr_put(a);
}
void free_route(rtnl_route* r) {
  rtnl_route_put(r);
}
void free_nladdr(nl_addr* a) {
  nl_addr_put(a);
}
using LinkPtr = NlPtr<rtnl_link, free_link>;
using AddrPtr = NlPtr<rtnl_addr, free_addr>;
using RoutePtr = NlPtr<rtnl_route, free_route>;
using NlAddrPtr = NlPtr<nl_addr, free_nladdr>;

Error nl_error(const std::string& what, int err) {
  return make_error(ErrorCode::internal, what + ": " + nl_geterror(err));
}

Expected<nl_sock*> connect_route() {
  nl_sock* s = nl_socket_alloc();
  if (!s) return make_error(ErrorCode::internal, "cannot allocate a netlink socket");
  if (int err = nl_connect(s, NETLINK_ROUTE); err < 0) {
    nl_socket_free(s);
    return nl_error("cannot connect to rtnetlink", err);
  }
  return s;
}

Expected<nl_addr*> parse_addr(const std::string& text, int family) {
  nl_addr* a = nullptr;
  if (int err = nl_addr_parse(text.c_str(), family, &a); err < 0)
    return nl_error("bad address " + text, err);
  return a;
}

int family_of(const std::string& text) {
  return text.find(':') != std::string::npos ? AF_INET6 : AF_INET;
}

}  // namespace

Links::Links(nl_sock* sock) : sock_(sock, nl_socket_free) {}
Links::Links(Links&&) noexcept = default;
Links& Links::operator=(Links&&) noexcept = default;
Links::~Links() = default;

Expected<Links> Links::open_current() {
  auto s = connect_route();
  if (!s) return s.error();
  return Links(*s);
}

Expected<Links> Links::open_in(int netns_fd, int home_netns_fd) {
  if (::setns(netns_fd, CLONE_NEWNET) != 0)
    return make_error(
        ErrorCode::internal,
        std::string("cannot enter the container's network namespace: ") + std::strerror(errno));
  auto s = connect_route();  // the socket stays bound to the namespace it was created in
  if (::setns(home_netns_fd, CLONE_NEWNET) != 0) {
    // Staying in a container's namespace would make every later host step act on the container.
    spdlog::critical("BERTH_NETNS_RETURN_FAILED cannot return to the host network namespace: {}",
                     std::strerror(errno));
    std::abort();
  }
  if (!s) return s.error();
  return Links(*s);
}

Expected<int> Links::ifindex(const std::string& name) {
  rtnl_link* l = nullptr;
  if (int err = rtnl_link_get_kernel(sock_.get(), 0, name.c_str(), &l); err < 0) {
    if (err == -NLE_OBJ_NOTFOUND || err == -NLE_NODEV)
      return make_error(ErrorCode::target_not_found, "no link named " + name);
    return make_error(ErrorCode::internal,
                      "cannot look up link " + name + " (" + nl_geterror(err) + ")");
  }
  LinkPtr link(l);
  return rtnl_link_get_ifindex(link.get());
}

Expected<bool> Links::exists(const std::string& name) {
  auto idx = ifindex(name);
  if (idx) return true;
  if (idx.error().code == ErrorCode::target_not_found) return false;
  return idx.error();
}

Status Links::move_to(const std::string& name, int netns_fd, const std::string& new_name) {
  auto idx = ifindex(name);
  if (!idx) return idx.error();
  if (auto s = move_index(*idx, netns_fd, new_name); !s)
    return make_error(s.error().code,
                      "cannot move link " + name + " as " + new_name + ": " + s.error().message);
  return ok_status();
}

Status Links::move_index(int idx, int netns_fd, const std::string& new_name) {
  LinkPtr change(rtnl_link_alloc());
  rtnl_link_set_ifindex(change.get(), idx);
  rtnl_link_set_ns_fd(change.get(), netns_fd);
  rtnl_link_set_name(change.get(), new_name.c_str());
  LinkPtr orig(rtnl_link_alloc());
  rtnl_link_set_ifindex(orig.get(), idx);
  if (int err = rtnl_link_change(sock_.get(), orig.get(), change.get(), 0); err < 0)
    return nl_error("cannot move link " + std::to_string(idx) + " as " + new_name, err);
  return ok_status();
}

Expected<LinkIdentity> Links::identity(const std::string& name) {
  auto idx = ifindex(name);
  if (!idx) return idx.error();
  LinkIdentity id;
  id.ifindex = *idx;
  // ethtool's driver info, asked through this namespace's socket (any socket reaches the
  // device ioctls of its own namespace).
  ethtool_drvinfo info{};
  info.cmd = ETHTOOL_GDRVINFO;
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
  ifr.ifr_data = reinterpret_cast<char*>(&info);
  if (::ioctl(nl_socket_get_fd(sock_.get()), SIOCETHTOOL, &ifr) == 0) {
    id.driver.assign(info.driver, strnlen(info.driver, sizeof info.driver));
    id.bus.assign(info.bus_info, strnlen(info.bus_info, sizeof info.bus_info));
  } else if (errno != EOPNOTSUPP) {
    return make_error(ErrorCode::internal,
                      "cannot read the driver of link " + name + ": " + std::strerror(errno));
  }
  // The name may have moved to another link since the ifindex was read.
  auto again = ifindex(name);
  if (!again || *again != id.ifindex)
    return make_error(ErrorCode::conflict, "link " + name + " changed while being identified");
  return id;
}

Expected<std::string> Links::name_of(int idx) {
  rtnl_link* l = nullptr;
  int err = rtnl_link_get_kernel(sock_.get(), idx, nullptr, &l);
  if (err == -NLE_NODEV || err == -NLE_OBJ_NOTFOUND) return std::string();
  if (err < 0) return nl_error("cannot look up link " + std::to_string(idx), err);
  LinkPtr link(l);
  const char* name = rtnl_link_get_name(link.get());
  return std::string(name ? name : "");
}

std::string LinkIdentity::to_string() const {
  return "ifindex=" + std::to_string(ifindex) + " driver=" + driver + " bus=" + bus;
}

std::optional<LinkIdentity> LinkIdentity::parse(const std::string& text) {
  LinkIdentity id;
  const auto field = [&](const std::string& key) -> std::optional<std::string> {
    const std::string k = key + "=";
    size_t at = text.find(k);
    if (at == std::string::npos || (at != 0 && text[at - 1] != ' ')) return std::nullopt;
    at += k.size();
    return text.substr(at, text.find(' ', at) - at);
  };
  auto idx = field("ifindex");
  auto driver = field("driver");
  auto bus = field("bus");
  if (!idx || !driver || !bus || idx->empty() || idx->size() > 9 ||
      idx->find_first_not_of("0123456789") != std::string::npos)
    return std::nullopt;
  id.ifindex = std::stoi(*idx);
  id.driver = *driver;
  id.bus = *bus;
  return id;
}

Status Links::rename(const std::string& name, const std::string& new_name) {
  auto idx = ifindex(name);
  if (!idx) return idx.error();
  LinkPtr orig(rtnl_link_alloc());
  LinkPtr change(rtnl_link_alloc());
  rtnl_link_set_ifindex(orig.get(), *idx);
  rtnl_link_set_name(change.get(), new_name.c_str());
  if (int err = rtnl_link_change(sock_.get(), orig.get(), change.get(), 0); err < 0)
    return nl_error("cannot rename link " + name + " to " + new_name, err);
  return ok_status();
}

Status Links::flush_addresses(const std::string& name) {
  auto idx = ifindex(name);
  if (!idx) return idx.error();
  nl_cache* cache = nullptr;
  if (int err = rtnl_addr_alloc_cache(sock_.get(), &cache); err < 0)
    return nl_error("cannot list addresses", err);
  std::vector<rtnl_addr*> mine;
  for (nl_object* o = nl_cache_get_first(cache); o; o = nl_cache_get_next(o)) {
    auto* a = reinterpret_cast<rtnl_addr*>(o);
    if (rtnl_addr_get_ifindex(a) == *idx) mine.push_back(a);
  }
  Status result = ok_status();
  for (rtnl_addr* a : mine)
    if (int err = rtnl_addr_delete(sock_.get(), a, 0);
        err < 0 && err != -NLE_NOADDR && err != -NLE_OBJ_NOTFOUND && result)
      result = nl_error("cannot remove an address of " + name, err);
  nl_cache_free(cache);
  return result;
}

Expected<int> Links::mtu(const std::string& name) {
  rtnl_link* l = nullptr;
  if (int err = rtnl_link_get_kernel(sock_.get(), 0, name.c_str(), &l); err < 0)
    return nl_error("no link named " + name, err);
  LinkPtr link(l);
  return static_cast<int>(rtnl_link_get_mtu(link.get()));
}

Status Links::set_mtu(const std::string& name, int mtu) {
  auto idx = ifindex(name);
  if (!idx) return idx.error();
  LinkPtr orig(rtnl_link_alloc());
  LinkPtr change(rtnl_link_alloc());
  rtnl_link_set_ifindex(orig.get(), *idx);
  rtnl_link_set_mtu(change.get(), static_cast<unsigned>(mtu));
  if (int err = rtnl_link_change(sock_.get(), orig.get(), change.get(), 0); err < 0)
    return nl_error("cannot set MTU " + std::to_string(mtu) + " on " + name, err);
  return ok_status();
}

Status Links::set_up(const std::string& name, bool up) {
  auto idx = ifindex(name);
  if (!idx) return idx.error();
  LinkPtr orig(rtnl_link_alloc());
  LinkPtr change(rtnl_link_alloc());
  rtnl_link_set_ifindex(orig.get(), *idx);
  if (up)
    rtnl_link_set_flags(change.get(), IFF_UP);
  else
    rtnl_link_unset_flags(change.get(), IFF_UP);
  if (int err = rtnl_link_change(sock_.get(), orig.get(), change.get(), 0); err < 0)
    return nl_error(std::string("cannot set ") + name + (up ? " up" : " down"), err);
  return ok_status();
}

static Expected<rtnl_addr*> make_addr(int ifindex, const std::string& cidr) {
  auto local = parse_addr(cidr, family_of(cidr));
  if (!local) return local.error();
  NlAddrPtr l(*local);
  rtnl_addr* a = rtnl_addr_alloc();
  rtnl_addr_set_ifindex(a, ifindex);
  rtnl_addr_set_local(a, l.get());
  return a;
}

Status Links::add_address(const std::string& name, const std::string& cidr) {
  auto idx = ifindex(name);
  if (!idx) return idx.error();
  auto a = make_addr(*idx, cidr);
  if (!a) return a.error();
  AddrPtr addr(*a);
  if (int err = rtnl_addr_add(sock_.get(), addr.get(), NLM_F_EXCL); err < 0)
    return nl_error("cannot add address " + cidr + " to " + name, err);
  return ok_status();
}

Status Links::del_address(const std::string& name, const std::string& cidr) {
  auto idx = ifindex(name);
  if (!idx) return ok_status();  // gone with its link
  auto a = make_addr(*idx, cidr);
  if (!a) return a.error();
  AddrPtr addr(*a);
  int err = rtnl_addr_delete(sock_.get(), addr.get(), 0);
  if (err < 0 && err != -NLE_NOADDR && err != -NLE_OBJ_NOTFOUND && err != -NLE_NODEV)
    return nl_error("cannot remove address " + cidr + " from " + name, err);
  return ok_status();
}

static Expected<rtnl_route*> make_route(int ifindex, const std::string& dst,
                                        const std::string& via) {
  int family = family_of(via);
  auto d = parse_addr(dst, family);
  if (!d) return d.error();
  NlAddrPtr dst_addr(*d);
  auto g = parse_addr(via, family);
  if (!g) return g.error();
  NlAddrPtr gw(*g);
  rtnl_route* r = rtnl_route_alloc();
  rtnl_route_set_family(r, static_cast<uint8_t>(family));
  rtnl_route_set_dst(r, dst_addr.get());
  rtnl_route_set_table(r, RT_TABLE_MAIN);
  rtnl_route_set_protocol(r, RTPROT_STATIC);
  rtnl_route_set_scope(r, RT_SCOPE_UNIVERSE);
  rtnl_route_set_type(r, RTN_UNICAST);
  rtnl_nexthop* nh = rtnl_route_nh_alloc();
  rtnl_route_nh_set_ifindex(nh, ifindex);
  rtnl_route_nh_set_gateway(nh, gw.get());
  rtnl_route_add_nexthop(r, nh);
  return r;
}

Status Links::add_route(const std::string& name, const std::string& dst, const std::string& via) {
  auto idx = ifindex(name);
  if (!idx) return idx.error();
  auto r = make_route(*idx, dst, via);
  if (!r) return r.error();
  RoutePtr route(*r);
  if (int err = rtnl_route_add(sock_.get(), route.get(), NLM_F_EXCL); err < 0)
    return nl_error("cannot add route " + dst + " via " + via + " dev " + name, err);
  return ok_status();
}

Status Links::del_route(const std::string& name, const std::string& dst, const std::string& via) {
  auto idx = ifindex(name);
  if (!idx) return ok_status();
  auto r = make_route(*idx, dst, via);
  if (!r) return r.error();
  RoutePtr route(*r);
  int err = rtnl_route_delete(sock_.get(), route.get(), 0);
  if (err < 0 && err != -NLE_OBJ_NOTFOUND && err != -NLE_NODEV)
    return nl_error("cannot remove route " + dst + " via " + via + " dev " + name, err);
  return ok_status();
}

Status Links::add_pkey_child(const std::string& parent, const std::string& name, uint16_t pkey) {
  auto idx = ifindex(parent);
  if (!idx) return idx.error();
  // Built in rdma_netlink (libnl has no IPoIB link type); sent on this namespace's socket with
  // the sequence number it expects the acknowledgement for.
  const auto msg = ipoib_msg::add_child(nl_socket_use_seq(sock_.get()), *idx, name, pkey);
  if (msg.empty()) return make_error(ErrorCode::internal, "cannot build the IPoIB child message");
  if (int err = nl_sendto(sock_.get(), const_cast<uint8_t*>(msg.data()), msg.size()); err < 0)
    return nl_error("cannot add IPoIB child " + name + " of " + parent, err);
  if (int err = nl_wait_for_ack(sock_.get()); err < 0)
    return nl_error("cannot add IPoIB child " + name + " of " + parent, err);
  return ok_status();
}

Status Links::delete_index(int ifindex) {
  LinkPtr link(rtnl_link_alloc());
  rtnl_link_set_ifindex(link.get(), ifindex);
  int err = rtnl_link_delete(sock_.get(), link.get());
  if (err < 0 && err != -NLE_NODEV && err != -NLE_OBJ_NOTFOUND)
    return nl_error("cannot delete link " + std::to_string(ifindex), err);
  return ok_status();
}

}  // namespace berth::net
