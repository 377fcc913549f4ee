#include <gtest/gtest.h>

#include <map>

#include <nlohmann/json.hpp>

#include "core/ledger.hpp"
#include "core/progress.hpp"
#include "tests/fakes/inventories.hpp"
#include "tests/fakes/ledger_driver.hpp"

namespace berth {
namespace {

// A berth's runtime record as the store keeps it: the record, then progress lines.
struct RecordFile {
  std::string record;
  std::vector<std::string> lines;

  Berth read() const {
    auto b = berth_from_json(nlohmann::json::parse(record));
    EXPECT_TRUE(b) << b.error().message;
    for (const auto& l : lines) {
      auto s = apply_progress(*b, nlohmann::json::parse(l));
      EXPECT_TRUE(s) << s.error().message;
    }
    return *b;
  }
};

// Writes each berth as the engine does: a progress line where only progress changed.
struct Writer {
  std::map<std::string, Berth> written;
  std::map<std::string, RecordFile> files;
  int records = 0;
  int lines = 0;

  void write(const Berth& b) {
    if (auto w = written.find(b.owner); w != written.end())
      if (auto line = progress_line(w->second, b)) {
        files[b.owner].lines.push_back(*line);
        ++lines;
        return;
      }
    files[b.owner] = {nlohmann::json(b).dump(), {}};
    written.insert_or_assign(b.owner, b);
    ++records;
  }
};

BerthRequest gpu_and_vf() {
  BerthRequest r;
  r.gpu_count = 2;
  r.vf_count = 1;
  r.cpu_count = 2;
  r.network.pool = "grid";
  return r;
}

}  // namespace

// At every write of an attach, a detach and a failed attach's rollback, the record and its
// lines read back as the berth is then; most writes are lines.
TEST(Progress, ARecordAndItsLinesReadBackAsTheBerthAtEveryWrite) {
  testing::LedgerDriver d(testing::grid_context());
  Writer w;
  int checked = 0;
  d.on_persist = [&](const action::Persist& p, const Ledger& l) {
    for (const auto& owner : p.owners) {
      const Berth& now = l.berths.at(owner);
      w.write(now);
      EXPECT_EQ(nlohmann::json(w.files[owner].read()), nlohmann::json(now)) << "write " << checked;
      ++checked;
    }
  };
  ASSERT_FALSE(d.one(event::Create{1, "slurm/1", gpu_and_vf()}));
  const int records_before = w.records;
  ASSERT_FALSE(d.one(event::Attach{2, "slurm/1", Target{4242, 777, ""}}));
  ASSERT_FALSE(d.one(event::Detach{3, "slurm/1"}));
  // The attach's first write names the target and its plan and the detach's last drops them:
  // records; every step between is a line.
  EXPECT_LE(w.records - records_before, 2);
  EXPECT_GE(w.lines, 20);

  // A step fails: the rollback pops what was done; every write still reads back.
  int n = 0;
  d.set_outcome([&](const action::RunStep& r) {
    return event::StepFinished{r.owner, r.rollback || ++n < 4, "undo-" + std::to_string(n),
                               r.rollback || n < 4 ? "" : "no such device"};
  });
  EXPECT_TRUE(d.one(event::Attach{4, "slurm/1", Target{4242, 777, ""}}));
  EXPECT_EQ(d.ledger.berths.at("slurm/1").state, BerthState::failed);
  EXPECT_GT(checked, 30);
}

TEST(Progress, MoreThanProgressChangedIsARecordNotALine) {
  Berth written;
  written.owner = "slurm/1";
  Berth now = written;
  now.target = Target{1, 2, ""};
  EXPECT_FALSE(progress_line(written, now));
  EXPECT_FALSE(written.target);  // untouched
  now = written;
  now.plan.push_back(step::LinkUp{"ib0"});
  EXPECT_FALSE(progress_line(written, now));
  now = written;
  now.leftovers.push_back({step::LinkUp{"ib0"}, ""});
  EXPECT_FALSE(progress_line(written, now));
  now = written;
  now.vfs.push_back({"0000:01:00.1", "ib0v0", "ib0", {}, ""});
  EXPECT_FALSE(progress_line(written, now));
  // The request id and first error of an operation are not in a record.
  now = written;
  now.op_request = 9;
  now.op_error = "x";
  now.done.push_back({step::LinkUp{"ib0"}, "u"});
  auto line = progress_line(written, now);
  ASSERT_TRUE(line);
  EXPECT_EQ(written.done, now.done);
}

TEST(Progress, ALineThatDoesNotFitIsRefusedAndChangesNothing) {
  Berth b;
  b.owner = "slurm/1";
  b.done.push_back({step::LinkUp{"ib0"}, ""});
  const auto before = nlohmann::json(b);
  for (
      const char* bad : {
          R"({"state":"attaching","operation":"attach","keep":2})",
          R"({"state":"sideways","operation":"attach","keep":0})",
          R"({"operation":"attach","keep":0})",
          R"({"state":"attaching","operation":"attach","keep":0,"add":[{"step":{"op":"nope"},"undo":""}]})",
          R"({"state":"attaching","operation":"attach","keep":0,"in_flight":{"op":"nope"}})",
      }) {
    EXPECT_FALSE(apply_progress(b, nlohmann::json::parse(bad))) << bad;
    EXPECT_EQ(nlohmann::json(b), before) << bad;
  }
}

}  // namespace berth
