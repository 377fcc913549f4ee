#include <gtest/gtest.h>

#include <algorithm>

#include <nlohmann/json.hpp>

#include "core/guid.hpp"
#include "core/ledger.hpp"
#include "core/plan.hpp"
#include "core/pool.hpp"
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

namespace berth {

// A VF's RDMA device moves with it when the host's RDMA subsystem is in exclusive netns mode,
// before the netdev; in shared mode a berth that requires isolation is refused with the fix.
TEST(Plan, RdmaDevicesMoveBeforeTheirNetdevInExclusiveModeOnly) {
  auto request = [](const std::string& rdma) {
    BerthRequest r;
    r.vf_count = 1;
    r.network.rdma = rdma;
    return r;
  };
  for (const std::string mode : {"exclusive", "shared", "none"})
    for (const std::string want : {"auto", "isolated", "shared"}) {
      Context ctx;
      ctx.inventory = testing::two_socket(4);
      for (auto& vf : ctx.inventory.vfs) vf.rdma = "mlx5_" + std::to_string(vf.vf_index + 2);
      ctx.inventory.rdma_netns = mode;
      testing::LedgerDriver d(ctx);
      auto e = d.one(event::Create{1, "slurm/1", request(want)});
      const std::string where = mode + "/" + want;
      if (mode != "exclusive" && want == "isolated") {
        ASSERT_TRUE(e) << where;
        EXPECT_EQ(e->code, ErrorCode::host_unsupported);
        EXPECT_NE(e->message.find("options ib_core netns_mode=0"), std::string::npos) << e->message;
        EXPECT_FALSE(d.ledger.berths.count("slurm/1"));
        continue;
      }
      ASSERT_FALSE(e) << where << ": " << e->message;
      const Berth& b = d.ledger.berths.at("slurm/1");
      const bool moves = mode == "exclusive" && want != "shared";
      EXPECT_EQ(b.vfs[0].rdma, moves ? "mlx5_2" : "") << where;
      auto plan = attach_plan(b, ctx.inventory);
      ASSERT_FALSE(plan.empty());
      if (moves) {
        ASSERT_TRUE(std::holds_alternative<step::MoveRdmaIn>(plan[0])) << where;
        EXPECT_TRUE(std::holds_alternative<step::MoveLinkIn>(plan[1])) << where;
        auto back = inverse(plan[0], "");
        ASSERT_TRUE(back);
        EXPECT_EQ(std::get<step::MoveRdmaOut>(*back).device, "mlx5_2");
        EXPECT_EQ(describe(*step_from_json(step_to_json(*back))),
                  "move RDMA device mlx5_2 back to the host's network namespace");
      } else {
        EXPECT_TRUE(std::holds_alternative<step::MoveLinkIn>(plan[0])) << where;
      }
      // The decision is part of the record: a restart plans the same steps.
      auto again = berth_from_json(nlohmann::json(b));
      ASSERT_TRUE(again);
      EXPECT_EQ(again->vfs[0].rdma, b.vfs[0].rdma);
    }
}

}  // namespace berth

namespace berth {

// An InfiniBand VF gets GUIDs derived from the node, PF and VF (the same VF, the same GUIDs),
// set before anything else touches the VF, and the ones it had put back on detach.
TEST(Plan, InfinibandVfsGetDerivedGuidsFirstAndTheirOldOnesBack) {
  Context ctx;
  ctx.inventory = testing::two_socket(4);
  for (auto& vf : ctx.inventory.vfs) vf.infiniband = vf.numa == 0;
  ctx.node_name = "gpu01";
  testing::LedgerDriver d(ctx);
  BerthRequest r;
  r.vf_count = 1;
  ASSERT_FALSE(d.one(event::Create{1, "slurm/1", r}));
  const Berth& b = d.ledger.berths.at("slurm/1");
  const Vf* vf = ctx.inventory.vf_by_pci(b.vfs[0].pci);
  ASSERT_TRUE(vf && vf->infiniband);
  EXPECT_EQ(b.vfs[0].node_guid,
            format_guid(derive_guid("gpu01", vf->pf_pci, static_cast<uint32_t>(vf->vf_index), 0)));
  EXPECT_NE(b.vfs[0].node_guid, b.vfs[0].port_guid);
  auto plan = attach_plan(b, ctx.inventory);
  ASSERT_TRUE(std::holds_alternative<step::SetVfGuid>(plan[0]));
  const auto& set = std::get<step::SetVfGuid>(plan[0]);
  EXPECT_EQ(set.pf_pci, vf->pf_pci);
  EXPECT_EQ(set.vf_index, vf->vf_index);
  auto back = inverse(plan[0], "00:00:00:00:00:00:00:01|00:00:00:00:00:00:00:02");
  ASSERT_TRUE(back);
  EXPECT_EQ(std::get<step::SetVfGuid>(*back).node_guid, "00:00:00:00:00:00:00:01");
  EXPECT_EQ(std::get<step::SetVfGuid>(*back).port_guid, "00:00:00:00:00:00:00:02");
  auto json_back = step_from_json(step_to_json(*back));
  ASSERT_TRUE(json_back);
  EXPECT_EQ(describe(*json_back), describe(*back));
  // Ethernet (RoCE) VFs take no GUIDs.
  for (auto& vf2 : ctx.inventory.vfs) vf2.infiniband = false;
  testing::LedgerDriver d3(ctx);
  ASSERT_FALSE(d3.one(event::Create{1, "slurm/2", r}));
  EXPECT_TRUE(d3.ledger.berths.at("slurm/2").vfs[0].node_guid.empty());
  EXPECT_FALSE(std::holds_alternative<step::SetVfGuid>(
      attach_plan(d3.ledger.berths.at("slurm/2"), ctx.inventory)[0]));
}

}  // namespace berth

namespace berth {

TEST(Plan, GuidsFromTheRequestGoToTheirVfsAndOthersAreDerived) {
  auto r = parse_request(nlohmann::json::parse(
      R"({"vfs": 2, "network": {"guids": [{"node": "02:00:00:00:00:00:01:01", "port": "02:00:00:00:00:00:01:02"}]}})"));
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(*parse_request(nlohmann::json(*r)), *r);
  Context ctx;
  ctx.inventory = testing::two_socket(4);
  for (auto& vf : ctx.inventory.vfs) vf.infiniband = true;
  ctx.node_name = "gpu01";
  testing::LedgerDriver d(ctx);
  ASSERT_FALSE(d.one(event::Create{1, "slurm/1", *r}));
  const Berth& b = d.ledger.berths.at("slurm/1");
  EXPECT_EQ(b.vfs[0].node_guid, "02:00:00:00:00:00:01:01");
  EXPECT_EQ(b.vfs[0].port_guid, "02:00:00:00:00:00:01:02");
  const Vf* second = ctx.inventory.vf_by_pci(b.vfs[1].pci);
  EXPECT_EQ(b.vfs[1].node_guid,
            format_guid(
                derive_guid("gpu01", second->pf_pci, static_cast<uint32_t>(second->vf_index), 0)));
  // Not InfiniBand: refused, nothing reserved.
  for (auto& vf : ctx.inventory.vfs) vf.infiniband = false;
  testing::LedgerDriver ethernet(ctx);
  auto e = ethernet.one(event::Create{1, "slurm/2", *r});
  ASSERT_TRUE(e);
  EXPECT_NE(e->message.find("not an InfiniBand VF"), std::string::npos) << e->message;
  EXPECT_FALSE(ethernet.ledger.berths.count("slurm/2"));
  for (
      const char* bad :
      {R"({"vfs": 1, "network": {"guids": [{"node": "00:00:00:00:00:00:00:00", "port": "02:00:00:00:00:00:01:02"}]}})",
       R"({"vfs": 1, "network": {"guids": [{"node": "02:00:00:00:00:00:01:01"}]}})",
       R"({"vfs": 1, "network": {"guids": [{"node": "ff:ff:ff:ff:ff:ff:ff:ff", "port": "02:00:00:00:00:00:01:02"}]}})",
       R"({"vfs": 1, "network": {"guids": "02:00:00:00:00:00:01:01"}})",
       R"({"vfs": 1, "network": {"guids": [{"node": "02:00:00:00:00:00:01:01", "port": "02:00:00:00:00:00:01:02"}, {"node": "02:00:00:00:00:00:01:03", "port": "02:00:00:00:00:00:01:04"}]}})"}) {
    auto p = parse_request(nlohmann::json::parse(bad));
    ASSERT_FALSE(p) << bad;
    EXPECT_NE(p.error().message.find("network.guids"), std::string::npos) << p.error().message;
  }
}

}  // namespace berth

namespace berth {

// mlx5 applies GUIDs only when it probes the VF: the VF is unbound and bound again after its
// GUIDs are set, comes back with other names, and the rest of the attach (RDMA device, netdev,
// verbs nodes) and the detach follow it by PCI address.
TEST(Plan, AVfReboundAfterItsGuidsIsFollowedUnderItsNewNames) {
  Context ctx;
  ctx.inventory = testing::two_socket(4);
  ctx.inventory.rdma_netns = "exclusive";
  for (auto& vf : ctx.inventory.vfs) {
    vf.infiniband = true;
    vf.driver = "mlx5_core";
    vf.rdma = "mlx5_" + std::to_string(vf.vf_index + 2);
    vf.devices = {{"/dev/infiniband/uverbs" + std::to_string(vf.vf_index + 2), 231,
                   static_cast<unsigned>(192 + vf.vf_index + 2)}};
  }
  BerthRequest r;
  r.vf_count = 1;
  {
    Context off = ctx;
    off.vf_rebind_drivers.clear();
    testing::LedgerDriver d(off);
    ASSERT_FALSE(d.one(event::Create{1, "slurm/1", r}));
    EXPECT_TRUE(d.ledger.berths.at("slurm/1").vfs[0].rebind.empty()) << "[] never rebinds";
  }
  testing::LedgerDriver d(ctx);
  ASSERT_FALSE(d.one(event::Create{1, "slurm/1", r}));
  const Berth& b = d.ledger.berths.at("slurm/1");
  const std::string pci = b.vfs[0].pci;
  EXPECT_EQ(b.vfs[0].rebind, "mlx5_core");
  auto again = berth_from_json(nlohmann::json(b));
  ASSERT_TRUE(again);
  EXPECT_EQ(again->vfs[0].rebind, "mlx5_core") << "kept in the record";
  auto plan = attach_plan(b, ctx.inventory);
  const auto& set = std::get<step::SetVfGuid>(plan[0]);
  EXPECT_EQ(set.rebind, "mlx5_core");
  auto back = inverse(plan[0], "00:00:00:00:00:00:00:01|00:00:00:00:00:00:00:02");
  EXPECT_EQ(std::get<step::SetVfGuid>(*back).rebind, "mlx5_core")
      << "the old GUIDs take a probe too";
  EXPECT_EQ(std::get<step::SetVfGuid>(*step_from_json(step_to_json(*back))).rebind, "mlx5_core");
  EXPECT_NE(describe(plan[0]).find("then rebind " + pci + " to mlx5_core"), std::string::npos);

  // The driver gives the VF back as ib7 with RDMA device mlx5_9 and verbs node uverbs9.
  Vf now;
  now.pci = pci;
  now.driver = "mlx5_core";
  now.netdev = "ib7";
  now.rdma = "mlx5_9";
  now.infiniband = true;
  now.devices = {{"/dev/infiniband/uverbs9", 231, 201}};
  d.set_outcome([&](const action::RunStep& run) {
    event::StepFinished f{run.owner, true, "", ""};
    if (const auto* g = std::get_if<step::SetVfGuid>(&run.step)) {
      f.undo = "00:00:00:00:00:00:00:01|00:00:00:00:00:00:00:02";
      if (!g->rebind.empty()) f.vf = now;
    }
    return f;
  });
  Target t;
  t.pid = 42;
  t.start_time = 7;
  ASSERT_FALSE(d.one(event::Attach{2, "slurm/1", t}));
  EXPECT_EQ(d.ledger.berths.at("slurm/1").state, BerthState::attached);
  bool rdma = false, link = false, node = false;
  for (const auto& s : d.steps) {
    if (const auto* m = std::get_if<step::MoveRdmaIn>(&s.step)) {
      EXPECT_EQ(m->device, "mlx5_9");
      rdma = true;
    }
    if (const auto* m = std::get_if<step::MoveLinkIn>(&s.step)) {
      EXPECT_EQ(m->host_name, "ib7");
      EXPECT_EQ(m->pci, pci);
      link = true;
    }
    if (const auto* m = std::get_if<step::MakeNode>(&s.step)) {
      EXPECT_EQ(m->dev.path, "/dev/infiniband/uverbs9");
      node = true;
    }
  }
  EXPECT_TRUE(rdma && link && node);
  EXPECT_EQ(d.ledger.berths.at("slurm/1").vfs[0].netdev, "ib7");
  EXPECT_EQ(d.ledger.berths.at("slurm/1").vfs[0].rdma, "mlx5_9");
  EXPECT_EQ(d.context().inventory.vf_by_pci(pci)->netdev, "ib7");

  // A rediscovery that ran while the VF was unbound left it out of the inventory: the rebind's
  // report puts it back.
  auto& vfs = d.context().inventory.vfs;
  const Vf before = *d.context().inventory.vf_by_pci(pci);
  vfs.erase(std::remove_if(vfs.begin(), vfs.end(), [&](const Vf& v) { return v.pci == pci; }),
            vfs.end());
  now.pf_pci = before.pf_pci;
  now.vf_index = before.vf_index;
  now.numa = before.numa;

  // Detach: the netdev goes back as ib7, the RDMA device as mlx5_9, then the old GUIDs and a
  // rebind; the host's names after that are the inventory's.
  d.steps.clear();
  now.netdev = "ib3";
  now.rdma = "mlx5_4";
  ASSERT_FALSE(d.one(event::Detach{3, "slurm/1"}));
  bool out = false, rdma_out = false, reset = false;
  for (const auto& s : d.steps) {
    if (const auto* m = std::get_if<step::MoveLinkOut>(&s.step)) {
      EXPECT_EQ(m->host_name, "ib7");
      out = true;
    }
    if (const auto* m = std::get_if<step::MoveRdmaOut>(&s.step)) {
      EXPECT_EQ(m->device, "mlx5_9");
      rdma_out = true;
    }
    if (const auto* g = std::get_if<step::SetVfGuid>(&s.step)) {
      EXPECT_EQ(g->node_guid, "00:00:00:00:00:00:00:01");
      EXPECT_EQ(g->rebind, "mlx5_core");
      reset = true;
    }
  }
  EXPECT_TRUE(out && rdma_out && reset);
  EXPECT_EQ(d.context().inventory.vf_by_pci(pci)->netdev, "ib3");
  EXPECT_EQ(d.context().inventory.vf_by_pci(pci)->rdma, "mlx5_4");
}

// A VF that comes back from its rebind without its RDMA device cannot take the planned steps:
// the attach fails and is rolled back, its GUIDs put back.
TEST(Plan, AVfThatComesBackFromItsRebindWithoutItsRdmaDeviceFailsTheAttach) {
  Context ctx;
  ctx.inventory = testing::two_socket(4);
  ctx.inventory.rdma_netns = "exclusive";
  for (auto& vf : ctx.inventory.vfs) {
    vf.infiniband = true;
    vf.driver = "mlx5_core";
    vf.rdma = "mlx5_2";
  }
  BerthRequest r;
  r.vf_count = 1;
  testing::LedgerDriver d(ctx);
  ASSERT_FALSE(d.one(event::Create{1, "slurm/1", r}));
  const std::string pci = d.ledger.berths.at("slurm/1").vfs[0].pci;
  d.set_outcome([&](const action::RunStep& run) {
    event::StepFinished f{run.owner, true, "", ""};
    if (const auto* g = std::get_if<step::SetVfGuid>(&run.step)) {
      f.undo = "00:00:00:00:00:00:00:01|00:00:00:00:00:00:00:02";
      Vf now;
      now.pci = pci;
      now.netdev = "ib7";
      now.driver = "mlx5_core";
      if (g->link_state == 0) now.rdma = "mlx5_2";  // back once its old GUIDs are in
      f.vf = now;
    }
    return f;
  });
  Target t;
  t.pid = 42;
  auto e = d.one(event::Attach{2, "slurm/1", t});
  ASSERT_TRUE(e);
  EXPECT_NE(e->message.find("came back from its driver rebind"), std::string::npos) << e->message;
  const Berth& b = d.ledger.berths.at("slurm/1");
  EXPECT_TRUE(b.done.empty());
  ASSERT_EQ(d.steps.size(), 2u);
  EXPECT_TRUE(d.steps[1].rollback);
  EXPECT_EQ(std::get<step::SetVfGuid>(d.steps[1].step).node_guid, "00:00:00:00:00:00:00:01");
}

}  // namespace berth

namespace berth {

// A pool on an InfiniBand partition: the VF's own netdev (the default partition) comes up bare
// and an IPoIB child on the pool's pkey carries the addresses and routes.
TEST(Plan, APoolOnAPartitionPutsTheAddressesOnAnIpoibChild) {
  Context ctx;
  ctx.inventory = testing::two_socket(4);
  for (auto& vf : ctx.inventory.vfs) vf.infiniband = true;
  auto pool = parse_pool_config(nlohmann::json::parse(
      R"({"name":"epn","subnet":"10.9.0.0/24","gateway":"10.9.0.1","pkey":"0x0011"})"));
  ASSERT_TRUE(pool) << pool.error().message;
  EXPECT_EQ(pool->pkey, 0x8011) << "full membership";
  ctx.pools["epn"] = *pool;
  BerthRequest r;
  r.vf_count = 1;
  r.network.pool = "epn";
  testing::LedgerDriver d(ctx);
  ASSERT_FALSE(d.one(event::Create{1, "slurm/1", r}));
  const Berth& b = d.ledger.berths.at("slurm/1");
  EXPECT_EQ(b.vfs[0].pkey, 0x8011);
  EXPECT_EQ(pkey_link_name(b.vfs[0]), "ib0.8011");
  auto again = berth_from_json(nlohmann::json(b));
  ASSERT_TRUE(again);
  EXPECT_EQ(again->vfs[0].pkey, 0x8011);

  std::vector<std::string> seen;
  for (const auto& s : attach_plan(b, ctx.inventory)) {
    if (std::holds_alternative<step::SetVfGuid>(s) || std::holds_alternative<step::MakeNode>(s) ||
        std::holds_alternative<step::AllowDevice>(s) || std::holds_alternative<step::SetCpuset>(s))
      continue;
    seen.push_back(describe(s));
    auto back = step_from_json(step_to_json(s));
    ASSERT_TRUE(back) << describe(s);
    EXPECT_EQ(describe(*back), describe(s));
  }
  ASSERT_EQ(seen.size(), 6u);
  EXPECT_NE(seen[0].find("move link"), std::string::npos) << seen[0];
  EXPECT_EQ(seen[1], "set link ib0 up");
  EXPECT_EQ(seen[2], "add IPoIB child ib0.8011 of ib0 on partition 0x8011");
  EXPECT_NE(seen[3].find("ib0.8011"), std::string::npos) << seen[3];  // the address
  EXPECT_EQ(seen[4], "set link ib0.8011 up");
  EXPECT_NE(seen[5].find("ib0.8011"), std::string::npos) << seen[5];  // the default route
  auto del = inverse(step::AddPkeyLink{"ib0", "ib0.8011", 0x8011}, "ifindex=9 driver=d bus=b");
  ASSERT_TRUE(del);
  EXPECT_EQ(std::get<step::DelPkeyLink>(*del).identity, "ifindex=9 driver=d bus=b");
  EXPECT_EQ(std::get<step::DelPkeyLink>(*step_from_json(step_to_json(*del))).identity,
            "ifindex=9 driver=d bus=b");

  // Only InfiniBand VFs have partitions; the child's name must fit the kernel's 15 characters.
  BerthRequest longer = r;
  longer.network.ifname = "partition01";
  auto e = d.one(event::Create{2, "slurm/2", longer});
  ASSERT_TRUE(e);
  EXPECT_NE(e->message.find("longer than 15"), std::string::npos) << e->message;
  for (auto& vf : d.context().inventory.vfs) vf.infiniband = false;
  e = d.one(event::Create{3, "slurm/3", r});
  ASSERT_TRUE(e);
  EXPECT_NE(e->message.find("not an InfiniBand VF"), std::string::npos) << e->message;
  EXPECT_FALSE(d.ledger.berths.count("slurm/3"));
}

TEST(Plan, PartitionKeysParseWithTheirMembershipBitAndRefuseTheDefaultPartition) {
  EXPECT_EQ(*parse_pkey("0x8001"), 0x8001);
  EXPECT_EQ(*parse_pkey("0x1"), 0x8001);
  EXPECT_EQ(*parse_pkey("0X7FFe"), 0xfffe);
  EXPECT_EQ(format_pkey(0x8001), "8001");
  for (const char* bad :
       {"", "8001", "0x", "0x0", "0x8000", "0x7fff", "0xffff", "0x10000", "0xg001", "-0x1"})
    EXPECT_FALSE(parse_pkey(bad)) << bad;
  EXPECT_FALSE(parse_pool_config(
      nlohmann::json::parse(R"({"name":"a","subnet":"10.9.0.0/24","pkey":"0x7fff"})")));
  EXPECT_FALSE(parse_pool_config(
      nlohmann::json::parse(R"({"name":"a","subnet":"10.9.0.0/24","pkey":32769})")));
}

}  // namespace berth
