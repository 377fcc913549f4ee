#pragma once
// A node with a GPU in MIG mode and another vendor's GPU: the two-socket fixture copied to `root`
// with the NVIDIA driver's capability files (GPU 0 with instances gi1/ci0 and gi2/ci0), a
// /proc/devices naming the nvidia-caps major, and an AMD GPU with a render node and /dev/kfd.
// Device nodes are links to real char devices (virtual consoles, major 4) so a container can
// open them; proc/devices says nvidia-caps is major 4 to match.
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#include "agent/app/config.hpp"

namespace berth::testing {

inline constexpr std::string_view kAmdGpu = "0000:c1:00.0";

inline agent::Config gpu_kinds_fixture(const std::filesystem::path& root) {
  namespace fs = std::filesystem;
  fs::remove_all(root);
  fs::copy(std::string(BERTH_FIXTURES) + "/two-socket", root,
           fs::copy_options::recursive | fs::copy_options::copy_symlinks);
  // A block driver of the same name must not be taken for it.
  std::ofstream(root / "proc/devices") << "Character devices:\n  1 mem\n  4 nvidia-caps\n"
                                          "195 nvidia\nBlock devices:\n  8 sd\n  9 nvidia-caps\n";
  const fs::path mig = root / "proc/driver/nvidia/capabilities/gpu0/mig";
  const auto cap = [&](const fs::path& dir, int minor) {
    fs::create_directories(dir);
    std::ofstream(dir / "access") << "DeviceFileMinor: " << minor << "\nDeviceFileMode: 292\n"
                                  << "DeviceFileModify: 1\n";
    fs::create_directories(root / "dev/nvidia-caps");
    fs::create_symlink("/dev/tty" + std::to_string(minor),
                       root / "dev/nvidia-caps" / ("nvidia-cap" + std::to_string(minor)));
  };
  cap(mig / "gi1", 30);
  cap(mig / "gi1/ci0", 31);
  cap(mig / "gi2", 32);
  cap(mig / "gi2/ci0", 33);
  const fs::path amd = root / "sys/bus/pci/devices" / std::string(kAmdGpu);
  fs::create_directories(amd / "drm/renderD128");
  fs::create_directories(amd / "drm/card1");
  std::ofstream(amd / "vendor") << "0x1002\n";
  std::ofstream(amd / "device") << "0x74a1\n";
  std::ofstream(amd / "class") << "0x038000\n";
  std::ofstream(amd / "numa_node") << "1\n";
  fs::create_directories(root / "dev/dri");
  fs::create_symlink("/dev/tty34", root / "dev/dri/renderD128");
  fs::create_symlink("/dev/tty36", root / "dev/dri/card1");
  fs::create_symlink("/dev/tty35", root / "dev/kfd");

  agent::Config c;
  c.sysfs_root = (root / "sys").string();
  c.dev_root = (root / "dev").string();
  c.proc_root = (root / "proc").string();
  c.passthrough_iommu_groups = {70};
  c.gpu_vendors = {{"0x1002", {"0x0300", "0x0380"}, {"drm:render", "kfd"}}};
  return c;
}

}  // namespace berth::testing
