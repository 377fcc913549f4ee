#include "agent/host/device_nodes.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <cerrno>
#include <cstring>
#include <sstream>

#include "agent/host/safe_open.hpp"

namespace berth::agent {
namespace {

Error node_error(const CharDevice& dev, const std::string& what) {
  return make_error(ErrorCode::internal,
                    what + " " + dev.path + " in the container: " + std::strerror(errno));
}

// Opens the parent directory of dev.path inside the container, creating missing levels.
Expected<UniqueFd> open_parent(int root_fd, const CharDevice& dev, bool create, std::string& name) {
  if (dev.path.rfind("/dev/", 0) != 0 || dev.path.find("/../") != std::string::npos ||
      dev.path.back() == '/')
    return make_error(ErrorCode::internal, "device path " + dev.path + " is not under /dev");
  auto slash = dev.path.rfind('/');
  name = dev.path.substr(slash + 1);
  std::string parent = dev.path.substr(1, slash - 1);  // "dev" or "dev/nvidia-caps"
  UniqueFd dir = open_in_root(root_fd, "dev", O_PATH | O_DIRECTORY);
  if (!dir) return node_error(dev, "cannot open /dev for");
  std::istringstream parts(parent.size() > 3 ? parent.substr(4) : "");
  for (std::string part; std::getline(parts, part, '/');) {
    if (part.empty() || part == "." || part == "..")
      return make_error(ErrorCode::internal,
                        "device path " + dev.path + " has an empty, '.' or '..' part");
    if (create && ::mkdirat(dir.get(), part.c_str(), 0755) != 0 && errno != EEXIST)
      return node_error(dev, "cannot create the directory of");
    // Within /dev's own mount: a host directory mounted over /dev/nvidia-caps is not followed.
    UniqueFd sub = open_beneath_same_mount(dir.get(), part, O_PATH | O_DIRECTORY);
    if (!sub) return node_error(dev, "cannot open the directory of");
    dir = std::move(sub);
  }
  return dir;
}

}  // namespace

Expected<bool> make_device_node(int root_fd, const CharDevice& dev) {
  std::string name;
  auto dir = open_parent(root_fd, dev, true, name);
  if (!dir) return dir.error();
  struct stat st {};
  if (::fstatat(dir->get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
    if (S_ISCHR(st.st_mode) && st.st_rdev == makedev(dev.major, dev.minor)) return true;
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
  return false;
}

Status remove_device_node(int root_fd, const CharDevice& dev) {
  std::string name;
  auto dir = open_parent(root_fd, dev, false, name);
  if (!dir) return ok_status();  // no /dev or no parent: nothing of ours is there
  struct stat st {};
  if (::fstatat(dir->get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return ok_status();
  if (!S_ISCHR(st.st_mode) || st.st_rdev != makedev(dev.major, dev.minor)) return ok_status();
  if (::unlinkat(dir->get(), name.c_str(), 0) != 0 && errno != ENOENT)
    return node_error(dev, "cannot remove");
  return ok_status();
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
