#include "net/link_monitor.hpp"

#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <netlink/cache.h>
#include <netlink/errno.h>
#include <netlink/msg.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/socket.h>
#include <spdlog/spdlog.h>

namespace berth::net {
namespace {

LinkState link_state(rtnl_link* l) {
  LinkState s;
  s.ifindex = rtnl_link_get_ifindex(l);
  if (const char* n = rtnl_link_get_name(l)) s.name = n;
  s.up = (rtnl_link_get_flags(l) & IFF_UP) != 0;
  s.mtu = rtnl_link_get_mtu(l);
  return s;
}

std::string addr_text(rtnl_addr* a) {
  char buf[128];
  nl_addr* local = rtnl_addr_get_local(a);
  if (!local) return {};
  return nl_addr2str(local, buf, sizeof buf);
}

struct ParseCtx {
  LinkView* view;
  std::vector<LinkChange>* changes;
  int msgtype;
};

void on_object(nl_object* obj, void* arg) {
  auto* c = static_cast<ParseCtx*>(arg);
  const std::string type = nl_object_get_type(obj);
  if (type == "route/link") {
    LinkState now = link_state(reinterpret_cast<rtnl_link*>(obj));
    auto it = c->view->find(now.ifindex);
    if (c->msgtype == RTM_DELLINK) {
      if (it == c->view->end()) return;
      c->changes->push_back({LinkChange::Kind::removed, it->second, {}});
      c->view->erase(it);
      return;
    }
    if (it == c->view->end()) {
      c->changes->push_back({LinkChange::Kind::added, {}, now});
      (*c->view)[now.ifindex] = now;
      return;
    }
    now.addresses = it->second.addresses;
    if (now == it->second) return;
    c->changes->push_back({LinkChange::Kind::changed, it->second, now});
    it->second = now;
  } else if (type == "route/addr") {
    auto* a = reinterpret_cast<rtnl_addr*>(obj);
    auto it = c->view->find(rtnl_addr_get_ifindex(a));
    if (it == c->view->end()) return;
    LinkState before = it->second;
    const std::string text = addr_text(a);
    if (c->msgtype == RTM_DELADDR)
      it->second.addresses.erase(text);
    else
      it->second.addresses.insert(text);
    if (before != it->second)
      c->changes->push_back({LinkChange::Kind::changed, before, it->second});
  }
}

}  // namespace

const char* to_string(LinkChange::Kind k) {
  switch (k) {
    case LinkChange::Kind::added:
      return "added";
    case LinkChange::Kind::removed:
      return "removed";
    case LinkChange::Kind::changed:
      return "changed";
  }
  return "changed";
}

std::vector<LinkChange> diff_links(const LinkView& before, const LinkView& after) {
  std::vector<LinkChange> out;
  for (const auto& [i, b] : before) {
    auto it = after.find(i);
    if (it == after.end())
      out.push_back({LinkChange::Kind::removed, b, {}});
    else if (!(it->second == b))
      out.push_back({LinkChange::Kind::changed, b, it->second});
  }
  for (const auto& [i, a] : after)
    if (!before.count(i)) out.push_back({LinkChange::Kind::added, {}, a});
  return out;
}

Expected<LinkView> dump_links() {
  for (int attempt = 0; attempt < 10; ++attempt) {
    std::unique_ptr<nl_sock, void (*)(nl_sock*)> sock(nl_socket_alloc(), nl_socket_free);
    if (!sock) return make_error(ErrorCode::internal, "cannot allocate a netlink socket");
    if (int err = nl_connect(sock.get(), NETLINK_ROUTE); err < 0)
      return make_error(ErrorCode::internal, std::string("rtnetlink: ") + nl_geterror(err));
    nl_cache* links = nullptr;
    nl_cache* addrs = nullptr;
    int err = rtnl_link_alloc_cache(sock.get(), AF_UNSPEC, &links);
    if (err >= 0) err = rtnl_addr_alloc_cache(sock.get(), &addrs);
    if (err < 0) {
      if (links) nl_cache_free(links);
      if (err == -NLE_DUMP_INTR) continue;  // the dump raced a change: take it again
      return make_error(ErrorCode::internal, std::string("link dump: ") + nl_geterror(err));
    }
    LinkView view;
    for (nl_object* o = nl_cache_get_first(links); o; o = nl_cache_get_next(o)) {
      LinkState s = link_state(reinterpret_cast<rtnl_link*>(o));
      view[s.ifindex] = s;
    }
    for (nl_object* o = nl_cache_get_first(addrs); o; o = nl_cache_get_next(o)) {
      auto* a = reinterpret_cast<rtnl_addr*>(o);
      if (auto it = view.find(rtnl_addr_get_ifindex(a)); it != view.end())
        it->second.addresses.insert(addr_text(a));
    }
    nl_cache_free(links);
    nl_cache_free(addrs);
    return view;
  }
  return make_error(ErrorCode::internal, "link dump interrupted 10 times in a row");
}

LinkMonitor::LinkMonitor(boost::asio::io_context& io, unsigned rcvbuf, OnChanges on_changes,
                         OnOverrun on_overrun)
    : io_(io),
      rcvbuf_(rcvbuf),
      on_changes_(std::move(on_changes)),
      on_overrun_(std::move(on_overrun)) {}

LinkMonitor::~LinkMonitor() {
  stop();
}

Expected<int> open_link_socket(unsigned rcvbuf) {
  int fd = ::socket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (fd < 0)
    return make_error(ErrorCode::internal, std::string("netlink socket: ") + std::strerror(errno));
  int size = static_cast<int>(rcvbuf);
  // SO_RCVBUFFORCE passes rmem_max as root; SO_RCVBUF is the fallback.
  if (::setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) != 0)
    ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
  sockaddr_nl addr{};
  addr.nl_family = AF_NETLINK;
  addr.nl_groups = RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    const int e = errno;
    ::close(fd);
    return make_error(ErrorCode::internal, std::string("netlink bind: ") + std::strerror(e));
  }
  return fd;
}

Status LinkMonitor::start() {
  auto fd = open_link_socket(rcvbuf_);
  if (!fd) return fd.error();
  adopt(*fd);
  return ok_status();
}

void LinkMonitor::adopt(int fd) {
  fd_ = std::make_unique<boost::asio::posix::stream_descriptor>(io_, fd);
  read();
}

void LinkMonitor::stop() {
  if (fd_) {
    boost::system::error_code ec;
    fd_->close(ec);
    fd_.reset();
  }
}

void LinkMonitor::replace(LinkView fresh) {
  auto changes = diff_links(view_, fresh);
  view_ = std::move(fresh);
  if (!changes.empty()) on_changes_(changes);
}

void LinkMonitor::read() {
  if (!fd_) return;
  fd_->async_wait(boost::asio::posix::stream_descriptor::wait_read,
                  [this](const boost::system::error_code& ec) {
                    if (ec) return;
                    drain();
                    read();
                  });
}

void LinkMonitor::drain() {
  std::vector<LinkChange> changes;
  alignas(nlmsghdr) static thread_local char buf[1 << 16];
  for (;;) {
    ssize_t n = ::recv(fd_->native_handle(), buf, sizeof buf, MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == ENOBUFS) {
        // Notifications were lost: the view can no longer be trusted until a dump.
        ++overruns_;
        on_overrun_();
        continue;
      }
      break;  // EAGAIN: drained
    }
    if (n == 0) break;
    apply_message(buf, static_cast<size_t>(n), changes);
  }
  if (!changes.empty()) on_changes_(changes);
}

void LinkMonitor::apply_message(const void* data, size_t len, std::vector<LinkChange>& changes) {
  int remaining = static_cast<int>(len);
  for (auto* h = static_cast<const nlmsghdr*>(data); NLMSG_OK(h, static_cast<unsigned>(remaining));
       h = NLMSG_NEXT(h, remaining)) {
    const int type = h->nlmsg_type;
    if (type != RTM_NEWLINK && type != RTM_DELLINK && type != RTM_NEWADDR && type != RTM_DELADDR)
      continue;
    ++messages_;
    nl_msg* msg = nlmsg_convert(const_cast<nlmsghdr*>(h));
    if (!msg) continue;
    nlmsg_set_proto(msg, NETLINK_ROUTE);  // selects libnl's route parsers
    ParseCtx ctx{&view_, &changes, type};
    nl_msg_parse(msg, on_object, &ctx);
    nlmsg_free(msg);
  }
}

}  // namespace berth::net
