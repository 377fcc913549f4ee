#include "agent/host/nvml.hpp"

#include <dlfcn.h>

namespace berth::agent {
namespace {

// The few NVML entry points used, with the ABI of nvml.h (NVML_SUCCESS is 0).
using nvmlDevice_t = void*;
struct NvmlUtilization {
  unsigned int gpu;
  unsigned int memory;
};
struct NvmlMemory {
  unsigned long long total;
  unsigned long long free;
  unsigned long long used;
};
using InitFn = int (*)();
using ShutdownFn = int (*)();
using ByPciFn = int (*)(const char*, nvmlDevice_t*);
using UtilFn = int (*)(nvmlDevice_t, NvmlUtilization*);
using MemFn = int (*)(nvmlDevice_t, NvmlMemory*);

template <typename F>
F symbol(void* lib, const char* name) {
  return reinterpret_cast<F>(::dlsym(lib, name));
}

}  // namespace

Nvml::Nvml() {
  lib_ = ::dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!lib_) {
    why_ = "NVML (libnvidia-ml.so.1) is not installed on this node: no GPU utilisation or memory";
    return;
  }
  auto init = symbol<InitFn>(lib_, "nvmlInit_v2");
  if (!init || init() != 0) {
    why_ = "NVML is installed but did not initialise (driver not loaded?)";
    ::dlclose(lib_);
    lib_ = nullptr;
  }
}

Nvml::~Nvml() {
  if (!lib_) return;
  if (auto shutdown = symbol<ShutdownFn>(lib_, "nvmlShutdown")) shutdown();
  ::dlclose(lib_);
}

std::optional<GpuStats> Nvml::stats(const std::string& pci) const {
  if (!lib_) return std::nullopt;
  auto by_pci = symbol<ByPciFn>(lib_, "nvmlDeviceGetHandleByPciBusId_v2");
  auto util = symbol<UtilFn>(lib_, "nvmlDeviceGetUtilizationRates");
  auto mem = symbol<MemFn>(lib_, "nvmlDeviceGetMemoryInfo");
  nvmlDevice_t dev = nullptr;
  if (!by_pci || !util || !mem || by_pci(pci.c_str(), &dev) != 0) return std::nullopt;
  NvmlUtilization u{};
  NvmlMemory m{};
  GpuStats s;
  if (util(dev, &u) == 0) s.utilization_percent = u.gpu;
  if (mem(dev, &m) == 0) {
    s.memory_used = m.used;
    s.memory_total = m.total;
  }
  return s;
}

}  // namespace berth::agent
