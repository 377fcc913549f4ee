#pragma once
// cgroup v2 device access for a container: berth's devices wrapped in front of each device program
// on the container's own cgroup (core/device_program.hpp), swapped in atomically with
// BPF_F_REPLACE, and the runtime's program put back when berth's last device leaves.
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "agent/host/cgroup_dirs.hpp"
#include "agent/host/loaded_programs.hpp"
#include "agent/host/unique_fd.hpp"
#include "core/device_program.hpp"
#include "core/expected.hpp"

namespace berth::agent {

// c major:minor -> "pid P (fd F)" for each descriptor open on that character device.
using HeldDevices = std::map<std::pair<unsigned, unsigned>, std::vector<std::string>>;

struct ProgramChange {
  bool present = false;  // the cgroup has a device program of its own (v2 decides access)
  bool already = false;  // every such program allowed the device before berth changed anything
  std::string note;      // "program 97 -> 101", the ids for the log and the ledger
};

// The cgroup v2 mount: `root` itself when it is cgroup2 (a pure v2 host), else `root`/unified
// (hybrid), else empty.
std::string find_unified_mount(const std::string& root);

// Loads a device program; what a container runtime does, for tests and benchmarks too.
Expected<UniqueFd> load_device_program(const std::vector<bpf::Insn>& insns);
// Attaches `prog_fd` to `cgroup_fd` with BPF_F_ALLOW_MULTI, or in place of `replace_fd` (>= 0)
// with BPF_F_REPLACE, as runc and crun do.
Status attach_device_program(int cgroup_fd, int prog_fd, int replace_fd = -1);
UniqueFd device_program_by_id(uint32_t id);

// Makes `dir` (mode 0700) a directory on a bpffs: inside one (/sys/fs/bpf/berth), or a bpffs
// of its own mounted there; pinned programs outlive berthd's restarts (not a reboot).
Status prepare_pin_dir(const std::string& dir);
bool is_bpffs(const std::string& path);
// Removes the pins in `pin_dir` whose stand-in (the berth program whose id the pin's name
// carries) no longer exists: its cgroup went with its container, or the runtime replaced it, so
// the runtime program the pin keeps alive will never be put back. Returns their names.
std::vector<std::string> sweep_stale_pins(const std::string& pin_dir);

class DevicePrograms {
 public:
  // With a `pin_dir` (a bpffs, prepare_pin_dir), each runtime program berth stands in for is
  // also pinned there, so that after a restart detach still puts back exactly that program.
  // With `dirs`, cgroup directories are kept there (see cgroup_dirs.hpp). The programs it loads
  // are kept for reuse on the same cgroup (see loaded_programs.hpp).
  explicit DevicePrograms(std::string unified_mount, std::string pin_dir = {},
                          CgroupDirs* dirs = nullptr)
      : mount_(std::move(unified_mount)), pin_dir_(std::move(pin_dir)), dirs_(dirs) {}

  // `cgroup` is the "0::" path of /proc/<pid>/cgroup, relative to the mount.
  Expected<ProgramChange> allow(const std::string& cgroup, unsigned major, unsigned minor);
  Expected<ProgramChange> deny(const std::string& cgroup, unsigned major, unsigned minor);
  // false only when the cgroup is not there; a failure to look is an error.
  Expected<bool> exists(const std::string& cgroup);
  // What the device programs that apply to `cgroup` (its own and its parents') say of c
  // major:minor read+write: none (nullopt), or whether all of them allow it (a program berth
  // cannot read counts as denying).
  Expected<std::optional<bool>> allows(const std::string& cgroup, unsigned major, unsigned minor);
  // The ids of the device programs attached to `cgroup` itself.
  Expected<std::vector<uint32_t>> attached(const std::string& cgroup);
  // Every character device the processes in `cgroup` hold open, "pid 123 (fd 4)" for each
  // descriptor: a revoked device stays usable through descriptors opened before. One pass over
  // the processes' descriptors, however many devices a detach then looks up in it.
  HeldDevices held_devices(const std::string& cgroup);

 private:
  Expected<CgroupDir> open_cgroup(const std::string& cgroup);
  Expected<ProgramChange> change(const std::string& cgroup, const bpf::Device& dev, bool add);

  // The runtime's program berth's program `id` on cgroup `cgroup_id` stands in for: held in
  // memory, else (after a restart) from its pin.
  UniqueFd original_of(uint64_t cgroup_id, uint32_t id);
  void keep_original(uint64_t cgroup_id, uint32_t id, UniqueFd fd);
  void forget_original(uint64_t cgroup_id, uint32_t id);
  std::string pin_path(uint64_t cgroup_id, uint32_t id) const;

  std::string mount_;
  std::string pin_dir_;
  CgroupDirs* dirs_;
  // The runtime's program each berth program replaced, by (cgroup inode, berth program id): held
  // open so that the last detach puts back exactly that program.
  std::map<std::pair<uint64_t, uint32_t>, UniqueFd> originals_;
  // berth's programs, kept for the next step on the same cgroup that needs the same instructions.
  LoadedPrograms loaded_;
};

}  // namespace berth::agent
