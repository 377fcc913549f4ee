#pragma once
// openat2 with RESOLVE_* flags: path resolution that a container cannot redirect.
#include <string>

#include "agent/host/unique_fd.hpp"

namespace berth::agent {

// Opens `path` under `dirfd` treating dirfd as "/" and refusing every symlink on the way.
// Returns an invalid fd with errno set on failure.
UniqueFd open_in_root(int dirfd, const std::string& path, int flags);
// Opens `path` strictly beneath `dirfd`, refusing symlinks and "..".
UniqueFd open_beneath(int dirfd, const std::string& path, int flags);
// The same, and refusing to cross into another mount (a host directory bind-mounted there).
UniqueFd open_beneath_same_mount(int dirfd, const std::string& path, int flags);

}  // namespace berth::agent
