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
};

// Creates dev.path (mode 0666) under `root_fd`, making parent directories as needed.
Expected<NodeMade> make_device_node(int root_fd, const CharDevice& dev);
// Removes dev.path if it is still that device (anything else at that path is left alone), then
// up to `dirs` of its parent levels, innermost first, while they are empty.
Status remove_device_node(int root_fd, const CharDevice& dev, int dirs = 0);

// The host's /dev/char/M:m links for `devices` under `dev_root` ("/dev"), made where missing
// (udev makes them for the nodes it creates; nvidia-modprobe's nodes have none, and runtimes
// and systemd name devices by these paths). Returns the links made; existing entries are never
// changed.
std::vector<std::string> ensure_char_links(const std::string& dev_root,
                                           const std::vector<CharDevice>& devices);

}  // namespace berth::agent
