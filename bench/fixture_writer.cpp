#include "bench/fixture_writer.hpp"

#include <cstdio>
#include <filesystem>
#include <fstream>

namespace berth::bench {
namespace fs = std::filesystem;

namespace {

void put(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p) << text << "\n";
}

std::string pci(int bus, int dev, int fn) {
  char s[32];
  std::snprintf(s, sizeof s, "0000:%02x:%02x.%d", bus, dev, fn);
  return s;
}

}  // namespace

std::string vf_name(int n) {
  return "bb" + std::to_string(n);
}

void write_fixture(const std::string& root, int vfs_per_node) {
  fs::remove_all(root);
  const fs::path sys = fs::path(root) / "sys";
  const fs::path nodes = sys / "devices/system/node";
  put(nodes / "node0/cpulist", "0");
  put(nodes / "node0/distance", "10 21");
  put(nodes / "node1/cpulist", "1");
  put(nodes / "node1/distance", "21 10");
  put(nodes / "has_memory", "0");
  const fs::path devs = sys / "bus/pci/devices";
  const char* gpu_nodes[] = {"/dev/fuse", "/dev/loop-control"};
  fs::create_directories(fs::path(root) / "dev");
  fs::create_symlink("/dev/cpu_dma_latency", fs::path(root) / "dev/nvidiactl");
  for (int n = 0; n < 2; ++n) {
    const fs::path gpu = devs / pci(0x10 + n, 0, 0);
    put(gpu / "vendor", "0x10de");
    put(gpu / "device", "0x2330");
    put(gpu / "class", "0x030200");
    put(gpu / "numa_node", std::to_string(n));
    fs::create_symlink(gpu_nodes[n], fs::path(root) / ("dev/nvidia" + std::to_string(n)));
    const fs::path pf = devs / pci(0x80 + n, 0, 0);
    put(pf / "vendor", "0x15b3");
    put(pf / "class", "0x020700");
    put(pf / "numa_node", std::to_string(n));
    put(pf / "sriov_numvfs", std::to_string(vfs_per_node));
    for (int v = 0; v < vfs_per_node; ++v) {
      const std::string addr = pci(0x80 + n, 1 + v / 8, v % 8);
      const fs::path vf = devs / addr;
      put(vf / "vendor", "0x15b3");
      put(vf / "class", "0x020700");
      put(vf / "numa_node", std::to_string(n));
      fs::create_directories(vf / "net" / vf_name(n * vfs_per_node + v));
      fs::create_symlink("../" + pci(0x80 + n, 0, 0), vf / "physfn");
      fs::create_symlink("../" + addr, pf / ("virtfn" + std::to_string(v)));
    }
  }
}

}  // namespace berth::bench
