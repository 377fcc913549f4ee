#include <gtest/gtest.h>

#include <set>

#include <nlohmann/json.hpp>

#include "core/ledger.hpp"
#include "core/placement.hpp"
#include "tests/fakes/inventories.hpp"
#include "tests/fakes/ledger_driver.hpp"

namespace berth {
namespace {

BerthRequest one_gpu_one_vf() {
  BerthRequest r;
  r.gpu_count = 1;
  r.vf_count = 1;
  r.cpu_count = 1;
  r.network.pool = "grid";
  return r;
}

Target target() {
  return Target{4242, 777, ""};
}

}  // namespace

TEST(Ledger, CreateReservesAndAssignsAddressAndGatewayRoute) {
  testing::LedgerDriver d(testing::grid_context());
  EXPECT_FALSE(d.one(event::Create{1, "slurm/1", one_gpu_one_vf()}));
  const Berth& b = d.ledger.berths.at("slurm/1");
  EXPECT_EQ(b.state, BerthState::reserved);
  ASSERT_EQ(b.vfs.size(), 1u);
  EXPECT_EQ(b.vfs[0].addresses[0].to_string(), "10.77.0.10/24");
  EXPECT_EQ(b.vfs[0].ifname, "ib0");
  ASSERT_EQ(b.routes.size(), 1u);
  EXPECT_EQ(b.routes[0].dst.to_string(), "0.0.0.0/0");
  EXPECT_EQ(b.routes[0].via.to_string(), "10.77.0.1");
  EXPECT_GE(d.persists, 1);
}

TEST(Ledger, LongValidInterfaceNamesAreNumberedOrRefusedNeverThrown) {
  testing::LedgerDriver d(testing::grid_context());
  auto r = one_gpu_one_vf();
  r.vf_count = 2;
  r.network.pool.reset();
  // 15 characters, all digits after the first: beyond int, within the kernel's limit.
  r.network.ifname = "n99999999999998";
  EXPECT_FALSE(d.one(event::Create{1, "slurm/1", r}));
  EXPECT_EQ(d.ledger.berths.at("slurm/1").vfs[1].ifname, "n99999999999999");
  r.network.ifname = "n99999999999999";  // the second would be n100000000000000: 16 characters
  auto e = d.one(event::Create{2, "slurm/2", r});
  ASSERT_TRUE(e);
  EXPECT_EQ(e->code, ErrorCode::bad_request);
  EXPECT_NE(e->message.find("longer than 15"), std::string::npos) << e->message;
  EXPECT_FALSE(d.ledger.berths.count("slurm/2"));
  r.network.ifname = "abcdefghijklmno";  // no digits: abcdefghijklmno0 is too long
  EXPECT_TRUE(d.one(event::Create{3, "slurm/3", r}));
}

TEST(Ledger, CreateIsIdempotentAndConflictsOnADifferentRequest) {
  testing::LedgerDriver d(testing::grid_context());
  EXPECT_FALSE(d.one(event::Create{1, "slurm/1", one_gpu_one_vf()}));
  auto before = nlohmann::json(d.ledger).dump();
  EXPECT_FALSE(d.one(event::Create{2, "slurm/1", one_gpu_one_vf()}));
  EXPECT_EQ(nlohmann::json(d.ledger).dump(), before);
  auto other = one_gpu_one_vf();
  other.gpu_count = 2;
  auto e = d.one(event::Create{3, "slurm/1", other});
  ASSERT_TRUE(e);
  EXPECT_EQ(e->code, ErrorCode::conflict);
  EXPECT_EQ(nlohmann::json(d.ledger).dump(), before);
}

TEST(Ledger, RefusalsLeaveNothingBehind) {
  testing::LedgerDriver d(testing::grid_context());
  auto r = one_gpu_one_vf();
  r.network.pool = "nope";
  EXPECT_EQ(d.one(event::Create{1, "slurm/1", r})->code, ErrorCode::unknown_pool);
  r = one_gpu_one_vf();
  r.gpu_count = 9;
  EXPECT_EQ(d.one(event::Create{2, "slurm/1", r})->code, ErrorCode::no_capacity);
  EXPECT_EQ(d.one(event::Create{3, "bogus", one_gpu_one_vf()})->code, ErrorCode::bad_request);
  EXPECT_TRUE(d.ledger.berths.empty());
  EXPECT_EQ(d.one(event::Attach{4, "slurm/9", target()})->code, ErrorCode::unknown_owner);
  EXPECT_EQ(d.one(event::Detach{5, "slurm/9"})->code, ErrorCode::unknown_owner);
  EXPECT_EQ(d.one(event::Release{6, "slurm/9"})->code, ErrorCode::unknown_owner);
}

TEST(Ledger, PoolExhaustionRefusesTheThirdBerth) {
  testing::LedgerDriver d(testing::grid_context());
  EXPECT_FALSE(d.one(event::Create{1, "slurm/1", one_gpu_one_vf()}));
  EXPECT_FALSE(d.one(event::Create{2, "slurm/2", one_gpu_one_vf()}));
  auto e = d.one(event::Create{3, "slurm/3", one_gpu_one_vf()});
  ASSERT_TRUE(e);
  EXPECT_EQ(e->code, ErrorCode::pool_exhausted);
  EXPECT_FALSE(d.one(event::Release{4, "slurm/1"}));
  EXPECT_FALSE(d.one(event::Create{5, "slurm/3", one_gpu_one_vf()}));
  EXPECT_EQ(d.ledger.berths.at("slurm/3").vfs[0].addresses[0].to_string(), "10.77.0.10/24");
}

TEST(Ledger, AttachRunsThePlanInOrderAndDetachRunsInversesInReverse) {
  testing::LedgerDriver d(testing::grid_context());
  d.one(event::Create{1, "slurm/1", one_gpu_one_vf()});
  EXPECT_FALSE(d.one(event::Attach{2, "slurm/1", target()}));
  const Berth& b = d.ledger.berths.at("slurm/1");
  EXPECT_EQ(b.state, BerthState::attached);
  const size_t n = b.plan.size();
  ASSERT_EQ(d.steps.size(), n);
  // GPU nodes first, then the VF (move, address, up, route), then the cpuset.
  EXPECT_TRUE(std::holds_alternative<step::MakeNode>(d.steps.front().step));
  EXPECT_TRUE(std::holds_alternative<step::SetCpuset>(d.steps.back().step));
  d.steps.clear();
  EXPECT_FALSE(d.one(event::Detach{3, "slurm/1"}));
  EXPECT_EQ(b.state, BerthState::reserved);
  ASSERT_EQ(d.steps.size(), n - 1);  // the cpuset reported no previous value: nothing to restore
  EXPECT_TRUE(std::holds_alternative<step::DelRoute>(d.steps.front().step));
  EXPECT_TRUE(std::holds_alternative<step::RemoveNode>(d.steps.back().step));
  for (const auto& s : d.steps) EXPECT_TRUE(s.rollback);
}

// What is reserved must survive a power loss; attachment state (which dies with the containers
// on a power loss) only the agent's own death.
TEST(Ledger, OnlyReservationsAreDurable) {
  testing::LedgerDriver d(testing::grid_context());
  d.one(event::Create{1, "slurm/1", one_gpu_one_vf()});
  EXPECT_EQ(d.durable, std::vector<bool>{true});
  d.durable.clear();
  d.one(event::Attach{2, "slurm/1", target()});
  const size_t steps = d.ledger.berths.at("slurm/1").plan.size();
  EXPECT_EQ(d.durable, std::vector<bool>(steps + 2, false));
  d.durable.clear();
  d.one(event::Detach{3, "slurm/1"});
  EXPECT_FALSE(d.durable.empty());
  for (bool durable : d.durable) EXPECT_FALSE(durable);
  d.durable.clear();
  d.one(event::Release{4, "slurm/1"});
  EXPECT_EQ(d.durable, std::vector<bool>{true});
}

TEST(Ledger, RepeatedCallsAreHarmless) {
  testing::LedgerDriver d(testing::grid_context());
  d.one(event::Create{1, "slurm/1", one_gpu_one_vf()});
  EXPECT_FALSE(d.one(event::Attach{2, "slurm/1", target()}));
  d.steps.clear();
  EXPECT_FALSE(d.one(event::Attach{3, "slurm/1", target()}));
  EXPECT_TRUE(d.steps.empty());
  auto other = target();
  other.pid = 99;
  EXPECT_EQ(d.one(event::Attach{4, "slurm/1", other})->code, ErrorCode::conflict);
  EXPECT_FALSE(d.one(event::Detach{5, "slurm/1"}));
  d.steps.clear();
  EXPECT_FALSE(d.one(event::Detach{6, "slurm/1"}));
  EXPECT_TRUE(d.steps.empty());
  EXPECT_FALSE(d.one(event::Release{7, "slurm/1"}));
  EXPECT_FALSE(d.one(event::Release{8, "slurm/1"}));
  EXPECT_EQ(d.ledger.berths.at("slurm/1").state, BerthState::released);
  EXPECT_EQ(d.one(event::Attach{9, "slurm/1", target()})->code, ErrorCode::invalid_state);
}

TEST(Ledger, ReleaseOfAnAttachedBerthDetachesFirst) {
  testing::LedgerDriver d(testing::grid_context());
  d.one(event::Create{1, "slurm/1", one_gpu_one_vf()});
  d.one(event::Attach{2, "slurm/1", target()});
  d.steps.clear();
  EXPECT_FALSE(d.one(event::Release{3, "slurm/1"}));
  EXPECT_FALSE(d.steps.empty());
  EXPECT_EQ(d.ledger.berths.at("slurm/1").state, BerthState::released);
  EXPECT_TRUE(d.ledger.berths.at("slurm/1").done.empty());
}

// A step that failed and could not take its own partial change back (left_behind): the rollback
// undoes that step too, first, with the undo it reported.
TEST(Ledger, AFailedStepThatLeftPartOfItsChangeIsUndoneFirstByTheRollback) {
  testing::LedgerDriver d(testing::grid_context());
  d.one(event::Create{1, "slurm/1", one_gpu_one_vf()});
  int forward = 0;
  std::string failed_step;
  d.set_outcome([&](const action::RunStep& r) {
    if (!r.rollback && ++forward == 2) {
      failed_step = describe(r.step);
      event::StepFinished e{r.owner, false, "v1-already", "allow failed; taking it back failed"};
      e.left_behind = true;
      return e;
    }
    return event::StepFinished{r.owner, true, "", ""};
  });
  auto e = d.one(event::Attach{2, "slurm/1", target()});
  ASSERT_TRUE(e);
  const Berth& b = d.ledger.berths.at("slurm/1");
  EXPECT_EQ(b.state, BerthState::failed);
  EXPECT_TRUE(b.done.empty() && b.leftovers.empty());
  // Forward: steps 1 and 2; then the inverse of 2 (with its reported undo), then of 1.
  ASSERT_EQ(d.steps.size(), 4u);
  EXPECT_TRUE(d.steps[2].rollback);
  const auto plan = b.plan;
  EXPECT_EQ(describe(d.steps[2].step), describe(*inverse(plan[1], "v1-already")));
  EXPECT_EQ(describe(d.steps[3].step), describe(*inverse(plan[0], "")));
}

// A failure at step k runs exactly the inverses of steps k-1..1, in that order.
TEST(Ledger, FailureAtEachStepRollsBackTheStepsBefore) {
  testing::LedgerDriver probe(testing::grid_context());
  probe.one(event::Create{1, "slurm/1", one_gpu_one_vf()});
  probe.one(event::Attach{2, "slurm/1", target()});
  const auto plan = probe.ledger.berths.at("slurm/1").plan;
  for (size_t k = 0; k < plan.size(); ++k) {
    testing::LedgerDriver d(testing::grid_context());
    d.one(event::Create{1, "slurm/1", one_gpu_one_vf()});
    size_t forward = 0;
    d.set_outcome([&](const action::RunStep& r) {
      if (!r.rollback && forward++ == k) return event::StepFinished{r.owner, false, "", "injected"};
      return event::StepFinished{
          r.owner, true, std::holds_alternative<step::SetCpuset>(r.step) ? "0-1|0" : "", ""};
    });
    auto e = d.one(event::Attach{2, "slurm/1", target()});
    ASSERT_TRUE(e) << "k=" << k;
    EXPECT_EQ(e->code, ErrorCode::attach_failed);
    EXPECT_NE(e->message.find("step " + std::to_string(k + 1) + "/"), std::string::npos)
        << e->message;
    EXPECT_NE(e->message.find("rolled back"), std::string::npos) << e->message;
    const Berth& b = d.ledger.berths.at("slurm/1");
    EXPECT_EQ(b.state, BerthState::failed);
    EXPECT_TRUE(b.done.empty());
    std::vector<std::string> undone;
    for (size_t i = k + 1; i < d.steps.size(); ++i) {
      EXPECT_TRUE(d.steps[i].rollback);
      undone.push_back(describe(d.steps[i].step));
    }
    std::vector<std::string> expected;
    for (size_t i = k; i-- > 0;) expected.push_back(describe(*inverse(plan[i], "")));
    EXPECT_EQ(undone, expected) << "k=" << k;
    // A failed berth can be attached again once the cause is gone.
    d.set_outcome([](const action::RunStep& r) {
      return event::StepFinished{r.owner, true, "", ""};
    });
    EXPECT_FALSE(d.one(event::Attach{3, "slurm/1", target()}));
  }
}

TEST(Ledger, ResumeRollsBackAnAttachCutOffByARestart) {
  testing::LedgerDriver d(testing::grid_context());
  d.one(event::Create{1, "slurm/1", one_gpu_one_vf()});
  int n = 0;
  // Stop feeding outcomes after 3 steps: the "agent" died mid-attach.
  d.set_outcome([&](const action::RunStep& r) {
    ++n;
    return event::StepFinished{n <= 3 ? r.owner : "nobody", true, "", ""};
  });
  d.run(event::Attach{2, "slurm/1", target()});
  Berth& b = d.ledger.berths.at("slurm/1");
  ASSERT_EQ(b.done.size(), 3u);
  // Reload from disk: the operation is forgotten, the host state is not.
  auto reloaded = ledger_from_json(nlohmann::json(d.ledger));
  ASSERT_TRUE(reloaded) << reloaded.error().message;
  d.ledger = *reloaded;
  d.steps.clear();
  d.set_outcome([](const action::RunStep& r) {
    return event::StepFinished{r.owner, true, "", ""};
  });
  d.run(event::Resume{});
  const Berth& after = d.ledger.berths.at("slurm/1");
  EXPECT_EQ(after.state, BerthState::failed);
  EXPECT_TRUE(after.done.empty());
  EXPECT_FALSE(after.in_flight);
  // The fourth step was in flight when the agent died: it may have been applied, so it is undone
  // first, then the three that were done.
  ASSERT_EQ(d.steps.size(), 4u);
  EXPECT_EQ(step_to_json(d.steps[0].step),
            step_to_json(*inverse(d.ledger.berths.at("slurm/1").plan[3], "")));
  EXPECT_NE(after.error.find("restarted"), std::string::npos);
}

TEST(Ledger, FailedDetachMarksFailedAndReleaseStillFrees) {
  testing::LedgerDriver d(testing::grid_context());
  d.one(event::Create{1, "slurm/1", one_gpu_one_vf()});
  d.one(event::Attach{2, "slurm/1", target()});
  d.set_outcome([](const action::RunStep& r) {
    bool bad = std::holds_alternative<step::MoveLinkOut>(r.step);
    return event::StepFinished{r.owner, !bad, "", bad ? "link vanished" : ""};
  });
  auto e = d.one(event::Detach{3, "slurm/1"});
  ASSERT_TRUE(e);
  EXPECT_EQ(e->code, ErrorCode::detach_failed);
  EXPECT_EQ(d.ledger.berths.at("slurm/1").state, BerthState::failed);
  EXPECT_FALSE(d.one(event::Release{4, "slurm/1"}));
  const Berth& b = d.ledger.berths.at("slurm/1");
  EXPECT_EQ(b.state, BerthState::released);
  // What could not be undone is remembered, and the VF stays held: a new berth does not get it.
  ASSERT_EQ(b.leftovers.size(), 1u);
  EXPECT_TRUE(std::holds_alternative<step::MoveLinkIn>(b.leftovers[0].step));
  const std::string vf = b.placement.vfs.at(0);
  ASSERT_FALSE(d.one(event::Create{5, "slurm/2", one_gpu_one_vf()}));
  EXPECT_NE(d.ledger.berths.at("slurm/2").placement.vfs.at(0), vf);
  // A retry that succeeds clears the leftovers and frees the VF.
  d.set_outcome([](const action::RunStep& r) {
    return event::StepFinished{r.owner, true, "", ""};
  });
  EXPECT_FALSE(d.one(event::Release{6, "slurm/1"}));
  EXPECT_TRUE(d.ledger.berths.at("slurm/1").leftovers.empty());
  Usage u;
  for (const auto& [o, x] : d.ledger.berths) u.add(x);
  EXPECT_EQ(u.vfs.count(vf), 0u);
}

TEST(Ledger, ContainerExitDetachesAndReleasesByOwnerPolicy) {
  testing::LedgerDriver d(testing::grid_context());
  BerthRequest manual = one_gpu_one_vf();
  manual.release_on_exit = true;
  manual.network.pool.reset();  // the test pool has two addresses
  d.one(event::Create{1, "slurm/1", one_gpu_one_vf()});
  d.one(event::Create{2, "github/7", one_gpu_one_vf()});
  ASSERT_FALSE(d.one(event::Create{3, "manual/x", manual}));
  for (const char* o : {"slurm/1", "github/7", "manual/x"})
    ASSERT_FALSE(d.one(event::Attach{4, o, target()}));
  // An exit of another process (pid reused, start time differs) changes nothing.
  Target other = target();
  other.start_time += 1;
  d.run(event::TargetExited{"slurm/1", other});
  EXPECT_EQ(d.ledger.berths.at("slurm/1").state, BerthState::attached);
  d.steps.clear();
  for (const char* o : {"slurm/1", "github/7", "manual/x"}) d.run(event::TargetExited{o, target()});
  EXPECT_EQ(d.ledger.berths.at("slurm/1").state, BerthState::reserved);
  EXPECT_EQ(d.ledger.berths.at("github/7").state, BerthState::released);
  EXPECT_EQ(d.ledger.berths.at("manual/x").state, BerthState::released);
  for (const auto& s : d.steps) EXPECT_TRUE(s.rollback);
  EXPECT_FALSE(d.steps.empty());
}

TEST(Ledger, AHeldDeviceThatDisappearsDegradesTheBerthUntilAttachedAgain) {
  Context ctx = testing::grid_context();
  testing::LedgerDriver d(ctx);
  d.one(event::Create{1, "slurm/1", one_gpu_one_vf()});
  ASSERT_FALSE(d.one(event::Attach{2, "slurm/1", target()}));
  const std::string gpu = d.ledger.berths.at("slurm/1").placement.gpus.at(0);
  Inventory without = ctx.inventory;
  std::erase_if(without.gpus, [&](const Gpu& g) { return g.pci == gpu; });
  d.run(event::InventoryChanged{without});
  const Berth& b = d.ledger.berths.at("slurm/1");
  EXPECT_EQ(b.state, BerthState::degraded);
  EXPECT_NE(b.reason.find(gpu), std::string::npos);
  // The same device comes back: still degraded until it is attached again.
  d.run(event::InventoryChanged{ctx.inventory});
  EXPECT_EQ(d.ledger.berths.at("slurm/1").state, BerthState::degraded);
  d.steps.clear();
  ASSERT_FALSE(d.one(event::Attach{3, "slurm/1", target()}));
  EXPECT_EQ(d.ledger.berths.at("slurm/1").state, BerthState::attached);
  EXPECT_TRUE(d.ledger.berths.at("slurm/1").reason.empty());
  EXPECT_TRUE(d.steps.front().rollback);  // detached first
  EXPECT_FALSE(d.steps.back().rollback);  // then attached again
}

TEST(Ledger, ReconciliationAdoptsLiveContainersDetachesGoneOnesAndForgetsAfterReboot) {
  testing::LedgerDriver d(testing::grid_context());
  d.one(event::Create{1, "slurm/1", one_gpu_one_vf()});
  d.one(event::Create{2, "github/2", one_gpu_one_vf()});
  ASSERT_FALSE(d.one(event::Attach{3, "slurm/1", target()}));
  ASSERT_FALSE(d.one(event::Attach{4, "github/2", target()}));
  Ledger saved = d.ledger;
  // Alive: re-adopted untouched (no step), watched again.
  d.steps.clear();
  auto actions = apply(d.ledger, d.context(), event::Resume{});
  EXPECT_TRUE(d.steps.empty());
  int watches = 0;
  for (const auto& a : actions)
    if (auto* w = std::get_if<action::Watch>(&a); w && w->watch) ++watches;
  EXPECT_EQ(watches, 2);
  // Gone: detached; github/ released, slurm/ kept.
  d.ledger = saved;
  d.run(event::Resume{{"slurm/1", "github/2"}, false});
  EXPECT_EQ(d.ledger.berths.at("slurm/1").state, BerthState::reserved);
  EXPECT_EQ(d.ledger.berths.at("github/2").state, BerthState::released);
  EXPECT_FALSE(d.steps.empty());
  // Rebooted: nothing to undo on the host, reservations kept by policy.
  d.ledger = saved;
  d.steps.clear();
  d.run(event::Resume{{}, true});
  EXPECT_TRUE(d.steps.empty());
  EXPECT_EQ(d.ledger.berths.at("slurm/1").state, BerthState::reserved);
  EXPECT_TRUE(d.ledger.berths.at("slurm/1").done.empty());
  EXPECT_EQ(d.ledger.berths.at("github/2").state, BerthState::released);
}

TEST(Ledger, RoundTripsThroughJson) {
  testing::LedgerDriver d(testing::grid_context());
  d.one(event::Create{1, "slurm/1", one_gpu_one_vf()});
  d.one(event::Attach{2, "slurm/1", target()});
  auto j = nlohmann::json(d.ledger);
  auto back = ledger_from_json(j);
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(nlohmann::json(*back), j);
  EXPECT_FALSE(ledger_from_json(nlohmann::json::parse(R"({"version":2})")));
  j["berths"][0]["state"] = "sideways";
  EXPECT_FALSE(ledger_from_json(j));
}

TEST(Ledger, TransitionsFollowTheLifecycle) {
  using S = BerthState;
  EXPECT_TRUE(can_transition(S::reserved, S::attaching));
  EXPECT_FALSE(can_transition(S::reserved, S::attached));
  EXPECT_FALSE(can_transition(S::attached, S::released));
  EXPECT_FALSE(can_transition(S::released, S::reserved));
  EXPECT_TRUE(can_transition(S::detaching, S::released));
}

TEST(Ledger, TombstonesArePruned) {
  auto ctx = testing::grid_context();
  ctx.max_tombstones = 2;
  testing::LedgerDriver d(ctx);
  BerthRequest r;
  for (int i = 0; i < 5; ++i) {
    std::string owner = "manual/" + std::to_string(i);
    d.one(event::Create{1, owner, r});
    d.one(event::Release{2, owner});
  }
  EXPECT_EQ(d.ledger.berths.size(), 2u);
  EXPECT_TRUE(d.ledger.berths.count("manual/4"));
}

}  // namespace berth

namespace berth {
namespace {

// Two berths in one container share the control node of their GPUs: the first to leave keeps it
// for the other, and the last one takes it away, whichever order they leave in.
TEST(Ledger, SharedControlNodesStayUntilTheLastBerthInTheContainerLeaves) {
  for (bool first_leaves_first : {true, false}) {
    testing::LedgerDriver d(testing::grid_context());
    std::set<std::string> nodes;  // device nodes in the fake container
    d.set_outcome([&](const action::RunStep& r) {
      std::string undo;
      if (auto* m = std::get_if<step::MakeNode>(&r.step))
        undo = nodes.insert(m->dev.path).second ? "" : "existed";
      if (auto* m = std::get_if<step::RemoveNode>(&r.step)) nodes.erase(m->dev.path);
      return event::StepFinished{r.owner, true, undo, ""};
    });
    BerthRequest gpu0;
    gpu0.gpu_ids = {"0"};
    gpu0.cpu_count = 1;
    BerthRequest gpu1;
    gpu1.gpu_ids = {"1"};
    gpu1.cpu_count = 1;
    ASSERT_FALSE(d.one(event::Create{1, "manual/a", gpu0}));
    ASSERT_FALSE(d.one(event::Create{2, "manual/b", gpu1}));
    ASSERT_FALSE(d.one(event::Attach{3, "manual/a", target()}));
    ASSERT_FALSE(d.one(event::Attach{4, "manual/b", target()}));
    ASSERT_EQ(nodes.size(), 3u);  // two GPU nodes and one /dev/nvidiactl
    const std::string first = first_leaves_first ? "manual/a" : "manual/b";
    const std::string last = first_leaves_first ? "manual/b" : "manual/a";
    ASSERT_FALSE(d.one(event::Detach{5, first}));
    EXPECT_EQ(nodes.size(), 2u);
    EXPECT_TRUE(nodes.count("/dev/nvidiactl")) << "the other berth still needs it";
    ASSERT_FALSE(d.one(event::Detach{6, last}));
    EXPECT_TRUE(nodes.empty()) << "the last berth out takes the control node too";
  }
}

}  // namespace
}  // namespace berth

namespace berth {
namespace {

// A standing berth follows its container: its exit detaches it and keeps the reservation, for
// every owner kind.
TEST(Ledger, AStandingBerthIsKeptWhenItsContainerExits) {
  for (const char* owner : {"lab/alice", "manual/standing", "github/7"}) {
    testing::LedgerDriver d(testing::grid_context());
    BerthRequest r;
    r.gpu_count = 1;
    r.cpu_count = 1;
    r.standing = StandingTarget{"alice", "", "", ""};
    ASSERT_FALSE(d.one(event::Create{1, owner, r}));
    ASSERT_FALSE(d.one(event::Attach{2, owner, target()}));
    d.run(event::TargetExited{owner, target()});
    EXPECT_EQ(d.ledger.berths.at(owner).state, BerthState::reserved) << owner;
  }
}

}  // namespace
}  // namespace berth
