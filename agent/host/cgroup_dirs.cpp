#include "agent/host/cgroup_dirs.hpp"

#include <fcntl.h>

#include "agent/host/safe_open.hpp"

namespace berth::agent {

UniqueFd open_cgroup_dir(const std::string& mount, const std::string& cgroup) {
  UniqueFd root(::open(mount.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!root) return root;
  // The path comes from /proc/<pid>/cgroup, which the container's processes can influence:
  // resolved strictly beneath the mount, no symlinks.
  const std::string rel =
      cgroup.empty() || cgroup == "/" ? "." : cgroup.substr(cgroup.front() == '/' ? 1 : 0);
  return open_beneath(root.get(), rel, O_RDONLY | O_DIRECTORY);
}

CgroupDir CgroupDirs::open(const std::string& mount, const std::string& cgroup) {
  auto key = std::make_pair(mount, cgroup);
  if (auto it = dirs_.find(key); it != dirs_.end()) return CgroupDir(it->second.get());
  UniqueFd fd = open_cgroup_dir(mount, cgroup);
  if (!fd) return CgroupDir(-1);
  const int borrowed = fd.get();
  dirs_.emplace(std::move(key), std::move(fd));
  return CgroupDir(borrowed);
}

}  // namespace berth::agent
