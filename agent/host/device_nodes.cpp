#include "agent/host/device_nodes.hpp"

#include <fcntl.h>
#include <sched.h>
#include <sys/fsuid.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <sstream>
#include <thread>

#include "agent/host/safe_open.hpp"

namespace berth::agent {
namespace {

Error node_error(const CharDevice& dev, const std::string& what) {
  return make_error(ErrorCode::internal,
                    what + " " + dev.path + " in the container: " + std::strerror(errno));
}

// The directory levels of dev.path below /dev ("/dev/nvidia-caps/x" -> {"nvidia-caps"}).
Expected<std::vector<std::string>> levels_of(const CharDevice& dev, std::string& name) {
  if (dev.path.rfind("/dev/", 0) != 0 || dev.path.find("/../") != std::string::npos ||
      dev.path.back() == '/')
    return make_error(ErrorCode::internal, "device path " + dev.path + " is not under /dev");
  auto slash = dev.path.rfind('/');
  name = dev.path.substr(slash + 1);
  std::string parent = dev.path.substr(1, slash - 1);  // "dev" or "dev/nvidia-caps"
  std::vector<std::string> levels;
  std::istringstream parts(parent.size() > 3 ? parent.substr(4) : "");
  for (std::string part; std::getline(parts, part, '/');) {
    if (part.empty() || part == "." || part == "..")
      return make_error(ErrorCode::internal,
                        "device path " + dev.path + " has an empty, '.' or '..' part");
    levels.push_back(part);
  }
  return levels;
}

// Opens /dev and then `count` of `levels` inside the container, creating missing levels (and
// counting those it made in `made`).
Expected<UniqueFd> open_levels(int root_fd, const CharDevice& dev,
                               const std::vector<std::string>& levels, size_t count, bool create,
                               int* made) {
  UniqueFd dir = open_in_root(root_fd, "dev", O_PATH | O_DIRECTORY);
  if (!dir) return node_error(dev, "cannot open /dev for");
  for (size_t i = 0; i < count; ++i) {
    const std::string& part = levels[i];
    if (create) {
      if (::mkdirat(dir.get(), part.c_str(), 0755) == 0) {
        if (made) ++*made;
      } else if (errno != EEXIST) {
        return node_error(dev, "cannot create the directory of");
      }
    }
    // Within /dev's own mount: a host directory mounted over /dev/nvidia-caps is not followed.
    UniqueFd sub = open_beneath_same_mount(dir.get(), part, O_PATH | O_DIRECTORY);
    if (!sub) return node_error(dev, "cannot open the directory of");
    dir = std::move(sub);
  }
  return dir;
}

bool is_node(int dir, const std::string& name, const CharDevice& dev) {
  struct stat st {};
  return ::fstatat(dir, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISCHR(st.st_mode) &&
         st.st_rdev == makedev(dev.major, dev.minor);
}

// Runs `fn` on a thread of its own that has joined the container's mount namespace and acts on
// files as the container's root (host ids ns.uid and ns.gid): a mount is made or removed only
// from inside its namespace, and a user namespace's filesystem takes no file from an id it does
// not map. berthd's own threads never leave theirs.
template <class Fn>
auto as_container_root(const UserNs& ns, Fn fn) -> decltype(fn()) {
  std::optional<decltype(fn())> out;
  int saved = 0;
  std::thread t([&] {
    if (::unshare(CLONE_FS) != 0 || ::setns(ns.mntns_fd, CLONE_NEWNS) != 0) {
      saved = errno;
      return;
    }
    // Per thread: fsuid and fsgid are not shared by berthd's other threads.
    ::setfsgid(ns.gid);
    ::setfsuid(ns.uid);
    out.emplace(fn());
  });
  t.join();
  if (!out)
    return make_error(
        ErrorCode::internal,
        std::string("cannot join the container's mount namespace: ") + std::strerror(saved));
  return std::move(*out);
}

int unmount_at(int dir, const std::string& name) {
  return ::fchdir(dir) == 0 ? ::umount2(name.c_str(), MNT_DETACH | UMOUNT_NOFOLLOW) : -1;
}

}  // namespace

Expected<NodeMade> bind_device_node(int root_fd, const UserNs& ns, const CharDevice& dev,
                                    const std::string& host_node) {
  std::string name;
  auto levels = levels_of(dev, name);
  if (!levels) return levels.error();
  // The host's node, as a detached mount: a host path of the admin's, checked to be the device.
  UniqueFd tree(::open_tree(AT_FDCWD, host_node.c_str(), OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC));
  struct stat st {};
  if (!tree || ::fstat(tree.get(), &st) != 0 || !S_ISCHR(st.st_mode) ||
      st.st_rdev != makedev(dev.major, dev.minor))
    return make_error(ErrorCode::internal,
                      "the host's " + host_node + " is not c " + std::to_string(dev.major) + ":" +
                          std::to_string(dev.minor) + " (" +
                          (tree ? "another file" : std::strerror(errno)) + ")");
  return as_container_root(ns, [&]() -> Expected<NodeMade> {
    NodeMade made;
    made.bound = true;
    auto dir = open_levels(root_fd, dev, *levels, levels->size(), true, &made.dirs);
    if (!dir) return dir.error();
    if (is_node(dir->get(), name, dev)) {
      made.existed = true;
      return made;
    }
    UniqueFd placeholder(::openat(dir->get(), name.c_str(),
                                  O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0666));
    if (!placeholder) return node_error(dev, "cannot create the mount point of");
    placeholder.reset();
    // The last component is not followed: a link the container swaps in is not a way out.
    const int rc = ::move_mount(tree.get(), "", dir->get(), name.c_str(), MOVE_MOUNT_F_EMPTY_PATH);
    if (rc != 0 || !is_node(dir->get(), name, dev)) {
      const int saved = rc != 0 ? errno : EIO;
      if (rc == 0) (void)unmount_at(dir->get(), name);
      ::unlinkat(dir->get(), name.c_str(), 0);
      errno = saved;
      return node_error(dev, "cannot bind-mount the host's node to");
    }
    return made;
  });
}

Expected<NodeMade> make_device_node(int root_fd, const CharDevice& dev) {
  std::string name;
  auto levels = levels_of(dev, name);
  if (!levels) return levels.error();
  NodeMade made;
  auto dir = open_levels(root_fd, dev, *levels, levels->size(), true, &made.dirs);
  if (!dir) return dir.error();
  struct stat st {};
  if (::fstatat(dir->get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
    if (is_node(dir->get(), name, dev)) {
      made.existed = true;
      return made;
    }
    errno = EEXIST;
    return node_error(dev, "a different file already exists at");
  }
  if (::mknodat(dir->get(), name.c_str(), S_IFCHR | 0666, makedev(dev.major, dev.minor)) != 0)
    return node_error(dev, "cannot create");
  // mknod applied the umask; the node must be usable by the container's non-root users too.
  if (::fchmodat(dir->get(), name.c_str(), 0666, 0) != 0) {
    int saved = errno;
    ::unlinkat(dir->get(), name.c_str(), 0);
    errno = saved;
    return node_error(dev, "cannot set the mode of");
  }
  return made;
}

namespace {

Status remove_node(int root_fd, const CharDevice& dev, int dirs, bool bound) {
  std::string name;
  auto levels = levels_of(dev, name);
  if (!levels) return levels.error();
  auto dir = open_levels(root_fd, dev, *levels, levels->size(), false, nullptr);
  if (!dir) return ok_status();  // no /dev or no parent: nothing of ours is there
  if (!is_node(dir->get(), name, dev)) return ok_status();
  if (bound) {
    // A bind mount, taken off by a name relative to the directory berth holds; then the empty
    // file under it goes.
    if (unmount_at(dir->get(), name) != 0 && errno != EINVAL)
      return node_error(dev, "cannot unmount");
    struct stat st {};
    if (::fstatat(dir->get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) &&
        st.st_size == 0)
      ::unlinkat(dir->get(), name.c_str(), 0);
  }
  // A plain node was checked just above; what is left under a bind mount taken off is checked.
  if ((!bound || is_node(dir->get(), name, dev)) && ::unlinkat(dir->get(), name.c_str(), 0) != 0 &&
      errno != ENOENT)
    return node_error(dev, "cannot remove");
  // The directories berth made for the node, innermost first, while they are empty; one the
  // container has put something in stays.
  for (size_t k = levels->size(); dirs > 0 && k > 0; --k, --dirs) {
    auto parent = open_levels(root_fd, dev, *levels, k - 1, false, nullptr);
    if (!parent || ::unlinkat(parent->get(), (*levels)[k - 1].c_str(), AT_REMOVEDIR) != 0) break;
  }
  return ok_status();
}

}  // namespace

Status remove_device_node(int root_fd, const CharDevice& dev, int dirs, const UserNs* ns) {
  if (ns) return as_container_root(*ns, [&] { return remove_node(root_fd, dev, dirs, true); });
  return remove_node(root_fd, dev, dirs, false);
}

std::vector<std::string> ensure_char_links(const std::string& dev_root,
                                           const std::vector<CharDevice>& devices) {
  std::vector<std::string> made;
  UniqueFd dev(::open(dev_root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!dev) return made;
  if (::mkdirat(dev.get(), "char", 0755) != 0 && errno != EEXIST) return made;
  UniqueFd dir = open_beneath(dev.get(), "char", O_PATH | O_DIRECTORY);
  if (!dir) return made;
  for (const auto& d : devices) {
    if (d.path.rfind("/dev/", 0) != 0) continue;
    const std::string name = std::to_string(d.major) + ":" + std::to_string(d.minor);
    struct stat st {};
    if (::fstatat(dir.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) continue;
    if (::symlinkat(("../" + d.path.substr(5)).c_str(), dir.get(), name.c_str()) == 0)
      made.push_back(dev_root + "/char/" + name);
  }
  return made;
}

}  // namespace berth::agent
