#pragma once
// The device programs berth loaded for a cgroup, kept for the next step that needs the same
// instructions there. Loading a program runs the kernel's verifier: about 0.3-0.5 ms on the bench
// VM, most of a cgroup v2 attach. A GPU attach loads one program per device (its wrap grows by
// one device a step) and its detach the same sets again in reverse (each shrinks by one): kept,
// the detach loads none, and neither does the next attach and detach of the same container.
//
// Kept per cgroup (its inode): a berth program then only ever stands in on the cgroup it was
// loaded for, so its id still says whose runtime program a pin keeps (sweep_stale_pins). A kept
// program is only ever handed out for exactly the instructions it was loaded from, and a loaded
// program cannot change.
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "agent/host/unique_fd.hpp"
#include "core/device_program.hpp"

namespace berth::agent {

class LoadedPrograms {
 public:
  explicit LoadedPrograms(size_t capacity = 64) : capacity_(capacity) {}

  using Key = std::pair<uint64_t, std::string>;  // cgroup inode, the instructions' bytes
  static Key key_of(uint64_t cgroup_id, const std::vector<bpf::Insn>& insns);

  // A new descriptor of the program loaded for `key`, and its id; invalid when none is kept, or
  // when it is one of `attached` (the kernel attaches a program to a cgroup once: a second
  // program with the same instructions must be loaded anew).
  std::pair<UniqueFd, uint32_t> find(const Key& key, const std::vector<uint32_t>& attached);
  // Keeps a descriptor of `fd` (program `id`, loaded for `key`); past the capacity, the one
  // used longest ago goes.
  void keep(Key key, int fd, uint32_t id);
  size_t kept() const { return kept_.size(); }

 private:
  struct Kept {
    UniqueFd fd;
    uint32_t id = 0;
    uint64_t used = 0;
  };

  size_t capacity_;
  uint64_t clock_ = 0;
  std::map<Key, Kept> kept_;
};

}  // namespace berth::agent
