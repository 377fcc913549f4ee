#include <gtest/gtest.h>

#include <algorithm>

#include "core/placement.hpp"
#include "tests/fakes/inventories.hpp"

namespace berth {
namespace {

BerthRequest gpus(int n, int vfs = 0, NumaPolicy p = NumaPolicy::single) {
  BerthRequest r;
  r.gpu_count = n;
  r.vf_count = vfs;
  r.numa = p;
  return r;
}

Berth hold(const std::string& owner, const Placement& p, const BerthRequest& r) {
  Berth b;
  b.owner = owner;
  b.placement = p;
  b.request = r;
  return b;
}

}  // namespace

TEST(Placement, SingleNodeKeepsEverythingTogether) {
  auto inv = testing::two_socket();
  Usage u;
  auto p = place(inv, u, gpus(2, 1));
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_EQ(p->numa, std::vector<int>{0});
  EXPECT_EQ(p->gpus, (std::vector<std::string>{"0000:17:00.0", "0000:31:00.0"}));
  EXPECT_EQ(p->vfs, std::vector<std::string>{"0000:1a:00.1"});
  EXPECT_EQ(p->cpus, std::vector<int>{0});
  EXPECT_EQ(p->mems, std::vector<int>{0});
}

TEST(Placement, MemorylessNodeGetsNearestMemory) {
  auto inv = testing::two_socket();
  Usage u;
  auto first = place(inv, u, gpus(1));
  u.add(hold("a", *first, gpus(1)));
  auto second = place(inv, u, gpus(1));
  ASSERT_TRUE(second) << second.error().message;
  EXPECT_EQ(second->numa, std::vector<int>{1});
  EXPECT_EQ(second->cpus, std::vector<int>{1});
  EXPECT_EQ(second->mems, std::vector<int>{0});
}

TEST(Placement, PassthroughGroupGoesWholeOrNotAtAll) {
  auto inv = testing::two_socket();
  Usage u;
  // Node 1 has GPUs 4, 5 (singles) and 6+7 (one group). Two GPUs there should use the singles
  // first so the group stays whole for a request that fits it.
  auto p = place(inv, u, gpus(4));
  ASSERT_TRUE(p);
  Usage u2;
  auto two = place(inv, u2, gpus(2));
  ASSERT_TRUE(two);
  for (const auto& g : two->gpus) EXPECT_NE(inv.gpu_by_id(g)->iommu_group, 70);

  BerthRequest half;
  half.gpu_ids = {"6"};
  auto refused = place(inv, u2, half);
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message.find("passthrough IOMMU group 70"), std::string::npos);
  half.gpu_ids = {"6", "0000:e3:00.0"};
  EXPECT_TRUE(place(inv, u2, half));
}

TEST(Placement, ThreeGpusOnNodeOneTakeTheGroupAndASingle) {
  auto inv = testing::two_socket();
  Usage u;
  u.add(hold("n0", *place(inv, u, gpus(4)), gpus(4)));
  auto p = place(inv, u, gpus(3));
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_EQ(p->numa, std::vector<int>{1});
  int in_group = 0;
  for (const auto& g : p->gpus) in_group += inv.gpu_by_id(g)->iommu_group == 70;
  EXPECT_EQ(in_group, 2);
}

TEST(Placement, RefusalExplainsWhatEachNodeHasFree) {
  auto inv = testing::two_socket();
  Usage u;
  auto p = place(inv, u, gpus(5));
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error().code, ErrorCode::no_capacity);
  EXPECT_NE(p.error().message.find("cannot place 5 GPUs"), std::string::npos) << p.error().message;
  EXPECT_NE(p.error().message.find("node 0 has 4 GPUs, 8 VFs, 1 of 1 CPUs"), std::string::npos)
      << p.error().message;
  EXPECT_NE(p.error().message.find("node 1 has 4 GPUs"), std::string::npos);
}

TEST(Placement, AnySpreadsAcrossNodes) {
  auto inv = testing::two_socket();
  Usage u;
  auto p = place(inv, u, gpus(6, 0, NumaPolicy::any));
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_EQ(p->gpus.size(), 6u);
  EXPECT_EQ(p->numa, (std::vector<int>{0, 1}));
  auto prefer = place(inv, u, gpus(6, 0, NumaPolicy::prefer));
  ASSERT_TRUE(prefer);
  EXPECT_EQ(prefer->numa.size(), 2u);
}

TEST(Placement, ExplicitGpusGetNearestVfsAndCpus) {
  auto inv = testing::two_socket(4);
  Usage u;
  BerthRequest r;
  r.gpu_ids = {"5"};
  r.vf_count = 2;
  r.cpu_count = 2;
  auto p = place(inv, u, r);
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_EQ(p->numa, std::vector<int>{1});
  EXPECT_EQ(p->vfs, (std::vector<std::string>{"0000:9a:00.1", "0000:9a:00.2"}));
  EXPECT_EQ(p->cpus, (std::vector<int>{4, 5}));
  r.gpu_ids = {"0", "4"};
  EXPECT_FALSE(place(inv, u, r));  // spans nodes with numa=single
  r.numa = NumaPolicy::any;
  EXPECT_TRUE(place(inv, u, r));
  r.gpu_ids = {"42"};
  EXPECT_EQ(place(inv, u, r).error().code, ErrorCode::bad_request);
}

TEST(Placement, SharedGpusStackExclusiveDoNot) {
  auto inv = testing::two_socket();
  BerthRequest shared;
  shared.gpu_ids = {"0"};
  shared.shared = true;
  Usage u;
  u.add(hold("s1", *place(inv, u, shared), shared));
  EXPECT_TRUE(place(inv, u, shared));
  BerthRequest exclusive;
  exclusive.gpu_ids = {"0"};
  EXPECT_FALSE(place(inv, u, exclusive));
}

TEST(Placement, CpuCountTakesFreeCpus) {
  auto inv = testing::two_socket(4);
  Usage u;
  BerthRequest r;
  r.cpu_count = 3;
  auto a = place(inv, u, r);
  ASSERT_TRUE(a);
  u.add(hold("a", *a, r));
  auto b = place(inv, u, r);
  ASSERT_TRUE(b) << b.error().message;
  for (int c : b->cpus) EXPECT_EQ(std::count(a->cpus.begin(), a->cpus.end(), c), 0);
  u.add(hold("b", *b, r));
  EXPECT_FALSE(place(inv, u, r));  // one CPU left per node
}

}  // namespace berth
