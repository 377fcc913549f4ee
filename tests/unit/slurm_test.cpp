// Slurm's front door in core: the job's variables and the node's profiles to a berth request.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "core/ledger.hpp"
#include "core/slurm.hpp"
#include "tests/fakes/inventories.hpp"

namespace berth {
namespace {
using nlohmann::json;

SlurmJob job(json env) {
  auto j = parse_slurm_job(env);
  EXPECT_TRUE(j) << j.error().message;
  return j ? *j : SlurmJob{};
}

TEST(Slurm, ReadsTheJobsVariables) {
  auto j = job({{"SLURM_JOB_ID", "4242"},
                {"SLURM_JOB_UID", "1001"},
                {"SLURM_JOB_USER", "alice"},
                {"SLURM_JOB_GPUS", "4,5,6,7"}});
  EXPECT_EQ(slurm_owner(j), "slurm/4242");
  EXPECT_EQ(j.uid, 1001u);
  EXPECT_EQ(j.partition, "");
  for (json bad : {json{{"SLURM_JOB_USER", "alice"}}, json{{"SLURM_JOB_ID", "4/2"}},
                   json{{"SLURM_JOB_ID", "1"}, {"SLURM_JOB_UID", "x"}}, json{{"SLURM_JOB_ID", 7}},
                   json::array()}) {
    auto r = parse_slurm_job(bad);
    EXPECT_FALSE(r) << bad.dump();
  }
  EXPECT_NE(parse_slurm_job(json::object()).error().message.find("SLURM_JOB_ID"),
            std::string::npos);
}

TEST(Slurm, TakesExactlySlurmsGpusInPciBusOrder) {
  auto inv = testing::two_socket();
  // Driver minors differ from the bus order, as they may across boots: Slurm counts by bus.
  std::swap(inv.gpus[0].index, inv.gpus[5].index);
  auto r = slurm_request({}, inv, job({{"SLURM_JOB_ID", "1"}, {"SLURM_JOB_GPUS", "0,5"}}));
  ASSERT_TRUE(r) << r.error().message;
  ASSERT_TRUE(*r);
  EXPECT_EQ((*r)->gpu_ids, (std::vector<std::string>{"0000:17:00.0", "0000:b1:00.0"}));
  EXPECT_EQ((*r)->numa, NumaPolicy::prefer);
}

TEST(Slurm, AnExplicitGpuMapAndUuidsInCudaVisibleDevices) {
  auto inv = testing::two_socket();
  inv.gpus[2].uuid = "GPU-aaaa";
  auto cfg = parse_slurm_config({{"gpu_map", {{"0", "0000:e3:00.0"}, {"1", "0000:17:00.0"}}}});
  ASSERT_TRUE(cfg) << cfg.error().message;
  auto r = slurm_request(*cfg, inv, job({{"SLURM_JOB_ID", "1"}, {"CUDA_VISIBLE_DEVICES", "1,0"}}));
  ASSERT_TRUE(r && *r);
  EXPECT_EQ((*r)->gpu_ids, (std::vector<std::string>{"0000:17:00.0", "0000:e3:00.0"}));
  // SLURM_JOB_GPUS wins over CUDA_VISIBLE_DEVICES.
  r = slurm_request(
      *cfg, inv,
      job({{"SLURM_JOB_ID", "1"}, {"SLURM_JOB_GPUS", "0"}, {"CUDA_VISIBLE_DEVICES", "1"}}));
  EXPECT_EQ((*r)->gpu_ids, (std::vector<std::string>{"0000:e3:00.0"}));
  r = slurm_request({}, inv, job({{"SLURM_JOB_ID", "1"}, {"CUDA_VISIBLE_DEVICES", "GPU-aaaa"}}));
  ASSERT_TRUE(r && *r);
  EXPECT_EQ((*r)->gpu_ids, (std::vector<std::string>{"0000:4b:00.0"}));
  for (const char* bad : {"GPU-bbbb", "MIG-1234", "9", "2", "x", "0,0"}) {
    auto e = slurm_request(*cfg, inv, job({{"SLURM_JOB_ID", "1"}, {"CUDA_VISIBLE_DEVICES", bad}}));
    EXPECT_FALSE(e) << bad;
    if (!e) {
      EXPECT_EQ(e.error().code, ErrorCode::bad_request);
    }
  }
}

TEST(Slurm, PartitionProfileElseDefaultElseNothing) {
  auto inv = testing::two_socket();
  auto cfg = parse_slurm_config({{"default", {{"vfs", 1}, {"network", {{"pool", "grid"}}}}},
                                 {"partitions", {{"cpu", {{"cpus", 2}, {"numa", "single"}}}}},
                                 {"prolog_timeout_s", 12}});
  ASSERT_TRUE(cfg) << cfg.error().message;
  EXPECT_EQ(cfg->prolog_timeout_s, 12u);
  auto r = slurm_request(*cfg, inv, job({{"SLURM_JOB_ID", "1"}, {"SLURM_JOB_GPUS", "4,5,6,7"}}));
  ASSERT_TRUE(r && *r);
  EXPECT_EQ((*r)->vf_count, 1);
  EXPECT_EQ((*r)->network.pool, "grid");
  EXPECT_EQ((*r)->gpu_ids.size(), 4u);
  r = slurm_request(*cfg, inv, job({{"SLURM_JOB_ID", "2"}, {"SLURM_JOB_PARTITION", "cpu"}}));
  ASSERT_TRUE(r && *r);
  EXPECT_EQ((*r)->cpu_count, 2);
  EXPECT_EQ((*r)->numa, NumaPolicy::single);
  EXPECT_TRUE((*r)->gpu_ids.empty());
  // An unknown partition falls back to the default profile.
  r = slurm_request(*cfg, inv, job({{"SLURM_JOB_ID", "3"}, {"SLURM_JOB_PARTITION", "other"}}));
  EXPECT_EQ((*r)->vf_count, 1);
  // No profile and no GPUs: a CPU job on a node without Slurm profiles gets no berth.
  r = slurm_request({}, inv, job({{"SLURM_JOB_ID", "4"}}));
  ASSERT_TRUE(r);
  EXPECT_FALSE(*r);
}

TEST(Slurm, ConfigErrorsNameTheField) {
  for (auto [bad, field] :
       {std::pair{json{{"default", {{"gpus", 2}}}}, "slurm.default"},
        std::pair{json{{"partitions", {{"gpu", {{"vfs", "x"}}}}}}, "slurm.partitions.gpu"},
        std::pair{json{{"gpu_map", {{"a", "0000:17:00.0"}}}}, "slurm.gpu_map"},
        std::pair{json{{"gpu_map", {{"0", "x"}, {"1", "x"}}}}, "slurm.gpu_map.1"},
        std::pair{json{{"prolog_timeout_s", 0}}, "slurm.prolog_timeout_s"},
        std::pair{json{{"prolog", 1}}, "slurm.prolog"}}) {
    auto c = parse_slurm_config(bad);
    ASSERT_FALSE(c) << bad.dump();
    EXPECT_NE(c.error().message.find(field), std::string::npos) << c.error().message;
  }
}

TEST(Slurm, TwoJobsOnOneNodeEachGetTheirNumaNode) {
  Ledger ledger;
  Context ctx{testing::two_socket(4), {}, 256};
  for (auto [id, gpus] : {std::pair{"10", "0,1,2,3"}, std::pair{"11", "4,5,6,7"}}) {
    auto r = slurm_request(
        {}, ctx.inventory,
        job({{"SLURM_JOB_ID", id}, {"SLURM_JOB_GPUS", gpus}, {"SLURM_JOB_UID", "7"}}));
    ASSERT_TRUE(r && *r);
    apply(ledger, ctx, event::Create{1, std::string("slurm/") + id, **r, 7u});
  }
  ASSERT_EQ(ledger.berths.size(), 2u);
  EXPECT_EQ(ledger.berths["slurm/10"].placement.numa, std::vector<int>{0});
  EXPECT_EQ(ledger.berths["slurm/11"].placement.numa, std::vector<int>{1});
  EXPECT_EQ(ledger.berths["slurm/11"].owner_uid, 7u);
  // The same prolog again is the same berth; another user's claim on the same job id is not.
  auto again =
      apply(ledger, ctx, event::Create{2, "slurm/10", ledger.berths["slurm/10"].request, 7u});
  auto* reply = std::get_if<action::Reply>(&again.back());
  ASSERT_TRUE(reply);
  EXPECT_FALSE(reply->error);
  auto other =
      apply(ledger, ctx, event::Create{3, "slurm/10", ledger.berths["slurm/10"].request, 8u});
  reply = std::get_if<action::Reply>(&other.back());
  ASSERT_TRUE(reply && reply->error);
  EXPECT_EQ(reply->error->code, ErrorCode::conflict);
}

}  // namespace
}  // namespace berth
