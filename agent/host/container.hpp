#pragma once
// A container as the agent holds it: its init process pinned by a pidfd, its network namespace
// and root directory as file descriptors, and its cgroup paths. Every later step works from these
// descriptors, never from a path inside the container.
#include <cstdint>
#include <string>
#include <utility>

#include "agent/host/unique_fd.hpp"
#include "core/berth.hpp"
#include "core/expected.hpp"

namespace berth::agent {

struct ContainerHandle {
  Target target;
  UniqueFd pidfd;
  UniqueFd netns;
  UniqueFd root;  // O_PATH directory: the container's "/"
  // Its mount namespace, opened only when it runs in a user namespace of its own: a /dev mounted
  // there is nodev, so its device nodes are bind mounts of the host's, made in that namespace.
  UniqueFd userns_mntns;
  unsigned userns_uid = 0;  // the host ids of its root (uid_map, gid_map)
  unsigned userns_gid = 0;
  std::string
      devices_cgroup;  // cgroup v1 path relative to the controller's mount, e.g. "/berth/c1"
  std::string cpuset_cgroup;
  std::string unified_cgroup;  // cgroup v2, relative to its mount

  // False once the pinned process has exited.
  bool alive() const;
};

// /proc/<pid>/stat field 22, the start time in clock ticks; tells a reused pid apart.
Expected<uint64_t> process_start_time(int pid);

// Refuses a process that shares the agent's network or mount namespace: attaching to it would
// change the host itself. A process that still has the host's root directory is refused too,
// unless `rootfs` says where its root is mounted in its own mount namespace (a runtime's
// createRuntime hook runs before the container switches to its root). With `namespaces`, the
// nsfs inodes of its network and mount namespaces as it read them.
Status check_is_container(int pid, const std::string& rootfs = {},
                          std::pair<uint64_t, uint64_t>* namespaces = nullptr);

// Refuses a container whose /dev (under `root_fd`, its root) is not a tmpfs (or devtmpfs) mounted
// in its own mount namespace: a directory of a host filesystem (a user's own `unshare -Urnm
// chroot`), the host's /dev bind-mounted, or no mount of its own. Nodes berth makes there must go
// with the container.
Status check_own_dev(int root_fd, int pid);

// Refuses a process that `uid` does not own: its real uid is uid, or it runs in a user namespace
// that uid created (a rootless container of that user).
Status check_owned_by(int pid, unsigned uid);

// The cgroups of `pid` as /proc/<pid>/cgroup reports them in the agent's cgroup namespace: the v1
// devices and cpuset controllers' (empty where not mounted) and the cgroup v2 one ("0::").
struct ContainerCgroups {
  std::string devices;
  std::string cpuset;
  std::string unified;
};
ContainerCgroups container_cgroups(int pid);

// Pins `target.pid` and opens what attach needs. A non-zero target.start_time must match.
Expected<ContainerHandle> open_container(const Target& target);

// Only the container's root directory (O_PATH), opened as open_container opens it, with the same
// checks of the process: for reading in the container (the driver check), not for changing it.
Expected<UniqueFd> open_container_root(const Target& target);

// The nsfs inodes of `pid`'s network and mount namespaces (0 where unreadable).
std::pair<uint64_t, uint64_t> container_namespaces(int pid);

// Another live process of the container `target` named (same network and mount namespaces as
// recorded at attach), found in its recorded cgroups under `cgroup_root`, pinned and opened like
// the original. target_not_found when none is left: the container is gone.
Expected<ContainerHandle> open_container_member(const Target& target,
                                                const std::string& cgroup_root);

}  // namespace berth::agent
