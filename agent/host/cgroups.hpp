#pragma once
// cgroup v1 controls for a container: the devices allow-list and the cpuset.
#include <string>

#include "agent/host/cgroup_dirs.hpp"
#include "agent/host/unique_fd.hpp"
#include "core/expected.hpp"

namespace berth::agent {

class CgroupV1 {
 public:
  // With `dirs`, cgroup directories are kept there (see cgroup_dirs.hpp); without, each file is
  // opened from the mount.
  explicit CgroupV1(std::string root, CgroupDirs* dirs = nullptr)
      : root_(std::move(root)), dirs_(dirs) {}

  // Returns true when the device was already allowed (so denying it later would take it away).
  Expected<bool> allow_device(const std::string& cgroup, unsigned major, unsigned minor);
  Status deny_device(const std::string& cgroup, unsigned major, unsigned minor);
  // Returns the previous "<cpus>|<mems>". `controller` is "cpuset" on v1; on cgroup v2 (this
  // class rooted at the cgroup2 mount) it is ".", and an empty value means "inherit".
  Expected<std::string> set_cpuset(const std::string& cgroup, const std::string& cpus,
                                   const std::string& mems) {
    return set_cpuset("cpuset", cgroup, cpus, mems);
  }
  Expected<std::string> set_cpuset(const std::string& controller, const std::string& cgroup,
                                   const std::string& cpus, const std::string& mems);

  // True when `cgroup` (never the root cgroup) is still there under `controller`.
  // false only when the cgroup is not there (ENOENT); a failure to look is an error, never read
  // as "gone" (the undo of a rule written there would count as done).
  Expected<bool> exists(const std::string& controller, const std::string& cgroup);

  Expected<std::string> read(const std::string& controller, const std::string& cgroup,
                             const std::string& file);
  Status write(const std::string& controller, const std::string& cgroup, const std::string& file,
               const std::string& value);

 private:
  Expected<UniqueFd> open_file(const std::string& controller, const std::string& cgroup,
                               const std::string& file, int flags);
  // True only when the cgroup is there and `file` is not (looked up afresh).
  bool lacks_file(const std::string& controller, const std::string& cgroup,
                  const std::string& file) const;
  Error without_cpuset_controller(const std::string& cgroup) const;
  std::string root_;
  CgroupDirs* dirs_;
};

// True when a devices.list (one rule per line, "c 10:229 rwm", "a *:* rwm") grants rwm on c
// major:minor.
bool devices_list_allows(const std::string& list, unsigned major, unsigned minor);

}  // namespace berth::agent
