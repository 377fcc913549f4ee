#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <future>
#include <thread>

#include <boost/asio/steady_timer.hpp>

#include <boost/asio/io_context.hpp>

#include "agent/app/engine.hpp"
#include "agent/app/worker.hpp"
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

// Taking a device rule away does not close what the container has open. Who still holds the
// devices is asked once per detach, after its reply (reading every descriptor of a job that
// holds thousands takes milliseconds), and reported as a warning of the berth.
TEST_F(EngineTest, ADetachIsAnsweredBeforeItAsksOnceWhoStillHoldsItsDevicesOpen) {
  Engine engine(io_, ctx_, {}, actuator_, &*store_);
  std::vector<action::Notify> warnings;
  EngineHooks hooks;
  hooks.notify = [&](const action::Notify& n) {
    if (n.warning) warnings.push_back(n);
  };
  engine.set_hooks(hooks);
  actuator_.held_note = "c 195:0 is still open in the container: pid 7 (fd 4)";
  BerthRequest r;
  r.gpu_count = 1;
  ASSERT_FALSE(call(engine, event::Create{0, "slurm/1", r}).first);
  ASSERT_FALSE(call(engine, event::Attach{0, "slurm/1", Target{1234, 1, ""}}).first);
  EXPECT_TRUE(actuator_.asked.empty()) << "an attach takes nothing away";

  std::optional<std::optional<Error>> answer;
  size_t asked_before_answer = 0;
  engine.submit(event::Detach{0, "slurm/1"}, [&](std::optional<Error> e, const nlohmann::json&) {
    answer.emplace(std::move(e));
    asked_before_answer = actuator_.asked.size();
  });
  io_.restart();
  io_.run();
  io_.restart();
  ASSERT_TRUE(answer);
  EXPECT_FALSE(*answer);
  EXPECT_EQ(asked_before_answer, 0u) << "the reply did not wait for the descriptors to be read";
  // Both devices of the GPU (its node and nvidiactl) in one question, about the attached pid.
  EXPECT_EQ(actuator_.asked, std::vector<std::string>{"pid 1234 195:255 195:0"});
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_EQ(warnings[0].owner, "slurm/1");
  EXPECT_EQ(warnings[0].message, actuator_.held_note);

  // Nothing held: nothing reported.
  actuator_.held_note.clear();
  ASSERT_FALSE(call(engine, event::Attach{0, "slurm/1", Target{1234, 1, ""}}).first);
  ASSERT_FALSE(call(engine, event::Detach{0, "slurm/1"}).first);
  io_.restart();
  io_.run();
  io_.restart();
  EXPECT_EQ(warnings.size(), 1u);
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

// The reactor polls for the outcome of a job that is part of an operation (an attach's
// inspection of its process), as for the engine's own; a front door's other jobs let it sleep.
TEST_F(EngineTest, TheReactorStaysAwakeForAnOperationsJobsOnly) {
  Engine engine(io_, ctx_, {}, actuator_, &*store_);
  bool done = false;
  engine.run_off_reactor([] {}, [&] { done = true; }, true);
  EXPECT_TRUE(engine.awaiting_worker()) << "an attach's inspection is out";
  io_.restart();
  io_.run();
  EXPECT_TRUE(done);
  EXPECT_FALSE(engine.awaiting_worker());
  engine.run_off_reactor([] {}, [] {});
  EXPECT_FALSE(engine.awaiting_worker()) << "a CDI write or a runner's file: no polling";
  io_.restart();
  io_.run();
}

// A hook that posts work of its own to the worker (a VF berth's link watch enters the
// container's network namespace there) runs after the turn's writes: the attach is answered
// without waiting behind it.
TEST_F(EngineTest, AnAttachIsAnsweredWithoutWaitingForWorkItsHooksPost) {
  Worker worker;
  Engine engine(io_, ctx_, {}, actuator_, &*store_, &worker);
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  int watches = 0;
  EngineHooks hooks;
  hooks.watch = [&](const action::Watch&) {
    ++watches;
    worker.post([released] { released.wait(); });
  };
  engine.set_hooks(hooks);
  BerthRequest r;
  r.gpu_count = 1;
  ASSERT_FALSE(testing::call(io_, engine, event::Create{0, "slurm/1", r}).first);
  std::optional<std::optional<Error>> answer;
  engine.submit(
      event::Attach{0, "slurm/1", Target{1234, 1, ""}},
      [&](std::optional<Error> e, const nlohmann::json&) { answer.emplace(std::move(e)); });
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
  while (!answer && std::chrono::steady_clock::now() < deadline) {
    io_.restart();
    io_.run_for(std::chrono::milliseconds(10));
  }
  release.set_value();  // the worker's last job ends, so that it can be joined
  ASSERT_TRUE(answer) << "the reply waited behind the hook's job on the worker";
  EXPECT_FALSE(*answer);
  EXPECT_EQ(watches, 1);
  io_.restart();
  io_.run_for(std::chrono::milliseconds(50));
}

// An engine destroyed while a job of its own is on the worker (the actuator's idle after the last
// reply, a step out when a stopping berthd hits its deadline) waits for the job: the actuator and
// the store it uses go right after the engine.
TEST_F(EngineTest, AnEngineGoesOnlyAfterItsJobsOnTheWorkerHaveRun) {
  Worker worker;
  std::atomic<bool> ran{false};
  {
    Engine engine(io_, ctx_, {}, actuator_, &*store_, &worker);
    engine.run_off_reactor(
        [&ran] {
          std::this_thread::sleep_for(std::chrono::milliseconds(100));
          ran = true;
        },
        [] {});
  }
  EXPECT_TRUE(ran) << "the engine went while its job was still on the worker";
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

// Records each step with the pid of the container it is for.
class PidLoggingActuator : public Actuator {
 public:
  StepOutcome run(const Step& step, const Target& t, bool rollback) override {
    log.push_back(std::to_string(t.pid) + (rollback ? " undo: " : " ") + describe(step));
    return {true, "", ""};
  }
  std::vector<std::string> log;
};

// A burst of attaches (a node's jobs starting together) is answered one berth after another,
// the oldest first, rather than all at the end with their steps taken in turns; releases are
// taken in turns, so that their durable writes go together, and one that needs no step is
// answered at once.
TEST_F(EngineTest, OperationsSubmittedTogetherRunOneAfterAnotherOldestFirst) {
  PidLoggingActuator actuator;
  Engine engine(io_, ctx_, {}, actuator, &*store_);
  BerthRequest r;
  r.gpu_count = 1;
  r.shared = true;  // the fixture has one CPU per NUMA node
  for (int i = 1; i <= 4; ++i)
    ASSERT_FALSE(call(engine, event::Create{0, "slurm/" + std::to_string(i), r}).first);
  // Submits the events at once, runs the loop until all are answered; the log then has each
  // step (by pid) and each answer, in the order they came.
  auto burst = [&](std::vector<Event> events) {
    actuator.log.clear();
    size_t answered = 0;
    for (auto& ev : events) {
      const std::string owner = std::visit(
          [](const auto& e) {
            if constexpr (requires { e.owner; })
              return std::string(e.owner);
            else
              return std::string();
          },
          ev);
      engine.submit(std::move(ev),
                    [&, owner](const std::optional<Error>& e, const nlohmann::json&) {
                      EXPECT_FALSE(e) << e->message;
                      actuator.log.push_back("answered " + owner);
                      ++answered;
                    });
    }
    for (int n = 0; answered < events.size() && n < 100000; ++n) io_.run_one();
    while (io_.poll_one() > 0) {
    }
    io_.restart();
    EXPECT_EQ(answered, events.size());
  };
  // Steps of slurm/1..3 (pids 1001..1003): all of one's, its answer, then the next one's.
  auto one_after_another = [&] {
    int current = 1;
    for (const auto& line : actuator.log) {
      if (line == "answered slurm/4") continue;
      if (line.rfind("answered ", 0) == 0) {
        EXPECT_EQ(line, "answered slurm/" + std::to_string(current))
            << ::testing::PrintToString(actuator.log);
        ++current;
      } else {
        EXPECT_EQ(line.rfind(std::to_string(1000 + current) + " ", 0), 0u)
            << line << " before slurm/" << current
            << " was answered: " << ::testing::PrintToString(actuator.log);
      }
    }
    EXPECT_EQ(current, 4);
  };
  auto position = [&](const std::string& line) {
    return std::find(actuator.log.begin(), actuator.log.end(), line) - actuator.log.begin();
  };
  std::vector<Event> attaches;
  for (int i = 1; i <= 3; ++i)
    attaches.push_back(event::Attach{0, "slurm/" + std::to_string(i), Target{1000 + i, 1, ""}});
  burst(std::move(attaches));
  one_after_another();
  // slurm/4 is only reserved: its release needs no step and waits for none of the others.
  burst({event::Release{0, "slurm/1"}, event::Release{0, "slurm/2"}, event::Release{0, "slurm/3"},
         event::Release{0, "slurm/4"}});
  EXPECT_LT(position("answered slurm/4"), position("answered slurm/1"))
      << ::testing::PrintToString(actuator.log);
  for (const auto& [owner, b] : engine.ledger().berths)
    EXPECT_EQ(b.state, BerthState::released) << owner;
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
