#include "agent/host/loaded_programs.hpp"

#include <algorithm>
#include <cstring>

namespace berth::agent {

LoadedPrograms::Key LoadedPrograms::key_of(uint64_t cgroup_id,
                                           const std::vector<bpf::Insn>& insns) {
  std::string bytes(insns.size() * sizeof(bpf::Insn), '\0');
  if (!insns.empty()) std::memcpy(bytes.data(), insns.data(), bytes.size());
  return {cgroup_id, std::move(bytes)};
}

std::pair<UniqueFd, uint32_t> LoadedPrograms::find(const Key& key,
                                                   const std::vector<uint32_t>& attached) {
  auto it = kept_.find(key);
  if (it == kept_.end()) return {};
  if (std::find(attached.begin(), attached.end(), it->second.id) != attached.end()) return {};
  UniqueFd copy = dup_fd(it->second.fd.get());
  if (!copy) return {};
  it->second.used = ++clock_;
  return {std::move(copy), it->second.id};
}

void LoadedPrograms::keep(Key key, int fd, uint32_t id) {
  if (capacity_ == 0 || id == 0) return;
  UniqueFd copy = dup_fd(fd);
  if (!copy) return;  // not kept: the next step loads it again
  if (!kept_.count(key) && kept_.size() >= capacity_) {
    auto oldest = std::min_element(kept_.begin(), kept_.end(), [](const auto& a, const auto& b) {
      return a.second.used < b.second.used;
    });
    kept_.erase(oldest);
  }
  kept_[std::move(key)] = Kept{std::move(copy), id, ++clock_};
}

}  // namespace berth::agent
