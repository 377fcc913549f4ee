#include "agent/host/device_programs.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/magic.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <tuple>

#include <spdlog/spdlog.h>

#include "agent/host/safe_open.hpp"

namespace berth::agent {
namespace {

constexpr int kRaceRetries = 8;

long sys_bpf(int cmd, bpf_attr& attr) {
  return ::syscall(__NR_bpf, cmd, &attr, sizeof attr);
}

Error bpf_error(const std::string& what) {
  return make_error(ErrorCode::internal, what + ": " + std::strerror(errno));
}

struct Query {
  uint32_t flags = 0;
  std::vector<uint32_t> ids;
};

Expected<Query> query(int cgroup_fd, bool effective) {
  std::vector<uint32_t> ids(64);
  bpf_attr attr{};
  attr.query.target_fd = static_cast<uint32_t>(cgroup_fd);
  attr.query.attach_type = BPF_CGROUP_DEVICE;
  attr.query.query_flags = effective ? BPF_F_QUERY_EFFECTIVE : 0;
  attr.query.prog_ids = reinterpret_cast<uint64_t>(ids.data());
  attr.query.prog_cnt = static_cast<uint32_t>(ids.size());
  if (sys_bpf(BPF_PROG_QUERY, attr) != 0) return bpf_error("BPF_PROG_QUERY on the cgroup");
  ids.resize(attr.query.prog_cnt);
  return Query{attr.query.attach_flags, std::move(ids)};
}

UniqueFd fd_by_id(uint32_t id) {
  bpf_attr attr{};
  attr.prog_id = id;
  return UniqueFd(static_cast<int>(sys_bpf(BPF_PROG_GET_FD_BY_ID, attr)));
}

struct Info {
  uint32_t id = 0;
  std::vector<bpf::Insn> insns;
};

Expected<Info> info_of(int prog_fd) {
  bpf_prog_info info{};
  bpf_attr attr{};
  attr.info.bpf_fd = static_cast<uint32_t>(prog_fd);
  attr.info.info_len = sizeof info;
  attr.info.info = reinterpret_cast<uint64_t>(&info);
  if (sys_bpf(BPF_OBJ_GET_INFO_BY_FD, attr) != 0) return bpf_error("BPF_OBJ_GET_INFO_BY_FD");
  Info out;
  out.id = info.id;
  out.insns.resize(info.xlated_prog_len / sizeof(bpf::Insn));
  const uint32_t len = info.xlated_prog_len;
  info = bpf_prog_info{};
  info.xlated_prog_len = len;
  info.xlated_prog_insns = reinterpret_cast<uint64_t>(out.insns.data());
  attr = bpf_attr{};
  attr.info.bpf_fd = static_cast<uint32_t>(prog_fd);
  attr.info.info_len = sizeof info;
  attr.info.info = reinterpret_cast<uint64_t>(&info);
  if (sys_bpf(BPF_OBJ_GET_INFO_BY_FD, attr) != 0) return bpf_error("BPF_OBJ_GET_INFO_BY_FD");
  if (info.xlated_prog_len != len)
    return make_error(ErrorCode::internal, "a device program changed size while being read");
  return out;
}

void raise_memlock_once() {
  static const bool done = [] {
    rlimit unlimited{RLIM_INFINITY, RLIM_INFINITY};
    (void)::setrlimit(RLIMIT_MEMLOCK, &unlimited);
    return true;
  }();
  (void)done;
}

}  // namespace

Expected<UniqueFd> load_device_program(const std::vector<bpf::Insn>& insns) {
  raise_memlock_once();
  static const char license[] = "GPL";
  bpf_attr attr{};
  attr.prog_type = BPF_PROG_TYPE_CGROUP_DEVICE;
  attr.insns = reinterpret_cast<uint64_t>(insns.data());
  attr.insn_cnt = static_cast<uint32_t>(insns.size());
  attr.license = reinterpret_cast<uint64_t>(license);
  std::strncpy(attr.prog_name, "berth_devices", sizeof attr.prog_name - 1);
  UniqueFd fd(static_cast<int>(sys_bpf(BPF_PROG_LOAD, attr)));
  if (fd) return fd;
  const int err = errno;
  // Again with the verifier's log, for the message.
  std::string log(16384, '\0');
  attr.log_level = 1;
  attr.log_buf = reinterpret_cast<uint64_t>(log.data());
  attr.log_size = static_cast<uint32_t>(log.size());
  UniqueFd retry(static_cast<int>(sys_bpf(BPF_PROG_LOAD, attr)));
  if (retry) return retry;
  log.resize(std::strlen(log.c_str()));
  if (log.size() > 400) log = "..." + log.substr(log.size() - 400);
  return make_error(ErrorCode::internal,
                    std::string("the kernel refused berth's device program (") +
                        std::strerror(err) + "): " + log);
}

UniqueFd device_program_by_id(uint32_t id) {
  return fd_by_id(id);
}

Status attach_device_program(int cgroup_fd, int prog_fd, int replace_fd) {
  bpf_attr attr{};
  attr.target_fd = static_cast<uint32_t>(cgroup_fd);
  attr.attach_bpf_fd = static_cast<uint32_t>(prog_fd);
  attr.attach_type = BPF_CGROUP_DEVICE;
  attr.attach_flags = BPF_F_ALLOW_MULTI | (replace_fd >= 0 ? BPF_F_REPLACE : 0);
  if (replace_fd >= 0) attr.replace_bpf_fd = static_cast<uint32_t>(replace_fd);
  if (sys_bpf(BPF_PROG_ATTACH, attr) != 0) return bpf_error("BPF_PROG_ATTACH");
  return ok_status();
}

namespace {

// Puts `next` where `current` is, atomically; without BPF_F_REPLACE (kernels before 5.6), next
// first and then current out, so the window in between only ever allows less (programs AND).
Status swap(int cgroup_fd, uint32_t flags, int current, int next) {
  bpf_attr attr{};
  attr.target_fd = static_cast<uint32_t>(cgroup_fd);
  attr.attach_bpf_fd = static_cast<uint32_t>(next);
  attr.attach_type = BPF_CGROUP_DEVICE;
  if (flags & BPF_F_ALLOW_MULTI) {
    attr.attach_flags = BPF_F_ALLOW_MULTI | BPF_F_REPLACE;
    attr.replace_bpf_fd = static_cast<uint32_t>(current);
    if (sys_bpf(BPF_PROG_ATTACH, attr) == 0) return ok_status();
    if (errno != EINVAL) return bpf_error("BPF_PROG_ATTACH (replace)");
    attr.attach_flags = BPF_F_ALLOW_MULTI;
    attr.replace_bpf_fd = 0;
    if (sys_bpf(BPF_PROG_ATTACH, attr) != 0) return bpf_error("BPF_PROG_ATTACH");
    bpf_attr detach{};
    detach.target_fd = static_cast<uint32_t>(cgroup_fd);
    detach.attach_bpf_fd = static_cast<uint32_t>(current);
    detach.attach_type = BPF_CGROUP_DEVICE;
    if (sys_bpf(BPF_PROG_DETACH, detach) != 0) return bpf_error("BPF_PROG_DETACH");
    return ok_status();
  }
  // A single program (no ALLOW_MULTI): attaching with the same flags replaces it.
  attr.attach_flags = flags;
  if (sys_bpf(BPF_PROG_ATTACH, attr) != 0) return bpf_error("BPF_PROG_ATTACH");
  return ok_status();
}

}  // namespace

std::string find_unified_mount(const std::string& root) {
  struct statfs fs {};
  if (::statfs(root.c_str(), &fs) == 0 && fs.f_type == CGROUP2_SUPER_MAGIC) return root;
  std::string unified = root + "/unified";
  if (::statfs(unified.c_str(), &fs) == 0 && fs.f_type == CGROUP2_SUPER_MAGIC) return unified;
  return {};
}

Expected<CgroupDir> DevicePrograms::open_cgroup(const std::string& cgroup) {
  if (mount_.empty()) return make_error(ErrorCode::internal, "this host has no cgroup v2 mount");
  CgroupDir dir = cgroup_dir(dirs_, mount_, cgroup);
  if (!dir) return bpf_error("cannot open cgroup " + mount_ + cgroup);
  return dir;
}

Expected<bool> DevicePrograms::exists(const std::string& cgroup) {
  if (cgroup.empty() || cgroup == "/") return false;
  if (mount_.empty()) return false;
  // Looked up afresh, never kept: "gone" decides whether an undo there is still owed.
  UniqueFd dir = open_cgroup_dir(mount_, cgroup);
  if (!dir) {
    if (errno == ENOENT) return false;
    return bpf_error("cannot open cgroup " + mount_ + cgroup);
  }
  return true;
}

Expected<std::vector<uint32_t>> DevicePrograms::attached(const std::string& cgroup) {
  auto dir = open_cgroup(cgroup);
  if (!dir) return dir.error();
  auto q = query(dir->get(), false);
  if (!q) return q.error();
  return q->ids;
}

Expected<std::optional<bool>> DevicePrograms::allows(const std::string& cgroup, unsigned major,
                                                     unsigned minor) {
  auto dir = open_cgroup(cgroup);
  if (!dir) return dir.error();
  // Every program that applies, its parents' too: LXC may put its program on a parent cgroup.
  auto q = query(dir->get(), true);
  if (!q) return q.error();
  if (q->ids.empty()) return std::optional<bool>{};
  for (uint32_t id : q->ids) {
    UniqueFd fd = fd_by_id(id);
    if (!fd) return bpf_error("cannot open device program " + std::to_string(id));
    auto info = info_of(fd.get());
    if (!info) return info.error();
    auto yes =
        bpf::evaluate(info->insns, {bpf::kDevChar, major, minor, bpf::kAccRead | bpf::kAccWrite});
    if (!yes || !*yes) return std::optional<bool>{false};
  }
  return std::optional<bool>{true};
}

Expected<ProgramChange> DevicePrograms::allow(const std::string& cgroup, unsigned major,
                                              unsigned minor) {
  return change(cgroup, {major, minor}, true);
}

Expected<ProgramChange> DevicePrograms::deny(const std::string& cgroup, unsigned major,
                                             unsigned minor) {
  return change(cgroup, {major, minor}, false);
}

Expected<ProgramChange> DevicePrograms::change(const std::string& cgroup, const bpf::Device& dev,
                                               bool add) {
  if (cgroup.empty() || cgroup == "/") return ProgramChange{};
  auto dir = open_cgroup(cgroup);
  if (!dir) return dir.error();
  uint64_t cgroup_id = 0;  // its inode, read once it has a program of its own
  const std::string where = " on cgroup " + cgroup;

  // A runtime may swap its program between our query and our replace (ENOENT): start over.
  for (int attempt = 0; attempt < kRaceRetries; ++attempt) {
    auto q = query(dir->get(), false);
    if (!q) return q.error();
    ProgramChange out;
    out.already = true;
    if (q->ids.empty()) {
      if (!add) return ProgramChange{};
      // Nothing of its own, but a parent's program still applies to it (programs AND): only that
      // parent's owner can let the device through.
      auto effective = query(dir->get(), true);
      if (effective && !effective->ids.empty())
        return make_error(ErrorCode::attach_failed,
                          "device access for cgroup " + cgroup +
                              " is decided by a device program on a parent cgroup; berth changes "
                              "only the container's own cgroup");
      return ProgramChange{};
    }
    out.present = true;
    if (cgroup_id == 0) {
      struct stat st {};
      if (::fstat(dir->get(), &st) != 0) return bpf_error("cannot stat the cgroup");
      cgroup_id = st.st_ino;
    }
    bool raced = false;
    // What is attached as this loop swaps: a kept program already among them must not be
    // attached a second time.
    std::vector<uint32_t> attached = q->ids;
    for (uint32_t id : q->ids) {
      UniqueFd current = fd_by_id(id);
      if (!current) {
        if (errno == ENOENT) {
          raced = true;
          break;
        }
        return bpf_error("cannot open device program " + std::to_string(id) + where);
      }
      auto info = info_of(current.get());
      if (!info) return info.error();
      auto wrapped = bpf::unwrap(info->insns);
      std::set<bpf::Device> devices = wrapped ? wrapped->devices : std::set<bpf::Device>{};
      const std::vector<bpf::Insn>& inner = wrapped ? wrapped->inner : info->insns;

      if (add) {
        if (devices.count(dev)) continue;
        auto allows = bpf::evaluate(
            inner, {bpf::kDevChar, dev.first, dev.second, bpf::kAccRead | bpf::kAccWrite});
        if (allows && *allows) continue;
        if (auto ok = bpf::check_wrappable(inner); !ok)
          return make_error(ok.error().code,
                            ok.error().message + " (program " + std::to_string(id) + where + ")");
        devices.insert(dev);
      } else {
        // Not berth's (the runtime replaced it meanwhile: berth's rules went with the old one),
        // or berth's without this device: nothing to take back here.
        if (!wrapped || !devices.erase(dev)) continue;
      }
      out.already = false;

      UniqueFd original = original_of(cgroup_id, id);
      UniqueFd next;
      uint32_t next_id = 0;  // 0: ask the kernel once it is attached
      bool restoring = false;
      if (devices.empty() && original) {
        auto held = info_of(original.get());
        if (held && held->insns == inner) {
          next = dup_fd(original.get());
          restoring = static_cast<bool>(next);
          next_id = held->id;
        }
      }
      // After a restart without a pin berth no longer holds the original: the same
      // instructions, loaded again, are the same program under a new id.
      std::vector<bpf::Insn> wanted;
      std::optional<LoadedPrograms::Key> key;
      if (!next) {
        wanted = devices.empty() ? inner : bpf::wrap(devices, inner);
        key = LoadedPrograms::key_of(cgroup_id, wanted);
        std::tie(next, next_id) = loaded_.find(*key, attached);
      }
      const bool load = !next;
      if (load) {
        auto loaded = load_device_program(wanted);
        if (!loaded) return loaded.error();
        next = std::move(*loaded);
      }
      if (auto s = swap(dir->get(), q->flags, current.get(), next.get()); !s) {
        if (errno == ENOENT) {
          raced = true;
          break;
        }
        return make_error(s.error().code, s.error().message + where);
      }
      if (next_id == 0) {
        auto next_info = info_of(next.get());
        next_id = next_info ? next_info->id : 0;
      }
      std::replace(attached.begin(), attached.end(), id, next_id);
      if (load) loaded_.keep(std::move(*key), next.get(), next_id);
      if (!out.note.empty()) out.note += ", ";
      out.note += "device program " + std::to_string(id) + " -> " + std::to_string(next_id) +
                  (restoring ? " (the runtime's own, restored)" : "");
      // Keep the runtime's program alive for as long as a berth program stands in for it.
      UniqueFd keep = original ? std::move(original) : wrapped ? UniqueFd() : std::move(current);
      forget_original(cgroup_id, id);
      if (!devices.empty() && keep) keep_original(cgroup_id, next_id, std::move(keep));
    }
    if (!raced) return out;
  }
  return make_error(ErrorCode::busy, "the device program on cgroup " + cgroup +
                                         " kept changing while berth replaced it; try again");
}

bool is_bpffs(const std::string& path) {
  struct statfs fs {};
  return ::statfs(path.c_str(), &fs) == 0 && fs.f_type == BPF_FS_MAGIC;
}

Status prepare_pin_dir(const std::string& dir) {
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return bpf_error("cannot create " + dir);
  if (is_bpffs(dir)) return ok_status();
  if (::mount("bpf", dir.c_str(), "bpf", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0700") != 0)
    return bpf_error("cannot mount a bpffs on " + dir);
  return ok_status();
}

std::vector<std::string> sweep_stale_pins(const std::string& pin_dir) {
  std::vector<std::string> removed;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(pin_dir, ec)) {
    const std::string name = e.path().filename().string();
    // "original-<cgroup id>-<stand-in program id>"
    const auto dash = name.rfind('-');
    if (name.rfind("original-", 0) != 0 || dash <= 9) continue;
    uint32_t id = 0;
    const auto* first = name.data() + dash + 1;
    const auto* last = name.data() + name.size();
    if (std::from_chars(first, last, id).ptr != last || id == 0) continue;
    if (fd_by_id(id) || errno != ENOENT) continue;
    if (::unlink(e.path().c_str()) == 0) removed.push_back(name);
  }
  return removed;
}

std::string DevicePrograms::pin_path(uint64_t cgroup_id, uint32_t id) const {
  return pin_dir_ + "/original-" + std::to_string(cgroup_id) + "-" + std::to_string(id);
}

UniqueFd DevicePrograms::original_of(uint64_t cgroup_id, uint32_t id) {
  if (auto it = originals_.find({cgroup_id, id}); it != originals_.end())
    return dup_fd(it->second.get());
  if (pin_dir_.empty()) return {};
  const std::string path = pin_path(cgroup_id, id);
  bpf_attr attr{};
  attr.pathname = reinterpret_cast<uint64_t>(path.c_str());
  UniqueFd fd(static_cast<int>(sys_bpf(BPF_OBJ_GET, attr)));
  if (fd) originals_[{cgroup_id, id}] = dup_fd(fd.get());
  return fd;
}

void DevicePrograms::keep_original(uint64_t cgroup_id, uint32_t id, UniqueFd fd) {
  if (!pin_dir_.empty()) {
    const std::string path = pin_path(cgroup_id, id);
    bpf_attr attr{};
    attr.pathname = reinterpret_cast<uint64_t>(path.c_str());
    attr.bpf_fd = static_cast<uint32_t>(fd.get());
    // A pin of that name left from before is out of date: a kept berth program (same id) stood
    // in for another runtime program then, one the runtime has since replaced.
    bool pinned = sys_bpf(BPF_OBJ_PIN, attr) == 0;
    if (!pinned && errno == EEXIST && ::unlink(path.c_str()) == 0)
      pinned = sys_bpf(BPF_OBJ_PIN, attr) == 0;
    // Without the pin it is still held in memory; only a restart then loses the exact program.
    if (!pinned) spdlog::warn("BERTH_BPF_PIN_FAILED {}: {}", path, std::strerror(errno));
  }
  originals_[{cgroup_id, id}] = std::move(fd);
}

void DevicePrograms::forget_original(uint64_t cgroup_id, uint32_t id) {
  originals_.erase({cgroup_id, id});
  if (!pin_dir_.empty()) ::unlink(pin_path(cgroup_id, id).c_str());
}

namespace {

// Adds what the processes listed in `procs_fd` (a cgroup.procs) hold open to `out`.
void add_held_by_procs(int procs_fd, HeldDevices& out) {
  std::string text;
  char buf[4096];
  for (ssize_t n; (n = ::read(procs_fd, buf, sizeof buf)) > 0;)
    text.append(buf, static_cast<size_t>(n));
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    const std::string pid = text.substr(start, end - start);
    start = end + 1;
    if (pid.empty()) continue;
    const std::string fds = "/proc/" + pid + "/fd";
    DIR* d = ::opendir(fds.c_str());
    if (!d) continue;
    while (dirent* e = ::readdir(d)) {
      if (e->d_name[0] == '.') continue;
      struct stat st {};
      // fstatat through the fd's magic link describes the open file itself; nothing is opened.
      if (::fstatat(::dirfd(d), e->d_name, &st, 0) == 0 && S_ISCHR(st.st_mode))
        out[{major(st.st_rdev), minor(st.st_rdev)}].push_back("pid " + pid + " (fd " + e->d_name +
                                                              ")");
    }
    ::closedir(d);
  }
}

// The names of the child cgroups of `dir`.
std::vector<std::string> child_cgroups(int dir) {
  std::vector<std::string> out;
  UniqueFd listing(::openat(dir, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!listing) return out;
  DIR* d = ::fdopendir(listing.get());
  if (!d) return out;
  (void)listing.release();
  while (dirent* e = ::readdir(d))
    if (e->d_type == DT_DIR && e->d_name[0] != '.') out.emplace_back(e->d_name);
  ::closedir(d);
  return out;
}

}  // namespace

HeldDevices DevicePrograms::held_devices(const std::string& cgroup) {
  HeldDevices out;
  auto dir = open_cgroup(cgroup);
  if (!dir) return out;
  // The container's processes may sit in cgroups below its own (a systemd or a runtime inside
  // it): those are read too, up to a number a container that makes cgroups cannot stretch. They
  // are kept as paths beneath the container's cgroup, one directory open at a time.
  constexpr size_t kMaxCgroups = 1024;
  std::vector<std::string> left{""};
  for (size_t visited = 0; !left.empty() && visited < kMaxCgroups; ++visited) {
    const std::string below = std::move(left.back());
    left.pop_back();
    UniqueFd sub;
    if (!below.empty()) sub = open_beneath(dir->get(), below, O_RDONLY | O_DIRECTORY);
    const int at = below.empty() ? dir->get() : sub.get();
    if (at < 0) continue;  // gone meanwhile
    if (UniqueFd procs = open_beneath(at, "cgroup.procs", O_RDONLY))
      add_held_by_procs(procs.get(), out);
    for (auto& child : child_cgroups(at))
      if (visited + 1 + left.size() < kMaxCgroups)
        left.push_back(below.empty() ? child : below + "/" + child);
  }
  return out;
}

}  // namespace berth::agent
