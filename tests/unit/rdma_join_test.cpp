// libibverbs' devices joined with sysfs discovery by PCI address, and the real library on this
// host (no RDMA devices: an empty list is the normal case, not an error).
#include <gtest/gtest.h>

#include <endian.h>

#include <nlohmann/json.hpp>

#include "core/rdma_join.hpp"
#include "net/verbs.hpp"
#include "tests/fakes/inventories.hpp"

namespace berth {
namespace {

RdmaDevice device(std::string name, std::string pci) {
  RdmaDevice d;
  d.name = std::move(name);
  d.pci = std::move(pci);
  d.node_guid = "0c42:a103:0065:7a1c";
  d.ports = {{1, "InfiniBand", "active", 7, "0c42:a103:0065:7a1c"}};
  return d;
}

TEST(RdmaJoin, DevicesAreMatchedToVfsAndPfsByPciAddress) {
  Inventory inv = testing::two_socket(4);
  inv.hcas.push_back({"0000:1a:00.0", "ibp26s0", "", 0, {}});
  inv.vfs[0].rdma = "";  // sysfs had no name for it
  const std::string vf0 = inv.vfs[0].pci;
  const std::string vf1 = inv.vfs[1].pci;
  const std::string pf = inv.hcas[0].pci;
  inv.vfs[1].rdma = "mlx5_9";
  auto warnings = join_rdma_devices(inv, {device("mlx5_3", vf1), device("mlx5_2", vf0),
                                          device("mlx5_0", pf), device("rxe0", "")});
  EXPECT_EQ(inv.vfs[0].rdma, "mlx5_2") << "named by libibverbs where sysfs had no name";
  EXPECT_EQ(inv.vfs[1].rdma, "mlx5_9") << "sysfs' name is kept";
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("sysfs names its RDMA device mlx5_9, libibverbs mlx5_3"),
            std::string::npos)
      << warnings[0];
  ASSERT_EQ(inv.rdma_devices.size(), 4u);
  EXPECT_EQ(inv.rdma_devices[0].name, "mlx5_0");  // by name
  EXPECT_EQ(inv.rdma_devices[0].role, "pf");
  EXPECT_EQ(inv.rdma_devices[1].role, "vf");
  EXPECT_EQ(inv.rdma_devices[3].name, "rxe0");
  EXPECT_EQ(inv.rdma_devices[3].role, "other");
  const nlohmann::json j = inv;
  EXPECT_EQ(j["rdma_devices"][1]["ports"][0]["state"], "active");
  EXPECT_EQ(j["rdma_devices"][1]["ports"][0]["link_layer"], "InfiniBand");
  EXPECT_EQ(j["rdma_devices"][1]["node_guid"], "0c42:a103:0065:7a1c");
}

TEST(RdmaJoin, NoDevicesIsTheNormalCase) {
  Inventory inv = testing::two_socket(4);
  const Inventory before = inv;
  EXPECT_TRUE(join_rdma_devices(inv, {}).empty());
  EXPECT_TRUE(inv.rdma_devices.empty());
  EXPECT_EQ(nlohmann::json(inv)["vfs"], nlohmann::json(before)["vfs"]);
}

TEST(Verbs, GuidsPrintAsIbvDevinfoDoes) {
  EXPECT_EQ(net::format_verbs_guid(htobe64(0x0c42a10300657a1cULL)), "0c42:a103:0065:7a1c");
  EXPECT_EQ(net::format_verbs_guid(0), "0000:0000:0000:0000");
}

// The real libibverbs on this host: whatever it finds is well formed; a host without RDMA
// devices (this project's CI machines) gives an empty list and no warning.
TEST(Verbs, TheRealLibraryEnumeratesWithoutFailing) {
  std::vector<std::string> warnings;
  auto devices = net::enumerate_rdma_devices(warnings);
  for (const auto& d : devices) {
    EXPECT_FALSE(d.name.empty());
    EXPECT_EQ(d.node_guid.size(), 19u);
  }
  if (devices.empty()) {
    EXPECT_TRUE(warnings.empty()) << warnings.front();
  }
}

}  // namespace
}  // namespace berth
