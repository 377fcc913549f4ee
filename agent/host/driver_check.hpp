#pragma once
// Reads the two sides of the driver check: the host's /proc/driver/nvidia/version (under
// proc_root, for fixtures) and where libcuda.so.1 points inside a container's root, found through
// openat2(RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS) from the container's root descriptor and read
// with readlinkat: the link's text is parsed, never followed, so a link to a host path or a loop
// touches nothing outside the container.
#include <string>

#include "core/driver.hpp"

namespace berth::agent {

DriverCheck check_driver(int container_root_fd, const std::string& proc_root);

}  // namespace berth::agent
