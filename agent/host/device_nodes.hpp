#pragma once
// Character device nodes inside a container's /dev, reached only through the container's root fd.
#include <string>
#include <vector>

#include "core/expected.hpp"
#include "core/inventory.hpp"

namespace berth::agent {

struct NodeMade {
  bool existed = false;  // an identical node was already there
  int dirs = 0;          // parent directory levels made for it (/dev/nvidia-caps, /dev/dri)
  bool bound = false;    // a bind mount of the host's node, not a node of its own
};

// Creates dev.path (mode 0666) under `root_fd`, making parent directories as needed.
Expected<NodeMade> make_device_node(int root_fd, const CharDevice& dev);
// A container in a user namespace of its own: its mount namespace, and the host ids of its root
// (uid_map and gid_map of 0).
struct UserNs {
  int mntns_fd = -1;
  unsigned uid = 0;
  unsigned gid = 0;
};

// For a container in a user namespace of its own, whose /dev is nodev: the host's node
// `host_node` bind-mounted onto an empty file at dev.path, made from inside the container's mount
// namespace as its root, then checked to be the device.
Expected<NodeMade> bind_device_node(int root_fd, const UserNs& ns, const CharDevice& dev,
                                    const std::string& host_node);
// Removes dev.path if it is still that device (anything else at that path is left alone), then
// up to `dirs` of its parent levels, innermost first, while they are empty. With `ns` the node is
// a bind mount in that namespace: unmounted, and its empty mount point removed.
Status remove_device_node(int root_fd, const CharDevice& dev, int dirs = 0,
                          const UserNs* ns = nullptr);

// The host's /dev/char/M:m links for `devices` under `dev_root` ("/dev"), made where missing
// (udev makes them for the nodes it creates; nvidia-modprobe's nodes have none, and runtimes
// and systemd name devices by these paths). Returns the links made; existing entries are never
// changed.
std::vector<std::string> ensure_char_links(const std::string& dev_root,
                                           const std::vector<CharDevice>& devices);

}  // namespace berth::agent
