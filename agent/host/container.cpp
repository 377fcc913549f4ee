#include "agent/host/container.hpp"

#include <fcntl.h>
#include <linux/magic.h>
#include <linux/nsfs.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <sstream>
#include <tuple>

#include "agent/host/safe_open.hpp"

namespace berth::agent {
namespace {

Error target_gone(int pid, const std::string& why) {
  return make_error(ErrorCode::target_not_found, "process " + std::to_string(pid) + " " + why);
}

bool same_file(const struct stat& a, const struct stat& b) {
  return a.st_ino == b.st_ino && a.st_dev == b.st_dev;
}

// The agent's own namespaces, root directory and /dev, which every container is told apart from.
// Read once: /proc/self names the thread group's leader, whose namespaces and root never change
// (the worker enters a container's network namespace, and a short-lived thread a container's
// mount namespace, each on its own thread only).
enum class Own { net, mnt, root, user, dev };
constexpr const char* kOwnPaths[] = {"/proc/self/ns/net", "/proc/self/ns/mnt", "/proc/self/root",
                                     "/proc/self/ns/user", "/dev"};

struct OwnIdentity {
  bool read = false;
  struct stat of[std::size(kOwnPaths)]{};
};

const OwnIdentity& own_identity() {
  static const OwnIdentity once = [] {
    OwnIdentity id;
    id.read = true;
    for (size_t i = 0; i < std::size(kOwnPaths); ++i)
      id.read = id.read && ::stat(kOwnPaths[i], &id.of[i]) == 0;
    return id;
  }();
  return once;
}

// From the copy read once, or read now if that failed (no /proc when the agent started).
bool own(Own what, struct stat& out) {
  const auto i = static_cast<int>(what);
  if (const OwnIdentity& id = own_identity(); id.read) {
    out = id.of[i];
    return true;
  }
  return ::stat(kOwnPaths[i], &out) == 0;
}

}  // namespace

Status check_own_dev(int root_fd, int pid) {
  UniqueFd dev = open_in_root(root_fd, "dev", O_PATH | O_DIRECTORY);
  if (!dev)
    return make_error(ErrorCode::bad_request,
                      "pid " + std::to_string(pid) +
                          " has no /dev directory of its own: " + std::strerror(errno));
  struct statfs fs {};
  struct stat dev_st {};
  struct stat root_st {};
  struct stat host_dev {};
  if (::fstatfs(dev.get(), &fs) != 0 || ::fstat(dev.get(), &dev_st) != 0 ||
      ::fstat(root_fd, &root_st) != 0 || !own(Own::dev, host_dev))
    return make_error(ErrorCode::internal,
                      std::string("cannot read the container's /dev: ") + std::strerror(errno));
  const bool memory_fs = fs.f_type == TMPFS_MAGIC || fs.f_type == RAMFS_MAGIC;
  if (!memory_fs || dev_st.st_dev == root_st.st_dev || dev_st.st_dev == host_dev.st_dev)
    return make_error(
        ErrorCode::bad_request,
        "pid " + std::to_string(pid) +
            "'s /dev is not a tmpfs mounted in its own mount namespace (" +
            (!memory_fs ? std::string("it is a directory of another filesystem")
             : dev_st.st_dev == host_dev.st_dev ? std::string("it is the host's /dev")
                                                : std::string("it is not a mount of its own")) +
            "): berth creates device nodes only there, never on a filesystem that outlives the "
            "container or that its user could keep a node on");
  return ok_status();
}

bool ContainerHandle::alive() const {
  return pidfd && ::syscall(SYS_pidfd_send_signal, pidfd.get(), 0, nullptr, 0) == 0;
}

Expected<uint64_t> process_start_time(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text;
  if (!in || !std::getline(in, text)) return target_gone(pid, "does not exist");
  // The command name may hold spaces and parentheses: fields start after the last ')'.
  auto close = text.rfind(')');
  if (close == std::string::npos) return target_gone(pid, "has an unreadable stat line");
  std::istringstream fields(text.substr(close + 2));
  std::string field;
  for (int i = 3; i <= 22 && fields >> field; ++i)
    if (i == 22) return std::stoull(field);
  return target_gone(pid, "has an unreadable stat line");
}

Status check_is_container(int pid, const std::string& rootfs,
                          std::pair<uint64_t, uint64_t>* namespaces) {
  // Its own network and mount namespaces, and a root directory other than the host's: a process
  // that merely unshared its mounts still sees, and would let berth write to, the host's /dev.
  for (const auto& [which, what] : {std::pair{Own::net, "ns/net"}, std::pair{Own::mnt, "ns/mnt"},
                                    std::pair{Own::root, "root"}}) {
    if (which == Own::root && !rootfs.empty()) continue;
    struct stat mine {};
    struct stat theirs {};
    const std::string path = "/proc/" + std::to_string(pid) + "/" + what;
    if (::stat(path.c_str(), &theirs) != 0) return target_gone(pid, "does not exist");
    if (!own(which, mine))
      return make_error(ErrorCode::internal, std::string("cannot read the agent's own ") + what +
                                                 ": " + std::strerror(errno));
    if (same_file(mine, theirs))
      return make_error(
          ErrorCode::bad_request,
          "pid " + std::to_string(pid) + " shares the agent's " +
              (what[0] == 'r' ? "root directory" : std::string(what + 3) + " namespace") +
              ": it is not a container");
    if (namespaces && which == Own::net) namespaces->first = theirs.st_ino;
    if (namespaces && which == Own::mnt) namespaces->second = theirs.st_ino;
  }
  return ok_status();
}

Status check_owned_by(int pid, unsigned uid) {
  const std::string proc = "/proc/" + std::to_string(pid);
  std::ifstream status(proc + "/status");
  long real = -1;
  for (std::string line; std::getline(status, line);)
    if (line.rfind("Uid:", 0) == 0) real = std::stol(line.substr(4));
  if (real < 0) return target_gone(pid, "does not exist");
  if (static_cast<unsigned>(real) == uid) return ok_status();
  UniqueFd ns(::open((proc + "/ns/user").c_str(), O_RDONLY | O_CLOEXEC));
  uid_t owner = 0;
  struct stat mine {};
  struct stat theirs {};
  if (ns && own(Own::user, mine) && ::fstat(ns.get(), &theirs) == 0 &&
      mine.st_ino != theirs.st_ino && ::ioctl(ns.get(), NS_GET_OWNER_UID, &owner) == 0 &&
      owner == uid)
    return ok_status();
  return make_error(ErrorCode::forbidden, "process " + std::to_string(pid) + " belongs to uid " +
                                              std::to_string(real) + ", not to uid " +
                                              std::to_string(uid));
}

ContainerCgroups container_cgroups(int pid) {
  ContainerCgroups out;
  std::ifstream cg("/proc/" + std::to_string(pid) + "/cgroup");
  for (std::string line; std::getline(cg, line);) {
    // "<hierarchy>:<controllers>:<path>"; the path is relative to our own cgroup namespace.
    auto a = line.find(':');
    auto b = line.find(':', a + 1);
    if (a == std::string::npos || b == std::string::npos) continue;
    std::string controllers = "," + line.substr(a + 1, b - a - 1) + ",";
    std::string path = line.substr(b + 1);
    if (controllers.find(",devices,") != std::string::npos) out.devices = path;
    if (controllers.find(",cpuset,") != std::string::npos) out.cpuset = path;
    if (line.compare(0, 3, "0::") == 0) out.unified = path;
  }
  return out;
}

namespace {

// The host id that id 0 of a user namespace maps to, from its uid_map or gid_map.
std::optional<unsigned> host_id_of_root(const std::string& map_file) {
  std::ifstream in(map_file);
  unsigned inside = 0, outside = 0, count = 0;
  while (in >> inside >> outside >> count)
    if (inside == 0 && count > 0) return outside;
  return std::nullopt;
}

// The process pinned by a pidfd (its start time matching a non-zero target.start_time), checked to
// be a container, and its root directory: what every look into the container starts from.
Status pin_with_root(const Target& target, ContainerHandle& h) {
  const int pid = target.pid;
  if (pid <= 1)
    return make_error(ErrorCode::bad_request,
                      "pid " + std::to_string(pid) + " cannot be a container");
  h.target = target;
  h.pidfd.reset(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  if (!h.pidfd) return target_gone(pid, std::string("cannot be pinned: ") + std::strerror(errno));
  auto start = process_start_time(pid);
  if (!start) return start.error();
  if (target.start_time != 0 && *start != target.start_time)
    return target_gone(pid, "is no longer the process attached");
  h.target.start_time = *start;

  if (auto c = check_is_container(pid, target.rootfs); !c) return c.error();
  const std::string proc = "/proc/" + std::to_string(pid);
  h.root.reset(::open((proc + "/root").c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!h.root) return target_gone(pid, std::string("root directory: ") + std::strerror(errno));
  struct stat root {};
  struct stat host_root {};
  if (::fstat(h.root.get(), &root) != 0 || !own(Own::root, host_root))
    return target_gone(pid, std::string("root directory: ") + std::strerror(errno));
  if (same_file(root, host_root)) {
    // Not switched to its root yet: the root is `rootfs` as seen in the container's own mount
    // namespace (through /proc/<pid>/root), walked without following any link.
    if (target.rootfs.empty() || target.rootfs.front() != '/')
      return make_error(ErrorCode::bad_request,
                        "pid " + std::to_string(pid) + " shares the agent's root directory");
    UniqueFd rootfs = open_in_root(h.root.get(), target.rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (!rootfs)
      return target_gone(pid,
                         "has no root directory at " + target.rootfs + ": " + std::strerror(errno));
    h.root = std::move(rootfs);
  }
  return ok_status();
}

}  // namespace

Expected<UniqueFd> open_container_root(const Target& target) {
  ContainerHandle h;
  if (auto p = pin_with_root(target, h); !p) return p.error();
  // Opened through /proc/<pid>: the pinned process's root only if it is still alive now.
  if (!h.alive()) return target_gone(target.pid, "exited while being opened");
  return std::move(h.root);
}

Expected<ContainerHandle> open_container(const Target& target) {
  const int pid = target.pid;
  ContainerHandle h;
  if (auto p = pin_with_root(target, h); !p) return p.error();
  const std::string proc = "/proc/" + std::to_string(pid);
  h.netns.reset(::open((proc + "/ns/net").c_str(), O_RDONLY | O_CLOEXEC));
  if (!h.netns) return target_gone(pid, std::string("network namespace: ") + std::strerror(errno));

  if (auto dev = check_own_dev(h.root.get(), pid); !dev) return dev.error();
  struct stat self_user {
  }, its_user{};
  if (own(Own::user, self_user) && ::stat((proc + "/ns/user").c_str(), &its_user) == 0 &&
      self_user.st_ino != its_user.st_ino) {
    h.userns_mntns.reset(::open((proc + "/ns/mnt").c_str(), O_RDONLY | O_CLOEXEC));
    if (!h.userns_mntns)
      return target_gone(pid, std::string("mount namespace: ") + std::strerror(errno));
    auto uid = host_id_of_root(proc + "/uid_map");
    auto gid = host_id_of_root(proc + "/gid_map");
    if (!uid || !gid)
      return make_error(ErrorCode::attach_failed,
                        "pid " + std::to_string(pid) +
                            " runs in a user namespace that maps no root: berth cannot make its "
                            "device nodes");
    h.userns_uid = *uid;
    h.userns_gid = *gid;
  }
  auto cgroups = container_cgroups(pid);
  h.devices_cgroup = std::move(cgroups.devices);
  h.cpuset_cgroup = std::move(cgroups.cpuset);
  h.unified_cgroup = std::move(cgroups.unified);
  // Everything above was opened through /proc/<pid>: it belongs to the pinned process only if
  // that process is still alive now.
  if (!h.alive()) return target_gone(pid, "exited while being opened");
  return h;
}

std::pair<uint64_t, uint64_t> container_namespaces(int pid) {
  const std::string proc = "/proc/" + std::to_string(pid) + "/ns/";
  struct stat net {};
  struct stat mnt {};
  const bool ok_net = ::stat((proc + "net").c_str(), &net) == 0;
  const bool ok_mnt = ::stat((proc + "mnt").c_str(), &mnt) == 0;
  return {ok_net ? net.st_ino : 0, ok_mnt ? mnt.st_ino : 0};
}

Expected<ContainerHandle> open_container_member(const Target& target,
                                                const std::string& cgroup_root) {
  if (target.netns == 0 || target.mntns == 0)
    return target_gone(target.pid, "has exited, and its namespaces were not recorded at attach");
  std::vector<std::string> procs_files;
  const std::string unified = cgroup_root + "/unified";
  auto add = [&](const std::string& mount, const std::string& cgroup) {
    if (cgroup.empty() || cgroup == "/") return;  // never the root cgroup: that is the host's
    procs_files.push_back(mount + cgroup + "/cgroup.procs");
  };
  add(std::filesystem::exists(unified + "/cgroup.procs") ? unified : cgroup_root,
      target.unified_cgroup);
  add(cgroup_root + "/devices", target.devices_cgroup);
  add(cgroup_root + "/cpuset", target.cpuset_cgroup);
  for (const auto& file : procs_files) {
    std::ifstream in(file);
    for (int pid; in >> pid;) {
      if (pid == target.pid ||
          container_namespaces(pid) != std::make_pair(target.netns, target.mntns))
        continue;
      Target member = target;
      member.pid = pid;
      member.start_time = 0;
      auto h = open_container(member);
      if (!h) continue;
      // Pinned now: its namespaces must still be the container's.
      struct stat net {};
      if (::fstat(h->netns.get(), &net) != 0 || net.st_ino != target.netns ||
          container_namespaces(pid).second != target.mntns || !h->alive())
        continue;
      return h;
    }
  }
  return target_gone(target.pid, "has exited, and no other process of its container is left");
}

}  // namespace berth::agent
