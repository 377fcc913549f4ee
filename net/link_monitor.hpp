#pragma once
// The host's links and addresses as berthd sees them, kept current by rtnetlink notifications
// (RTNLGRP_LINK, RTNLGRP_IPV4_IFADDR, RTNLGRP_IPV6_IFADDR) on one socket that is an async source
// on the reactor. libnl parses the messages; what leaves this file are plain values.
//
// A notification can be lost: when the socket's receive buffer overruns the kernel says ENOBUFS
// (never silenced with NETLINK_NO_ENOBUFS). The caller then asks for a full dump (on its worker
// thread, it blocks) and hands it back with replace(), which reports what differs.
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>

#include "core/expected.hpp"

namespace berth::net {

struct LinkState {
  int ifindex = 0;
  std::string name;
  bool up = false;
  unsigned mtu = 0;
  std::set<std::string> addresses;  // "10.0.0.1/24"
  bool operator==(const LinkState&) const = default;
};
using LinkView = std::map<int, LinkState>;  // by ifindex

struct LinkChange {
  enum class Kind { added, removed, changed };
  Kind kind = Kind::changed;
  LinkState before;  // empty for added
  LinkState after;   // empty for removed
};
const char* to_string(LinkChange::Kind k);

// What changed from `before` to `after`.
std::vector<LinkChange> diff_links(const LinkView& before, const LinkView& after);

// A socket subscribed to link and address notifications in the calling thread's current network
// namespace (it stays bound to that namespace), non-blocking, with its receive buffer raised.
Expected<int> open_link_socket(unsigned rcvbuf);

// A full dump of the current network namespace's links and addresses. Blocking; retried when the
// kernel marks it interrupted (NLM_F_DUMP_INTR).
Expected<LinkView> dump_links();

class LinkMonitor {
 public:
  using OnChanges = std::function<void(const std::vector<LinkChange>&)>;
  using OnOverrun = std::function<void()>;

  LinkMonitor(boost::asio::io_context& io, unsigned rcvbuf, OnChanges on_changes,
              OnOverrun on_overrun);
  ~LinkMonitor();
  // Opens and subscribes the socket and starts reading. Call replace() with a dump after this.
  Status start();
  // Starts reading from a socket made by open_link_socket (e.g. inside another namespace).
  void adopt(int fd);
  void stop();
  // A fresh dump: the view becomes it; the differences are reported as changes.
  void replace(LinkView fresh);
  const LinkView& view() const { return view_; }
  // Notifications read since start (for tests and metrics).
  uint64_t messages() const { return messages_; }
  uint64_t overruns() const { return overruns_; }

 private:
  void read();
  void drain();
  void apply_message(const void* data, size_t len, std::vector<LinkChange>& changes);

  boost::asio::io_context& io_;
  unsigned rcvbuf_;
  OnChanges on_changes_;
  OnOverrun on_overrun_;
  std::unique_ptr<boost::asio::posix::stream_descriptor> fd_;
  LinkView view_;
  uint64_t messages_ = 0;
  uint64_t overruns_ = 0;
};

}  // namespace berth::net
