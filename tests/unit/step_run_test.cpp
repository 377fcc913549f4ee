// An operation's steps run back to back on the worker (RunStep::then, Engine's step runs): core
// says which steps follow, advance_in_run() keeps the berth as core would, the runtime record
// is written ahead of each step, and an event that comes in stops the run and waits for it.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <set>

#include <boost/asio/io_context.hpp>
#include <nlohmann/json.hpp>

#include "agent/app/engine.hpp"
#include "tests/fakes/engine_call.hpp"
#include "tests/fakes/ledger_driver.hpp"

namespace berth {
namespace {

Target container() {
  return Target{4242, 777, ""};
}

const action::RunStep* run_step(const std::vector<Action>& actions) {
  for (const auto& a : actions)
    if (const auto* r = std::get_if<action::RunStep>(&a)) return r;
  return nullptr;
}

// Feeds successes to core from `actions` on, checking at each step that it asks for what the
// first RunStep's `then` named, and that a copy of the berth advanced by advance_in_run() is the
// berth core keeps. Returns how many steps ran.
size_t run_to_the_end(Ledger& ledger, Context& ctx, std::vector<Action> actions,
                      const std::string& owner) {
  size_t ran = 0;
  std::vector<Step> ahead;
  size_t next = 0;  // in `ahead`
  for (const action::RunStep* r = run_step(actions); r; r = run_step(actions)) {
    if (next < ahead.size()) {
      EXPECT_EQ(describe(r->step), describe(ahead[next])) << "step " << ran;
      ++next;
    } else {
      ahead = r->then;
      next = 0;
    }
    const action::RunStep step = *r;
    Berth projected = ledger.berths.at(owner);
    advance_in_run(projected, step.rollback, "undo-" + std::to_string(ran));
    actions =
        apply(ledger, ctx, event::StepFinished{owner, true, "undo-" + std::to_string(ran), ""});
    ++ran;
    const action::RunStep* following = run_step(actions);
    if (following && following->rollback == step.rollback) {
      EXPECT_EQ(nlohmann::json(projected), nlohmann::json(ledger.berths.at(owner)))
          << "after step " << ran << " (" << describe(step.step) << ")";
    }
  }
  EXPECT_EQ(next, ahead.size()) << "core named steps it did not ask for";
  return ran;
}

// A berth of 1 GPU and 1 VF from pool "grid", created and asked to attach: the attach's actions.
std::vector<Action> start_attach(Ledger& ledger, Context& ctx, const std::string& owner) {
  BerthRequest r;
  r.gpu_count = 1;
  r.vf_count = 1;
  r.network.pool = "grid";
  apply(ledger, ctx, event::Create{1, owner, r});
  return apply(ledger, ctx, event::Attach{2, owner, container()});
}

TEST(StepRun, CoreNamesTheRestOfAnOperationAndAdvanceInRunKeepsTheBerthAsApplyDoes) {
  Ledger ledger;
  Context ctx = testing::grid_context();
  auto actions = start_attach(ledger, ctx, "manual/a");
  const auto* first = run_step(actions);
  ASSERT_TRUE(first);
  const size_t plan = ledger.berths.at("manual/a").plan.size();
  ASSERT_GE(plan, 8u);
  EXPECT_EQ(first->then.size(), plan - 1) << "every step after the first is named ahead";
  EXPECT_EQ(run_to_the_end(ledger, ctx, actions, "manual/a"), plan);
  EXPECT_EQ(ledger.berths.at("manual/a").state, BerthState::attached);

  size_t undos = 0;  // a done step with nothing to undo is dropped without a step
  for (const auto& d : ledger.berths.at("manual/a").done) undos += inverse(d.step, d.undo) ? 1 : 0;
  ASSERT_GE(undos, 7u);
  actions = apply(ledger, ctx, event::Detach{3, "manual/a"});
  first = run_step(actions);
  ASSERT_TRUE(first);
  EXPECT_TRUE(first->rollback);
  EXPECT_EQ(first->then.size(), undos - 1);
  EXPECT_EQ(run_to_the_end(ledger, ctx, actions, "manual/a"), undos);
  EXPECT_EQ(ledger.berths.at("manual/a").state, BerthState::reserved);
}

// mlx5 VFs are rebound after their GUIDs are set and the steps after are planned again from
// the VF as it came back: none of them is named ahead of the rebind.
TEST(StepRun, NoStepIsNamedAheadOfADriverRebind) {
  Ledger ledger;
  Context ctx = testing::grid_context();
  ctx.inventory.rdma_netns = "exclusive";
  for (auto& vf : ctx.inventory.vfs) {
    vf.rdma = "mlx5_" + std::to_string(vf.vf_index + 2);
    vf.infiniband = true;
    vf.driver = "mlx5_core";
  }
  auto actions = start_attach(ledger, ctx, "manual/ib");
  const auto& plan = ledger.berths.at("manual/ib").plan;
  size_t rebind = plan.size();
  for (size_t i = 0; i < plan.size(); ++i)
    if (const auto* g = std::get_if<step::SetVfGuid>(&plan[i]); g && !g->rebind.empty()) rebind = i;
  ASSERT_LT(rebind, plan.size() - 1) << "the plan has steps after the rebind";
  const auto* first = run_step(actions);
  ASSERT_TRUE(first);
  ASSERT_EQ(first->then.size(), rebind) << "named up to the rebind, not after it";
  EXPECT_EQ(describe(first->then.back()), describe(plan[rebind]));
  EXPECT_EQ(run_to_the_end(ledger, ctx, actions, "manual/ib"), plan.size());
}

// Two berths in one container share their GPUs' control node: the first to leave does not take
// it away, so no undo of it is named ahead in its detach (its VF's undos come before it).
TEST(StepRun, AnUndoAnotherBerthStillNeedsIsNeverNamedAhead) {
  testing::LedgerDriver d(testing::grid_context());
  BerthRequest gpu1;
  gpu1.gpu_ids = {"1"};
  gpu1.cpu_count = 1;
  BerthRequest gpu0 = gpu1;
  gpu0.gpu_ids = {"0"};
  gpu0.vf_count = 1;
  gpu0.network.pool = "grid";
  ASSERT_FALSE(d.one(event::Create{1, "manual/a", gpu0}));
  ASSERT_FALSE(d.one(event::Create{2, "manual/b", gpu1}));
  ASSERT_FALSE(d.one(event::Attach{3, "manual/a", container()}));
  ASSERT_FALSE(d.one(event::Attach{4, "manual/b", container()}));
  std::set<std::string> shared;  // the inverses of what both berths did
  for (const auto& da : d.ledger.berths.at("manual/a").done)
    for (const auto& db : d.ledger.berths.at("manual/b").done)
      if (describe(da.step) == describe(db.step))
        if (auto inv = inverse(da.step, da.undo)) shared.insert(describe(*inv));
  ASSERT_FALSE(shared.empty());
  auto actions = apply(d.ledger, d.context(), event::Detach{5, "manual/a"});
  const auto* first = run_step(actions);
  ASSERT_TRUE(first);
  EXPECT_GE(first->then.size(), 3u) << "the VF's undos are named ahead";
  for (const action::RunStep* r = first; r; r = run_step(actions)) {
    EXPECT_FALSE(shared.count(describe(r->step))) << describe(r->step);
    for (const auto& s : r->then) EXPECT_FALSE(shared.count(describe(s))) << describe(s);
    actions = apply(d.ledger, d.context(), event::StepFinished{"manual/a", true, "", ""});
  }
  EXPECT_EQ(d.ledger.berths.at("manual/a").state, BerthState::reserved);
}

}  // namespace
}  // namespace berth

namespace berth::agent {
namespace {

// Records each step; `during` runs inside the step (the engine runs without a worker here, so
// inside a handler on the reactor, as a step on the worker runs beside it).
class WatchedActuator : public Actuator {
 public:
  StepOutcome run(const Step& step, const Target&, bool rollback) override {
    log.push_back((rollback ? "undo: " : "") + describe(step));
    if (during) during(step, rollback, log.size() - 1);
    return {true, "", ""};
  }
  std::vector<std::string> log;
  std::function<void(const Step&, bool, size_t)> during;
};

class StepRunEngine : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("berth-runs-" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir_);
    store_.emplace(dir_.string(), (dir_ / "run").string());
    ctx_.inventory = testing::two_socket();
    r_.gpu_count = 1;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // Handlers the reactor ran until the answer came.
  size_t handlers_for(Engine& engine, Event ev) {
    bool answered = false;
    engine.submit(std::move(ev), [&](const std::optional<Error>& e, const nlohmann::json&) {
      EXPECT_FALSE(e) << e->message;
      answered = true;
    });
    size_t n = 0;
    while (!answered && n < 10000) n += io_.run_one();
    while (io_.poll_one() > 0) {
    }
    io_.restart();
    return n;
  }

  boost::asio::io_context io_;
  std::filesystem::path dir_;
  std::optional<StateStore> store_;
  Context ctx_;
  BerthRequest r_;
  WatchedActuator actuator_;
};

TEST_F(StepRunEngine, AnOperationsStepsGoToTheWorkerAsOneJob) {
  size_t handlers[2] = {0, 0};
  std::vector<std::string> logs[2];
  for (bool runs : {true, false}) {
    std::filesystem::remove_all(dir_);
    WatchedActuator actuator;
    Engine engine(io_, ctx_, {}, actuator, &*store_);
    engine.set_step_runs(runs);
    ASSERT_FALSE(testing::call(io_, engine, event::Create{0, "slurm/1", r_}).first);
    handlers[runs] = handlers_for(engine, event::Attach{0, "slurm/1", Target{1234, 1, ""}}) +
                     handlers_for(engine, event::Detach{0, "slurm/1"});
    logs[runs] = actuator.log;
  }
  ASSERT_GE(logs[true].size(), 9u);  // 2 nodes, 2 rules, the cpuset, and their undos
  EXPECT_EQ(logs[true], logs[false]) << "the same steps in the same order";
  EXPECT_LE(handlers[true] * 2, handlers[false])
      << "runs: " << handlers[true] << " handlers, one by one: " << handlers[false];
}

// A restart during a run undoes from the runtime record: before each step runs, the record on
// disk names it as in flight (forward) or still done (undo), after the steps before it.
TEST_F(StepRunEngine, TheRecordOnDiskIsAheadOfEveryStepOfARun) {
  Engine engine(io_, ctx_, {}, actuator_, &*store_);
  ASSERT_FALSE(testing::call(io_, engine, event::Create{0, "slurm/1", r_}).first);
  size_t forward = 0;
  size_t undone = 0;
  size_t left = 100;  // done steps on disk before an undo
  actuator_.during = [&](const Step& step, bool rollback, size_t) {
    auto on_disk = store_->load();
    ASSERT_TRUE(on_disk) << on_disk.error().message;
    const Berth& b = on_disk->berths.at("slurm/1");
    if (!rollback) {
      ASSERT_TRUE(b.in_flight);
      EXPECT_EQ(describe(*b.in_flight), describe(step));
      EXPECT_EQ(b.done.size(), forward++);
    } else {
      ++undone;
      ASSERT_FALSE(b.done.empty());
      EXPECT_LT(b.done.size(), left) << "the undo before this one is off the record";
      left = b.done.size();
      auto inv = inverse(b.done.back().step, b.done.back().undo);
      ASSERT_TRUE(inv);
      EXPECT_EQ(describe(*inv), describe(step));
    }
  };
  ASSERT_FALSE(testing::call(io_, engine, event::Attach{0, "slurm/1", Target{1234, 1, ""}}).first);
  ASSERT_FALSE(testing::call(io_, engine, event::Detach{0, "slurm/1"}).first);
  EXPECT_EQ(forward, 5u);
  EXPECT_GE(undone, 4u);
}

// While a run is out nothing else reaches core (the worker's copy of the berth must stay what
// core has); an event that comes in stops the run after the step now running and is handled
// before the next.
TEST_F(StepRunEngine, AnEventThatComesInStopsTheRunAndWaitsForIt) {
  Engine engine(io_, ctx_, {}, actuator_, &*store_);
  EngineHooks hooks;
  hooks.notify = [&](const action::Notify& n) {
    if (n.owner == "slurm/2") actuator_.log.push_back("notify slurm/2 " + n.state);
  };
  engine.set_hooks(hooks);
  ASSERT_FALSE(testing::call(io_, engine, event::Create{0, "slurm/1", r_}).first);
  bool created = false;
  actuator_.during = [&](const Step&, bool, size_t i) {
    if (i != 1) return;
    engine.submit(event::Create{0, "slurm/2", r_},
                  [&](const std::optional<Error>& e, const nlohmann::json&) { created = !e; });
    EXPECT_EQ(engine.ledger().berths.count("slurm/2"), 0u) << "core saw an event during a run";
  };
  ASSERT_FALSE(testing::call(io_, engine, event::Attach{0, "slurm/1", Target{1234, 1, ""}}).first);
  while (io_.poll_one() > 0) {
  }
  EXPECT_TRUE(created);
  ASSERT_EQ(actuator_.log.size(), 6u);
  EXPECT_EQ(actuator_.log[2], "notify slurm/2 reserved") << "handled after the step it came in";
  EXPECT_EQ(engine.ledger().berths.at("slurm/1").state, BerthState::attached);
}

}  // namespace
}  // namespace berth::agent
