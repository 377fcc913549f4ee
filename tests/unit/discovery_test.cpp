#include <gtest/gtest.h>

#include "agent/host/device_nodes.hpp"
#include "agent/host/discovery.hpp"
#include "core/inventory.hpp"
#include "tests/fakes/inventories.hpp"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

namespace berth::agent {
namespace {

Config fixture(const std::string& name) {
  Config c;
  std::string root = std::string(BERTH_FIXTURES) + "/" + name;
  c.sysfs_root = root + "/sys";
  c.dev_root = root + "/dev";
  c.proc_root = root + "/proc";
  c.passthrough_iommu_groups = {70};
  return c;
}

}  // namespace

TEST(Discovery, TwoSocketNode) {
  auto d = discover(fixture("two-socket"));
  ASSERT_TRUE(d) << d.error().message;
  const auto& inv = d->inventory;
  ASSERT_EQ(inv.numa_nodes.size(), 2u);
  EXPECT_EQ(inv.numa_nodes[0].cpus, std::vector<int>{0});
  EXPECT_EQ(inv.numa_nodes[1].cpus, std::vector<int>{1});
  EXPECT_TRUE(inv.numa_nodes[0].has_memory);
  EXPECT_FALSE(inv.numa_nodes[1].has_memory);
  EXPECT_EQ(inv.numa_nodes[1].memory_node, 0);
  EXPECT_EQ(inv.numa_distance(0, 1), 21);

  ASSERT_EQ(inv.gpus.size(), 8u);
  const Gpu& g0 = inv.gpus[0];
  EXPECT_EQ(g0.pci, "0000:17:00.0");
  EXPECT_EQ(g0.index, 0);
  EXPECT_EQ(g0.numa, 0);
  EXPECT_EQ(g0.iommu_group, 20);
  ASSERT_EQ(g0.devices.size(), 2u);
  EXPECT_EQ(g0.devices[0].path, "/dev/nvidia0");
  // Device numbers come from the node in dev_root (a link to /dev/fuse), never assumed.
  EXPECT_EQ(g0.devices[0].major, 10u);
  EXPECT_EQ(g0.devices[0].minor, 229u);
  EXPECT_EQ(g0.devices[1].path, "/dev/nvidiactl");
  EXPECT_EQ(inv.gpus[6].iommu_group, 70);
  EXPECT_EQ(inv.gpus[7].iommu_group, 70);
  EXPECT_TRUE(inv.is_passthrough(70));
  EXPECT_EQ(inv.gpus[4].numa, 1);

  ASSERT_EQ(inv.hcas.size(), 2u);
  EXPECT_EQ(inv.hcas[0].netdev, "ibp26s0");
  EXPECT_EQ(inv.hcas[0].rdma, "mlx5_0");
  EXPECT_EQ(inv.hcas[0].vfs.size(), 8u);
  ASSERT_EQ(inv.vfs.size(), 16u);
  EXPECT_EQ(inv.vfs[0].pci, "0000:1a:00.1");
  EXPECT_EQ(inv.vfs[0].pf_pci, "0000:1a:00.0");
  EXPECT_EQ(inv.vfs[0].netdev, "bvf0x0");
  EXPECT_EQ(inv.vfs[0].rdma, "mlx5_2");
  EXPECT_EQ(inv.vfs[7].pci, "0000:1a:01.0");
  EXPECT_EQ(inv.vfs[7].vf_index, 7);
  EXPECT_EQ(inv.vfs[7].mtu, 1500);
  EXPECT_EQ(inv.vfs[8].numa, 1);
  EXPECT_TRUE(d->warnings.empty()) << d->warnings.front();
}

TEST(Discovery, LabServer) {
  auto d = discover(fixture("lab-server"));
  ASSERT_TRUE(d) << d.error().message;
  EXPECT_EQ(d->inventory.numa_nodes.size(), 1u);
  EXPECT_EQ(d->inventory.numa_nodes[0].cpus, (std::vector<int>{0, 1}));
  EXPECT_EQ(d->inventory.gpus.size(), 4u);
  EXPECT_TRUE(d->inventory.vfs.empty());
}

TEST(Discovery, EmptyMachine) {
  auto d = discover(fixture("empty"));
  ASSERT_TRUE(d) << d.error().message;
  EXPECT_EQ(d->inventory.numa_nodes.size(), 1u);
  EXPECT_TRUE(d->inventory.gpus.empty());
  EXPECT_TRUE(d->inventory.hcas.empty());
}

TEST(Discovery, MissingDeviceNodeIsAWarningNotAGuess) {
  auto c = fixture("two-socket");
  c.dev_root = std::string(BERTH_FIXTURES) + "/empty/dev";
  auto d = discover(c);
  ASSERT_TRUE(d);
  EXPECT_TRUE(d->inventory.gpus.empty());
  EXPECT_FALSE(d->warnings.empty());
}

TEST(Discovery, NoNodesAtAllIsAnError) {
  Config c;
  c.sysfs_root = "/nonexistent";
  EXPECT_FALSE(discover(c));
}

}  // namespace berth::agent

namespace berth::agent {
namespace {

// The device sets: a GPU's control nodes include nvidia-modeset when the host has it; an
// InfiniBand VF brings its verbs, umad and issm nodes and the shared rdma_cm; ib_core's netns
// mode comes from its module parameter.
TEST(Discovery, DeviceSetsOfGpusAndInfinibandVfsAndTheRdmaNetnsMode) {
  namespace fs = std::filesystem;
  const fs::path root = fs::temp_directory_path() / ("berth-disc-" + std::to_string(::getpid()));
  fs::remove_all(root);
  fs::copy(std::string(BERTH_FIXTURES) + "/two-socket", root,
           fs::copy_options::recursive | fs::copy_options::copy_symlinks);
  fs::create_symlink("/dev/zero", root / "dev/nvidia-modeset");
  const fs::path vf = root / "sys/bus/pci/devices/0000:1a:00.1";
  fs::create_directories(vf / "infiniband_verbs/uverbs3");
  fs::create_directories(vf / "infiniband_mad/umad3");
  fs::create_directories(vf / "infiniband_mad/issm3");
  fs::create_directories(root / "dev/infiniband");
  fs::create_symlink("/dev/full", root / "dev/infiniband/uverbs3");
  fs::create_symlink("/dev/random", root / "dev/infiniband/umad3");
  fs::create_symlink("/dev/urandom", root / "dev/infiniband/issm3");
  fs::create_symlink("/dev/tty", root / "dev/infiniband/rdma_cm");
  fs::create_directories(root / "sys/module/ib_core/parameters");
  std::ofstream(root / "sys/module/ib_core/parameters/netns_mode") << "N\n";

  Config c;
  c.sysfs_root = (root / "sys").string();
  c.dev_root = (root / "dev").string();
  c.proc_root = (root / "proc").string();
  auto d = discover(c);
  fs::remove_all(root);
  ASSERT_TRUE(d) << d.error().message;
  std::vector<std::string> gpu_nodes;
  for (const auto& n : d->inventory.gpus[0].devices) gpu_nodes.push_back(n.path);
  EXPECT_NE(std::find(gpu_nodes.begin(), gpu_nodes.end(), "/dev/nvidia-modeset"), gpu_nodes.end());
  const Vf* v = d->inventory.vf_by_pci("0000:1a:00.1");
  ASSERT_TRUE(v);
  std::vector<std::string> vf_nodes;
  for (const auto& n : v->devices) vf_nodes.push_back(n.path);
  EXPECT_EQ(vf_nodes,
            (std::vector<std::string>{"/dev/infiniband/uverbs3", "/dev/infiniband/issm3",
                                      "/dev/infiniband/umad3", "/dev/infiniband/rdma_cm"}));
  EXPECT_EQ(d->inventory.rdma_netns, "exclusive");
  EXPECT_TRUE(d->inventory.vf_by_pci("0000:1a:00.2")->devices.empty());
}

}  // namespace
}  // namespace berth::agent

namespace berth::agent {
namespace {

TEST(CharLinks, MissingDevCharLinksAreMadeAndExistingEntriesKept) {
  namespace fs = std::filesystem;
  const fs::path dev = fs::temp_directory_path() / ("berth-devchar-" + std::to_string(::getpid()));
  fs::remove_all(dev);
  fs::create_directories(dev / "char");
  fs::create_symlink("../somewhere-else", dev / "char/195:255");  // someone else's: kept
  const std::vector<CharDevice> nodes{{"/dev/nvidia0", 195, 0},
                                      {"/dev/nvidiactl", 195, 255},
                                      {"/dev/nvidia-caps/nvidia-cap1", 237, 1}};
  auto made = ensure_char_links(dev.string(), nodes);
  EXPECT_EQ(made,
            (std::vector<std::string>{dev.string() + "/char/195:0", dev.string() + "/char/237:1"}));
  EXPECT_EQ(fs::read_symlink(dev / "char/195:0"), "../nvidia0");
  EXPECT_EQ(fs::read_symlink(dev / "char/237:1"), "../nvidia-caps/nvidia-cap1");
  EXPECT_EQ(fs::read_symlink(dev / "char/195:255"), "../somewhere-else");
  EXPECT_TRUE(ensure_char_links(dev.string(), nodes).empty()) << "made once";
  fs::remove_all(dev);
}

// A VF moved into or out of a container (by berth or any other tool) is a remove and an add
// of its netdev: neither is worth reading sysfs again for. A device of another subsystem, or a
// netdev on the host that the inventory does not know (an IPoIB netdev made after its HCA), is.
TEST(Discovery, OnlyUeventsThatMayChangeTheInventoryAskForARescan) {
  Inventory inv = testing::two_socket();
  ASSERT_FALSE(inv.vfs.empty());
  inv.vfs[0].rdma = "mlx5_3";
  const std::string vf = inv.vfs[0].netdev;
  auto may = [&](const char* action, const char* subsystem, const std::string& name,
                 bool on_host = true) {
    return uevent_may_change_inventory(inv, action, subsystem, name, on_host);
  };
  EXPECT_FALSE(may("remove", "net", vf));
  EXPECT_FALSE(may("remove", "net", "veth1234"));
  EXPECT_FALSE(may("add", "net", vf));
  EXPECT_FALSE(may("move", "net", vf));
  EXPECT_FALSE(may("add", "net", "ib0", false)) << "a veth, or a netdev in a container's namespace";
  EXPECT_TRUE(may("add", "net", "ib0")) << "a netdev new to the host";
  EXPECT_TRUE(may("change", "net", vf));
  EXPECT_FALSE(may("add", "infiniband", "mlx5_3"));
  EXPECT_FALSE(may("remove", "infiniband", "mlx5_3"));
  EXPECT_TRUE(may("add", "infiniband", "mlx5_9"));
  for (const char* action : {"add", "remove", "bind", "unbind", "change"})
    EXPECT_TRUE(may(action, "pci", "0000:17:00.2")) << action;
  EXPECT_TRUE(may("change", "misc", "fuse"));
  EXPECT_TRUE(may("add", "net", "")) << "no name: read it all";
}

}  // namespace
}  // namespace berth::agent
