#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <boost/asio/steady_timer.hpp>

#include <boost/asio/io_context.hpp>

#include "agent/app/engine.hpp"
#include "tests/fakes/engine_call.hpp"
#include "tests/fakes/fake_actuator.hpp"
#include "tests/fakes/inventories.hpp"

namespace berth::agent {
namespace {

class EngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("berth-engine-" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir_);
    store_.emplace(dir_.string(), (dir_ / "run").string());
    ctx_.inventory = testing::two_socket();
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // What the caller is told is already on disk.
  std::pair<std::optional<Error>, nlohmann::json> call(Engine& engine, Event ev) {
    return testing::call(io_, engine, std::move(ev), [&] {
      auto on_disk = store_->load();
      ASSERT_TRUE(on_disk);
      EXPECT_EQ(nlohmann::json(*on_disk), nlohmann::json(engine.ledger()));
    });
  }

  boost::asio::io_context io_;
  std::filesystem::path dir_;
  std::optional<StateStore> store_;
  Context ctx_;
  testing::FakeActuator actuator_;
};

TEST_F(EngineTest, AttachAndDetachRunEveryStepAndPersist) {
  Engine engine(io_, ctx_, {}, actuator_, &*store_);
  BerthRequest r;
  r.gpu_count = 1;
  auto [e1, v1] = call(engine, event::Create{0, "slurm/1", r});
  ASSERT_FALSE(e1);
  EXPECT_EQ(v1["state"], "reserved");
  auto [e2, v2] = call(engine, event::Attach{0, "slurm/1", Target{1234, 1, ""}});
  ASSERT_FALSE(e2) << e2->message;
  EXPECT_EQ(v2["state"], "attached");
  EXPECT_EQ(v2["target"]["pid"], 1234);
  EXPECT_EQ(v2["gpus"][0]["index"], 0);
  EXPECT_EQ(v2["gpus"][0]["devices"][0], "/dev/nvidia0");
  EXPECT_EQ(actuator_.log.size(), 5u);  // 2 nodes, 2 allows, cpuset
  // The steps went to the runtime record as lines after it, not as the record again each time.
  std::ifstream runtime(store_->runtime_record_path("slurm/1"));
  int lines = 0;
  for (std::string line; std::getline(runtime, line);) ++lines;
  EXPECT_GE(lines, 6);
  auto [e3, v3] = call(engine, event::Detach{0, "slurm/1"});
  ASSERT_FALSE(e3);
  EXPECT_EQ(v3["state"], "reserved");
  EXPECT_EQ(actuator_.log.back(), "undo: remove device node /dev/nvidia0");
  EXPECT_GE(actuator_.idle_calls, 3);  // after each operation, nothing is held
}

// The CDI spec follows what is reserved: its hook fires on a create, a release and an inventory
// change, not on each step of an attach or a detach (with many berths it is rebuilt whole).
TEST_F(EngineTest, TheReservationHookFiresOnReservationsAndInventoryNotOnSteps) {
  Engine engine(io_, ctx_, {}, actuator_, &*store_);
  int fired = 0;
  EngineHooks hooks;
  hooks.reservations_changed = [&] { ++fired; };
  engine.set_hooks(hooks);
  BerthRequest r;
  r.gpu_count = 1;
  ASSERT_FALSE(call(engine, event::Create{0, "slurm/1", r}).first);
  EXPECT_EQ(fired, 1);
  ASSERT_FALSE(call(engine, event::Attach{0, "slurm/1", Target{1234, 1, ""}}).first);
  ASSERT_FALSE(call(engine, event::Detach{0, "slurm/1"}).first);
  EXPECT_EQ(fired, 1) << "steps and attachment state do not change the spec";
  engine.post(event::InventoryChanged{ctx_.inventory});
  EXPECT_EQ(fired, 2);
  ASSERT_FALSE(call(engine, event::Release{0, "slurm/1"}).first);
  EXPECT_EQ(fired, 3);
}

TEST_F(EngineTest, AChangeThatCannotBeSavedIsNotReportedAsDone) {
  StateStore unwritable("/proc/berth-cannot-write-here", "/proc/berth-cannot-write-here");
  Engine engine(io_, ctx_, {}, actuator_, &unwritable);
  BerthRequest r;
  r.gpu_count = 1;
  auto [e, v] = testing::call(io_, engine, event::Create{0, "slurm/1", r});
  ASSERT_TRUE(e);
  EXPECT_EQ(e->code, ErrorCode::internal);
  EXPECT_NE(e->message.find("could not be saved"), std::string::npos) << e->message;
  EXPECT_EQ(v["state"], "reserved");
}

TEST_F(EngineTest, AnUnsavedBerthIsRetriedAndNeverAnsweredAsDoneUntilSaved) {
  // The state directory cannot be made (a file is in its way) until the test removes the file.
  std::filesystem::create_directories(dir_);
  std::ofstream(dir_ / "blocked") << "x";
  StateStore store((dir_ / "blocked" / "state").string(), (dir_ / "run").string());
  Engine engine(io_, ctx_, {}, actuator_, &store);
  BerthRequest r;
  r.gpu_count = 1;
  auto [e1, v1] = testing::call(io_, engine, event::Create{0, "slurm/1", r});
  ASSERT_TRUE(e1);
  EXPECT_EQ(engine.unsaved().count("slurm/1"), 1u);
  // The idempotent repeat finds the berth in memory only: it is not told "done" either.
  auto [e2, v2] = testing::call(io_, engine, event::Create{0, "slurm/1", r});
  ASSERT_TRUE(e2) << "a repeat answered success for a berth that is not on disk";
  EXPECT_NE(e2->message.find("could not be saved"), std::string::npos);
  // The obstacle goes; the retry timer writes the record without any caller asking.
  std::filesystem::remove(dir_ / "blocked");
  std::filesystem::create_directories(dir_ / "blocked");
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!engine.unsaved().empty() && std::chrono::steady_clock::now() < deadline) {
    io_.restart();
    io_.run_for(std::chrono::milliseconds(20));
  }
  io_.restart();
  EXPECT_TRUE(engine.unsaved().empty());
  StateStore reread((dir_ / "blocked" / "state").string(), (dir_ / "run").string());
  auto on_disk = reread.load();
  ASSERT_TRUE(on_disk);
  EXPECT_EQ(on_disk->berths.count("slurm/1"), 1u);
  auto [e3, v3] = testing::call(io_, engine, event::Create{0, "slurm/1", r});
  EXPECT_FALSE(e3);
}

TEST_F(EngineTest, FailedStepRollsBackAndReportsTheStep) {
  actuator_.fail_forward_at = 3;
  Engine engine(io_, ctx_, {}, actuator_, &*store_);
  BerthRequest r;
  r.gpu_count = 1;
  call(engine, event::Create{0, "slurm/1", r});
  auto [e, v] = call(engine, event::Attach{0, "slurm/1", Target{1234, 1, ""}});
  ASSERT_TRUE(e);
  EXPECT_EQ(e->code, ErrorCode::attach_failed);
  EXPECT_NE(e->message.find("step 4/5"), std::string::npos) << e->message;
  EXPECT_EQ(v["state"], "failed");
  std::vector<std::string> expected{"create device node /dev/nvidia0 (195:0)",
                                    "allow device c 195:0 in the devices cgroup",
                                    "create device node /dev/nvidiactl (195:255)",
                                    "allow device c 195:255 in the devices cgroup",
                                    "undo: remove device node /dev/nvidiactl",
                                    "undo: deny device c 195:0 in the devices cgroup",
                                    "undo: remove device node /dev/nvidia0"};
  EXPECT_EQ(actuator_.log, expected);
}

TEST_F(EngineTest, ReloadedLedgerResumesInterruptedDetach) {
  Ledger l;
  {
    Engine engine(io_, ctx_, {}, actuator_, &*store_);
    BerthRequest r;
    r.gpu_count = 1;
    call(engine, event::Create{0, "slurm/1", r});
    call(engine, event::Attach{0, "slurm/1", Target{1234, 1, ""}});
    l = engine.ledger();
  }
  l.berths.at("slurm/1").state = BerthState::detaching;  // as if the agent died mid-detach
  actuator_.log.clear();
  Engine engine(io_, ctx_, l, actuator_, &*store_);
  engine.resume();
  for (int i = 0; i < 100 && engine.busy(); ++i) io_.run_one();
  EXPECT_EQ(engine.ledger().berths.at("slurm/1").state, BerthState::reserved);
  EXPECT_EQ(actuator_.log.size(), 4u);
}

}  // namespace
}  // namespace berth::agent
