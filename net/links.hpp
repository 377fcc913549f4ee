#pragma once
// Network links over rtnetlink (libnl-3 route). One Links object talks to one network namespace;
// no libnl object escapes this file's implementation.
#include <memory>
#include <string>

#include "core/expected.hpp"

struct nl_sock;

namespace berth::net {

// The operations on the links of one network namespace that the agent's steps use. Links is the
// real one; tests have a fake.
class LinkOps {
 public:
  virtual ~LinkOps() = default;
  virtual bool exists(const std::string& name) = 0;
  virtual Status move_to(const std::string& name, int netns_fd, const std::string& new_name) = 0;
  virtual Status rename(const std::string& name, const std::string& new_name) = 0;
  virtual Status flush_addresses(const std::string& name) = 0;
  virtual Expected<int> mtu(const std::string& name) = 0;
  virtual Status set_mtu(const std::string& name, int mtu) = 0;
  virtual Status set_up(const std::string& name, bool up) = 0;
  virtual Status add_address(const std::string& name, const std::string& cidr) = 0;
  virtual Status del_address(const std::string& name, const std::string& cidr) = 0;
  virtual Status add_route(const std::string& name, const std::string& dst,
                           const std::string& via) = 0;
  virtual Status del_route(const std::string& name, const std::string& dst,
                           const std::string& via) = 0;
};

class Links : public LinkOps {
 public:
  // A socket in the caller's current network namespace.
  static Expected<Links> open_current();
  // A socket in the namespace `netns_fd`; the thread returns to `home_netns_fd` before this
  // returns.
  static Expected<Links> open_in(int netns_fd, int home_netns_fd);

  Links(Links&&) noexcept;
  Links& operator=(Links&&) noexcept;
  ~Links() override;

  bool exists(const std::string& name) override;
  // Moves `name` into `netns_fd`, renamed to `new_name`, in one message so no name clash can
  // happen in between.
  Status move_to(const std::string& name, int netns_fd, const std::string& new_name) override;
  Status rename(const std::string& name, const std::string& new_name) override;
  // Removes every address of `name`.
  Status flush_addresses(const std::string& name) override;
  Expected<int> mtu(const std::string& name) override;
  Status set_mtu(const std::string& name, int mtu) override;
  Status set_up(const std::string& name, bool up) override;
  // Adding an existing address or route is an error; removing a missing one is not.
  Status add_address(const std::string& name, const std::string& cidr) override;
  Status del_address(const std::string& name, const std::string& cidr) override;
  Status add_route(const std::string& name, const std::string& dst,
                   const std::string& via) override;
  Status del_route(const std::string& name, const std::string& dst,
                   const std::string& via) override;

 private:
  explicit Links(nl_sock* sock);
  Expected<int> ifindex(const std::string& name);
  std::unique_ptr<nl_sock, void (*)(nl_sock*)> sock_;
};

}  // namespace berth::net
