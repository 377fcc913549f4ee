#pragma once
// Network links over rtnetlink (libnl-3 route). One Links object talks to one network namespace;
// no libnl object escapes this file's implementation.
#include <memory>
#include <string>

#include "core/expected.hpp"

struct nl_sock;

namespace berth::net {

class Links {
 public:
  // A socket in the caller's current network namespace.
  static Expected<Links> open_current();
  // A socket in the namespace `netns_fd`; the thread returns to `home_netns_fd` before this
  // returns.
  static Expected<Links> open_in(int netns_fd, int home_netns_fd);

  Links(Links&&) noexcept;
  Links& operator=(Links&&) noexcept;
  ~Links();

  bool exists(const std::string& name);
  // Moves `name` into `netns_fd`, renamed to `new_name`, in one message so no name clash can
  // happen in between.
  Status move_to(const std::string& name, int netns_fd, const std::string& new_name);
  Status rename(const std::string& name, const std::string& new_name);
  // Removes every address of `name`.
  Status flush_addresses(const std::string& name);
  Expected<int> mtu(const std::string& name);
  Status set_mtu(const std::string& name, int mtu);
  Status set_up(const std::string& name, bool up);
  // Adding an existing address or route is an error; removing a missing one is not.
  Status add_address(const std::string& name, const std::string& cidr);
  Status del_address(const std::string& name, const std::string& cidr);
  Status add_route(const std::string& name, const std::string& dst, const std::string& via);
  Status del_route(const std::string& name, const std::string& dst, const std::string& via);

 private:
  explicit Links(nl_sock* sock);
  Expected<int> ifindex(const std::string& name);
  std::unique_ptr<nl_sock, void (*)(nl_sock*)> sock_;
};

}  // namespace berth::net
