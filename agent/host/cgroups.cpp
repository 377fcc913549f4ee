#include "agent/host/cgroups.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <sstream>

#include "agent/host/errno_error.hpp"
#include "agent/host/safe_open.hpp"

namespace berth::agent {

bool devices_list_allows(const std::string& list, unsigned major, unsigned minor) {
  std::istringstream in(list);
  const std::string maj = std::to_string(major);
  const std::string min = std::to_string(minor);
  for (std::string type, numbers, access; in >> type >> numbers >> access;) {
    if (type == "a")
      return access.find('r') != std::string::npos && access.find('w') != std::string::npos &&
             access.find('m') != std::string::npos;
    if (type != "c") continue;
    auto colon = numbers.find(':');
    if (colon == std::string::npos) continue;
    auto a = numbers.substr(0, colon);
    auto b = numbers.substr(colon + 1);
    bool match = (a == "*" || a == maj) && (b == "*" || b == min);
    bool rwm = access.find('r') != std::string::npos && access.find('w') != std::string::npos &&
               access.find('m') != std::string::npos;
    if (match && rwm) return true;
  }
  return false;
}

Expected<UniqueFd> CgroupV1::open_file(const std::string& controller, const std::string& cgroup,
                                       const std::string& file, int flags) {
  const std::string where = root_ + "/" + controller + cgroup + "/" + file;
  CgroupDir dir = cgroup_dir(dirs_, root_ + "/" + controller, cgroup);
  if (!dir) return errno_error("cannot open cgroup", root_ + "/" + controller + cgroup);
  UniqueFd f = open_beneath(dir.get(), file, flags);
  if (!f) return errno_error("cannot open", where);
  return f;
}

Expected<bool> CgroupV1::exists(const std::string& controller, const std::string& cgroup) {
  if (cgroup.empty() || cgroup == "/") return false;
  // Looked up afresh, never kept: "gone" decides whether an undo there is still owed.
  UniqueFd dir = open_cgroup_dir(root_ + "/" + controller, cgroup);
  if (!dir) {
    if (errno == ENOENT) return false;  // no such cgroup, or no such controller here
    return errno_error("cannot open cgroup", root_ + "/" + controller + cgroup);
  }
  return true;
}

Expected<std::string> CgroupV1::read(const std::string& controller, const std::string& cgroup,
                                     const std::string& file) {
  auto f = open_file(controller, cgroup, file, O_RDONLY);
  if (!f) return f.error();
  std::string out;
  char buf[4096];
  for (ssize_t n; (n = ::read(f->get(), buf, sizeof buf)) != 0;) {
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_error("cannot read", root_ + "/" + controller + cgroup + "/" + file);
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

Status CgroupV1::write(const std::string& controller, const std::string& cgroup,
                       const std::string& file, const std::string& value) {
  auto f = open_file(controller, cgroup, file, O_WRONLY);
  if (!f) return f.error();
  // An empty value (cgroup v2's "inherit") still has to reach the kernel as a write.
  const std::string text = value.empty() ? "\n" : value;
  if (::write(f->get(), text.data(), text.size()) != static_cast<ssize_t>(text.size()))
    return errno_error("cannot write '" + value + "' to",
                       root_ + "/" + controller + cgroup + "/" + file);
  return ok_status();
}

Expected<bool> CgroupV1::allow_device(const std::string& cgroup, unsigned major, unsigned minor) {
  if (cgroup.empty() || cgroup == "/")
    return make_error(ErrorCode::internal,
                      "the container has no devices cgroup (v1) of its own; berth will not change "
                      "the root cgroup");
  auto list = read("devices", cgroup, "devices.list");
  if (!list) return list.error();
  if (devices_list_allows(*list, major, minor)) return true;
  auto s = write("devices", cgroup, "devices.allow",
                 "c " + std::to_string(major) + ":" + std::to_string(minor) + " rwm");
  if (!s) return s.error();
  return false;
}

Status CgroupV1::deny_device(const std::string& cgroup, unsigned major, unsigned minor) {
  if (cgroup.empty()) return ok_status();
  return write("devices", cgroup, "devices.deny",
               "c " + std::to_string(major) + ":" + std::to_string(minor) + " rwm");
}

bool CgroupV1::lacks_file(const std::string& controller, const std::string& cgroup,
                          const std::string& file) const {
  UniqueFd dir = open_cgroup_dir(root_ + "/" + controller, cgroup);
  return dir && ::faccessat(dir.get(), file.c_str(), F_OK, AT_SYMLINK_NOFOLLOW) != 0 &&
         errno == ENOENT;
}

// On cgroup v2 a cgroup has cpuset files only when its parent enables the controller for its
// children (cgroup.subtree_control). berth does not enable it there: the parent is the runtime's
// or systemd's, and systemd takes back a controller no unit of its own asked for.
Error CgroupV1::without_cpuset_controller(const std::string& cgroup) const {
  const std::string dir = root_ + cgroup;
  const auto slash = cgroup.find_last_of('/');
  const std::string parent = root_ + (slash == 0 ? "" : cgroup.substr(0, slash));
  return make_error(
      ErrorCode::host_unsupported,
      "the container's cgroup " + dir +
          " has no cpuset controller, so berth cannot limit its CPUs and memory nodes: enable "
          "it for the container's cgroup ('echo +cpuset > " +
          parent +
          "/cgroup.subtree_control', and in each cgroup above that lacks it; for a systemd "
          "unit, Delegate=cpuset or AllowedCPUs=)");
}

Expected<std::string> CgroupV1::set_cpuset(const std::string& controller, const std::string& cgroup,
                                           const std::string& cpus, const std::string& mems) {
  if (cgroup.empty() || cgroup == "/")
    return make_error(ErrorCode::internal,
                      "the container has no cpuset cgroup of its own; berth will not change the "
                      "root cgroup");
  auto old_cpus = read(controller, cgroup, "cpuset.cpus");
  if (!old_cpus) {
    if (controller == "." && lacks_file(controller, cgroup, "cpuset.cpus"))
      return without_cpuset_controller(cgroup);
    return old_cpus.error();
  }
  auto old_mems = read(controller, cgroup, "cpuset.mems");
  if (!old_mems) return old_mems.error();
  auto trim = [](std::string s) {
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
    return s;
  };
  if (auto s = write(controller, cgroup, "cpuset.cpus", cpus); !s) return s.error();
  if (auto s = write(controller, cgroup, "cpuset.mems", mems); !s) {
    Error e = s.error();
    if (auto back = write(controller, cgroup, "cpuset.cpus", trim(*old_cpus)); !back)
      e.message += "; putting cpuset.cpus back to '" + trim(*old_cpus) +
                   "' failed too: " + back.error().message;
    return e;
  }
  return trim(*old_cpus) + "|" + trim(*old_mems);
}

}  // namespace berth::agent
