#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "core/ledger.hpp"
#include "core/plan.hpp"
#include "tests/fakes/inventories.hpp"
#include "tests/fakes/ledger_driver.hpp"

namespace berth {

TEST(Plan, OrderDedupAndNetworkProfile) {
  Context ctx;
  ctx.inventory = testing::two_socket(4);
  ctx.pools["p"] = *parse_pool_config(
      nlohmann::json::parse(R"({"name":"p","subnet":"10.0.0.0/24","gateway":"10.0.0.1"})"));
  testing::LedgerDriver d(ctx);
  BerthRequest r;
  r.gpu_count = 2;
  r.vf_count = 2;
  r.cpu_count = 2;
  r.network.pool = "p";
  r.network.mtu = 4092;
  r.network.routes = {{*parse_cidr("10.9.0.0/16"), *parse_ip("10.0.0.2")}};
  ASSERT_FALSE(d.one(event::Create{1, "slurm/1", r}));
  std::vector<std::string> steps;
  for (const auto& s : attach_plan(d.ledger.berths.at("slurm/1"), ctx.inventory))
    steps.push_back(describe(s));
  const std::vector<std::string> expected{
      "create device node /dev/nvidia0 (195:0)",
      "allow device c 195:0 in the devices cgroup",
      "create device node /dev/nvidiactl (195:255)",  // shared by both GPUs: once
      "allow device c 195:255 in the devices cgroup",
      "create device node /dev/nvidia1 (195:1)",
      "allow device c 195:1 in the devices cgroup",
      "move link bvf0x0 into the container as ib0",
      "set MTU of ib0 to 4092",
      "add address 10.0.0.2/24 to ib0",
      "set link ib0 up",
      "add route 0.0.0.0/0 via 10.0.0.1 dev ib0",  // the pool's gateway
      "add route 10.9.0.0/16 via 10.0.0.2 dev ib0",
      "move link bvf0x1 into the container as ib1",
      "set MTU of ib1 to 4092",
      "add address 10.0.0.3/24 to ib1",
      "set link ib1 up",
      "set cpuset cpus=0-1 mems=0",
  };
  EXPECT_EQ(steps, expected);
}

}  // namespace berth
