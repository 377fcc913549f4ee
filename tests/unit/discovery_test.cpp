#include <gtest/gtest.h>

#include "agent/host/discovery.hpp"

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
