#pragma once
// Network links over rtnetlink (libnl-3 route). One Links object talks to one network namespace;
// no libnl object escapes this file's implementation.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "core/expected.hpp"

struct nl_sock;

namespace berth::net {

// What a link is, beyond its name (which a container can change): its ifindex in its namespace,
// its driver and the bus address of its device (ethtool's driver info; a VF's PCI address, empty
// for virtual links).
struct LinkIdentity {
  int ifindex = 0;
  std::string driver;
  std::string bus;
  // The same device (a link keeps driver and bus through renames and moves).
  bool same_device(const LinkIdentity& o) const { return driver == o.driver && bus == o.bus; }
  // "ifindex=7 driver=mlx5_core bus=0000:1a:00.1", as the ledger records it.
  std::string to_string() const;
  static std::optional<LinkIdentity> parse(const std::string& text);
};

// The operations on the links of one network namespace that the agent's steps use. Links is the
// real one; tests have a fake.
class LinkOps {
 public:
  virtual ~LinkOps() = default;
  // false only when the kernel says there is no such link; a failure to ask is an error, never
  // read as "absent" (an undo would then count as done).
  virtual Expected<bool> exists(const std::string& name) = 0;
  virtual Expected<LinkIdentity> identity(const std::string& name) = 0;
  // The name of the link with `ifindex`, empty when there is none.
  virtual Expected<std::string> name_of(int ifindex) = 0;
  // Like move_to, by ifindex: a name the container controls is never what picks the link.
  virtual Status move_index(int ifindex, int netns_fd, const std::string& new_name) = 0;
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
  // An IPoIB child `name` of `parent` on partition `pkey` (ipoib_msg::add_child).
  virtual Status add_pkey_child(const std::string& parent, const std::string& name,
                                uint16_t pkey) = 0;
  // RTM_DELLINK of the link with `ifindex`.
  virtual Status delete_index(int ifindex) = 0;
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

  Expected<bool> exists(const std::string& name) override;
  Expected<LinkIdentity> identity(const std::string& name) override;
  Expected<std::string> name_of(int ifindex) override;
  Status move_index(int ifindex, int netns_fd, const std::string& new_name) override;
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
  Status add_pkey_child(const std::string& parent, const std::string& name, uint16_t pkey) override;
  Status delete_index(int ifindex) override;

 private:
  explicit Links(nl_sock* sock);
  Expected<int> ifindex(const std::string& name);
  std::unique_ptr<nl_sock, void (*)(nl_sock*)> sock_;
};

}  // namespace berth::net
