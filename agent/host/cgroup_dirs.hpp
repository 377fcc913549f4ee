#pragma once
// Directories of the cgroups a container's steps write to. Each cgroup file a step reads or writes
// was opened from its mount through the cgroup path, three opens and three closes for one write;
// a GPU berth's attach and detach take about twenty of them. Kept here, the directory is opened
// once, and each file is one open beneath it.
//
// Kept only while one container is open (HostActuator forgets them when it lets go of the
// container or opens another): while a process of the container lives, its cgroup cannot be
// removed, so a kept directory is the one its path names. A lookup that fails is not kept.
#include <map>
#include <string>
#include <utility>

#include "agent/host/unique_fd.hpp"

namespace berth::agent {

// A cgroup's directory (O_RDONLY | O_DIRECTORY), borrowed from a CgroupDirs or owned.
class CgroupDir {
 public:
  explicit CgroupDir(int borrowed) : fd_(borrowed) {}
  explicit CgroupDir(UniqueFd owned) : owned_(std::move(owned)), fd_(owned_.get()) {}
  int get() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }

 private:
  UniqueFd owned_;
  int fd_;
};

// Opens `cgroup` (a path from /proc/<pid>/cgroup, "/" or "" for the root) strictly beneath the
// cgroup mount `mount`. Invalid, with errno set, when it cannot.
UniqueFd open_cgroup_dir(const std::string& mount, const std::string& cgroup);

class CgroupDirs {
 public:
  // The directory of `cgroup` under `mount`, opened at the first call and kept until forget().
  // Invalid, with errno set, when it cannot be opened.
  CgroupDir open(const std::string& mount, const std::string& cgroup);
  void forget() { dirs_.clear(); }
  size_t kept() const { return dirs_.size(); }

 private:
  std::map<std::pair<std::string, std::string>, UniqueFd> dirs_;
};

// Through `dirs` when there is one, else opened for this use alone.
inline CgroupDir cgroup_dir(CgroupDirs* dirs, const std::string& mount, const std::string& cgroup) {
  return dirs ? dirs->open(mount, cgroup) : CgroupDir(open_cgroup_dir(mount, cgroup));
}

}  // namespace berth::agent
