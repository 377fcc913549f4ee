#pragma once
// Character device nodes inside a container's /dev, reached only through the container's root fd.
#include "core/expected.hpp"
#include "core/inventory.hpp"

namespace berth::agent {

// Creates dev.path (mode 0666) under `root_fd`, making parent directories as needed.
// Returns true when an identical node was already there.
Expected<bool> make_device_node(int root_fd, const CharDevice& dev);
// Removes dev.path if it is still that device; anything else at that path is left alone.
Status remove_device_node(int root_fd, const CharDevice& dev);

}  // namespace berth::agent
