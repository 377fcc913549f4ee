#pragma once
// GPU utilisation and memory through NVML, loaded with dlopen at run time
// (libnvidia-ml.so.1 comes with the NVIDIA driver, not with berth). Without it, `available()` is
// false and `why()` says so; nothing else in berth depends on it.
#include <cstdint>
#include <optional>
#include <string>

namespace berth::agent {

struct GpuStats {
  unsigned utilization_percent = 0;
  uint64_t memory_used = 0;
  uint64_t memory_total = 0;
};

class Nvml {
 public:
  Nvml();  // tries to load and initialise NVML once
  ~Nvml();
  Nvml(const Nvml&) = delete;
  Nvml& operator=(const Nvml&) = delete;
  bool available() const { return lib_ != nullptr; }
  const std::string& why() const { return why_; }
  std::optional<GpuStats> stats(const std::string& pci) const;

 private:
  void* lib_ = nullptr;
  std::string why_;
};

}  // namespace berth::agent
