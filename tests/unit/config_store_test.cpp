#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "agent/app/config.hpp"
#include "agent/host/cgroups.hpp"
#include "agent/host/state_store.hpp"
#include "core/progress.hpp"

namespace berth::agent {

TEST(Config, DefaultsAndOverrides) {
  auto c = parse_config(R"({"state_dir":"/tmp/x","pools":[{"name":"a","subnet":"10.0.0.0/24"}]})");
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->sysfs_root, "/sys");
  EXPECT_EQ(c->control_socket, "/run/berth/berth.sock");
  EXPECT_EQ(c->state_dir, "/tmp/x");
  EXPECT_EQ(c->pools.size(), 1u);
  EXPECT_EQ(c->vf_rebind_drivers, std::vector<std::string>{"mlx5_core"});
  auto never = parse_config(R"({"vf_rebind_drivers": []})");
  ASSERT_TRUE(never) << never.error().message;
  EXPECT_TRUE(never->vf_rebind_drivers.empty());
}

TEST(Config, BadConfigNamesTheFieldAndTheReason) {
  struct Case {
    const char* text;
    const char* expect;
  };
  for (
      auto [text, expect] : std::initializer_list<Case>{
          {R"({"sysfs_root": 3})", "'sysfs_root': must be a non-empty string"},
          {R"({"state_dir": "relative/dir"})", "'state_dir': must be an absolute path"},
          {R"({"colour": "red"})", "'colour': unknown field"},
          {R"({"log_level": "loud"})", "'log_level'"},
          {R"({"pools": [{"name":"a","subnet":"10.0.0.0/24"},{"name":"a","subnet":"10.1.0.0/24"}]})",
           "defined twice"},
          {R"({"pools": [{"name":"a","subnet":"10.0.0.0/99"}]})", "'pools'"},
          {R"({"control_socket_mode": "0777"})", "'control_socket_mode'"},
          {R"({not json)", "not valid JSON"},
          {R"({"state_dir": "/var/lib/b", "runtime_dir": "/var/lib/b"})",
           "'runtime_dir': must be apart from state_dir"},
          {R"({"state_dir": "/var/lib/b", "runtime_dir": "/var/lib/b/run"})",
           "'runtime_dir': must be apart from state_dir"},
          {R"({"state_dir": "/run/b/state", "runtime_dir": "/run/b"})",
           "'runtime_dir': must be apart from state_dir"},
          {R"({"netlink_rcvbuf": 1})", "'netlink_rcvbuf': must be an integer in 4096.."},
          {R"({"netlink_resync_s": 0})", "'netlink_resync_s'"},
          {R"({"udev_source": "systemd"})", "'udev_source'"},
          {R"({"udev_subsystems": "pci"})", "'udev_subsystems'"},
          {R"({"vf_rebind_drivers": "mlx5_core"})", "'vf_rebind_drivers': must be an array"},
          {R"({"vf_rebind_drivers": ["../mlx5_core"]})", "'vf_rebind_drivers'"},
      }) {
    auto c = parse_config(text);
    ASSERT_FALSE(c) << text;
    EXPECT_NE(c.error().message.find(expect), std::string::npos)
        << text << " -> " << c.error().message;
  }
}

TEST(Config, RelativePathsAreRelativeToTheConfigFile) {
  auto c = parse_config(R"({"sysfs_root":"../fixtures/two-socket/sys","state_dir":"/var/lib/x"})",
                        "/opt/berth/examples");
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->sysfs_root, "/opt/berth/fixtures/two-socket/sys");
  EXPECT_EQ(c->state_dir, "/var/lib/x");
}

TEST(Config, BundledExamplesAreValid) {
  for (const char* name : {"two-socket-fixture.json", "gpu-node.json", "github-runners.json"}) {
    auto c = load_config(std::string(BERTH_EXAMPLES) + "/" + name);
    EXPECT_TRUE(c) << name << ": " << c.error().message;
  }
  auto fixture = load_config(std::string(BERTH_EXAMPLES) + "/two-socket-fixture.json");
  ASSERT_TRUE(fixture);
  EXPECT_TRUE(std::filesystem::exists(fixture->sysfs_root + "/devices/system/node/node1/cpulist"))
      << fixture->sysfs_root;
}

class StateStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("berth-store-" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  // slurm/1 reserved in its durable record, then attaching in its runtime record.
  static Ledger reserved_then_attaching(StateStore& store) {
    Ledger l;
    l.berths["slurm/1"].owner = "slurm/1";
    EXPECT_TRUE(store.save(l, {"slurm/1"}, true));
    l.berths["slurm/1"].state = BerthState::attaching;
    EXPECT_TRUE(store.save(l, {"slurm/1"}, false));
    return l;
  }
  std::filesystem::path dir_;
};

TEST_F(StateStoreTest, MissingFileIsAnEmptyLedgerAndSavesRoundTrip) {
  StateStore store(dir_.string(), (dir_ / "run").string());
  auto empty = store.load();
  ASSERT_TRUE(empty);
  EXPECT_TRUE(empty->berths.empty());
  Ledger l;
  Berth b;
  b.owner = "manual/x";
  b.seq = 7;
  l.berths[b.owner] = b;
  l.next_seq = 8;
  ASSERT_TRUE(store.save(l, {"manual/x"}));
  EXPECT_TRUE(std::filesystem::exists(store.record_path("manual/x")));
  EXPECT_FALSE(std::filesystem::exists(store.record_path("manual/x") + ".tmp"));
  EXPECT_EQ((std::filesystem::status(dir_).permissions() & std::filesystem::perms::others_read),
            std::filesystem::perms::none);
  auto back = store.load();
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(nlohmann::json(*back), nlohmann::json(l));
  // A berth gone from the ledger loses its record.
  l.berths.clear();
  ASSERT_TRUE(store.save(l, {"manual/x"}));
  EXPECT_FALSE(std::filesystem::exists(store.record_path("manual/x")));
  EXPECT_TRUE(store.load()->berths.empty());
}

TEST_F(StateStoreTest, AttachmentStateLivesInTheRuntimeDirectoryAndAReservationWins) {
  StateStore store(dir_.string(), (dir_ / "run").string());
  Ledger l = reserved_then_attaching(store);
  EXPECT_TRUE(std::filesystem::exists(store.runtime_record_path("slurm/1")));
  EXPECT_EQ(store.load()->berths.at("slurm/1").state, BerthState::attaching);
  // A reboot clears the runtime directory: the reservation is what is left.
  std::filesystem::remove_all(dir_ / "run");
  EXPECT_EQ(store.load()->berths.at("slurm/1").state, BerthState::reserved);
  // A durable write supersedes the runtime record.
  ASSERT_TRUE(store.save(l, {"slurm/1"}, false));
  l.berths["slurm/1"].state = BerthState::released;
  ASSERT_TRUE(store.save(l, {"slurm/1"}, true));
  EXPECT_FALSE(std::filesystem::exists(store.runtime_record_path("slurm/1")));
  EXPECT_EQ(store.load()->berths.at("slurm/1").state, BerthState::released);
}

TEST_F(StateStoreTest, OnlyTheChangedBerthIsWritten) {
  StateStore store(dir_.string(), (dir_ / "run").string());
  Ledger l;
  for (const char* owner : {"slurm/1", "slurm/2"}) {
    Berth b;
    b.owner = owner;
    l.berths[owner] = b;
  }
  ASSERT_TRUE(store.save_all(l));
  auto before = std::filesystem::last_write_time(store.record_path("slurm/2"));
  l.berths["slurm/1"].error = "changed";
  ASSERT_TRUE(store.save(l, {"slurm/1"}));
  EXPECT_EQ(std::filesystem::last_write_time(store.record_path("slurm/2")), before);
  EXPECT_EQ(store.load()->berths.at("slurm/1").error, "changed");
}

TEST_F(StateStoreTest, CorruptFileStopsWithAClearMessage) {
  StateStore store(dir_.string(), (dir_ / "run").string());
  Ledger good;
  good.berths["manual/x"].owner = "manual/x";
  ASSERT_TRUE(store.save_all(good));
  const std::string path = store.record_path("manual/x");
  std::ofstream(path) << "{\"owner\":";
  auto l = store.load();
  ASSERT_FALSE(l);
  EXPECT_NE(l.error().message.find(path + " is corrupt"), std::string::npos) << l.error().message;
  std::ofstream(path) << R"({"owner":"manual/x"})";
  l = store.load();
  ASSERT_FALSE(l);
  EXPECT_NE(l.error().message.find("is corrupt"), std::string::npos);
  // A record under another owner's name is corrupt too, not silently renamed.
  Ledger other;
  other.berths["manual/y"].owner = "manual/y";
  ASSERT_TRUE(store.save_all(other));
  std::filesystem::remove(path);
  std::filesystem::rename(store.record_path("manual/y"), path);
  l = store.load();
  ASSERT_FALSE(l);
  EXPECT_NE(l.error().message.find("holds berth manual/y"), std::string::npos);
}

// An operation's steps are lines appended to the runtime record, read back in order; a line
// cut short by a crash is the last and is left out; a bad line in the middle is corruption.
TEST_F(StateStoreTest, ProgressLinesFollowTheRuntimeRecord) {
  std::filesystem::create_directories(dir_);
  StateStore store(dir_.string(), (dir_ / "run").string());
  Ledger l;
  Berth& b = l.berths["slurm/1"];
  b.owner = "slurm/1";
  b.state = BerthState::attaching;
  b.op = Operation::attach;
  b.in_flight = step::LinkUp{"ib0"};
  auto saved = store.save(l, {"slurm/1"}, false);
  ASSERT_TRUE(saved) << saved.error().message;
  Berth written = b;
  auto append = [&](Berth now) {
    auto line = progress_line(written, now);
    ASSERT_TRUE(line);
    ASSERT_TRUE(store.write({{"slurm/1", *line, true}}, false));
  };
  b.done.push_back({step::LinkUp{"ib0"}, "was-down"});
  b.in_flight = step::SetCpuset{"0-1", "0"};
  append(b);
  b.done.push_back({step::SetCpuset{"0-1", "0"}, "0-3|0"});
  b.in_flight.reset();
  b.state = BerthState::attached;
  b.op = Operation::none;
  append(b);
  const std::string path = store.runtime_record_path("slurm/1");
  auto loaded = store.load();
  ASSERT_TRUE(loaded) << loaded.error().message;
  EXPECT_EQ(nlohmann::json(*loaded), nlohmann::json(l));

  std::ofstream(path, std::ios::app) << R"({"state":"detaching","operation":"det)";
  loaded = store.load();
  ASSERT_TRUE(loaded) << loaded.error().message;
  EXPECT_EQ(nlohmann::json(*loaded), nlohmann::json(l));
  std::ofstream(path, std::ios::app) << "\n";
  loaded = store.load();
  ASSERT_FALSE(loaded);
  EXPECT_NE(loaded.error().message.find(path + " is corrupt (line 4:"), std::string::npos)
      << loaded.error().message;

  // A whole write starts the record again; the lines before it are gone with the old one.
  ASSERT_TRUE(store.save(l, {"slurm/1"}, false));
  written = b;
  loaded = store.load();
  ASSERT_TRUE(loaded) << loaded.error().message;
  EXPECT_EQ(nlohmann::json(*loaded), nlohmann::json(l));
}

// After a failed write no line is appended to the record (it would follow a state that is not
// there) until the record is written whole again.
TEST_F(StateStoreTest, AfterAFailedWriteNoLineIsAppendedUntilTheRecordIsWrittenWhole) {
  std::filesystem::create_directories(dir_);
  StateStore store(dir_.string(), (dir_ / "run").string());
  Ledger l;
  Berth& b = l.berths["slurm/1"];
  b.owner = "slurm/1";
  auto saved = store.save(l, {"slurm/1"}, false);
  ASSERT_TRUE(saved) << saved.error().message;
  Berth written = b;
  b.state = BerthState::attaching;
  auto line = progress_line(written, b);
  ASSERT_TRUE(line);
  const std::string path = store.runtime_record_path("slurm/1");
  std::filesystem::remove(path);
  auto failed = store.write({{"slurm/1", *line, true}}, false);
  ASSERT_FALSE(failed);
  EXPECT_NE(failed.error().message.find("cannot open " + path), std::string::npos);
  // The record is back (as a crash and restart could leave it): a line still is refused.
  std::ofstream(path) << nlohmann::json(written).dump() << "\n";
  failed = store.write({{"slurm/1", *line, true}}, false);
  ASSERT_FALSE(failed);
  EXPECT_NE(failed.error().message.find("written whole next"), std::string::npos);
  ASSERT_TRUE(store.save(l, {"slurm/1"}, false));
  written = b;
  b.state = BerthState::attached;
  line = progress_line(written, b);
  ASSERT_TRUE(store.write({{"slurm/1", *line, true}}, false));
  EXPECT_EQ(store.load()->berths.at("slurm/1").state, BerthState::attached);
}

TEST_F(StateStoreTest, AnUnreadableDirectoryFailsClosed) {
  StateStore store(dir_.string(), (dir_ / "run").string());
  ASSERT_TRUE(store.save(Ledger{}, {}, true));
  std::filesystem::create_directories(dir_ / "berths");
  // A kind entry that cannot be listed: before, its berths were silently dropped.
  std::ofstream(dir_ / "berths" / "slurm") << "not a directory";
  auto l = store.load();
  ASSERT_FALSE(l);
  EXPECT_NE(l.error().message.find("cannot list"), std::string::npos) << l.error().message;
  EXPECT_NE(l.error().message.find("berths/slurm"), std::string::npos) << l.error().message;
}

TEST_F(StateStoreTest, NewDirectoriesAreCreatedAndTheBootIdIsRemembered) {
  StateStore store(dir_.string(), (dir_ / "run").string());
  auto first = store.swap_boot_id("boot-a");
  ASSERT_TRUE(first);
  EXPECT_EQ(*first, "");
  auto same = store.swap_boot_id("boot-a");
  ASSERT_TRUE(same);
  EXPECT_EQ(*same, "boot-a");
  auto next = store.swap_boot_id("boot-b");
  ASSERT_TRUE(next);
  EXPECT_EQ(*next, "boot-a");
}

// A record's directories are made when it is first written and not looked at again; a directory
// that went away meanwhile (the runtime directory emptied by hand, a kind's directory removed) is
// made again by the next write, with the same permissions.
TEST_F(StateStoreTest, ARecordsDirectoriesAreMadeAgainWhenTheyWentAway) {
  namespace fs = std::filesystem;
  StateStore store(dir_.string(), (dir_ / "run").string());
  Ledger l = reserved_then_attaching(store);
  ASSERT_TRUE(store.save(l, {"slurm/1"}, false));
  fs::remove_all(dir_ / "run");
  auto again = store.save(l, {"slurm/1"}, false);
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_TRUE(fs::exists(store.runtime_record_path("slurm/1")));
  for (const auto& d : {dir_ / "run", dir_ / "run" / "berths", dir_ / "run" / "berths" / "slurm"})
    EXPECT_EQ(fs::status(d).permissions() & fs::perms::all, fs::perms::owner_all) << d;
  ASSERT_TRUE(store.save(l, {"slurm/1"}, true));
  fs::remove_all(dir_ / "berths" / "slurm");
  auto durable = store.save(l, {"slurm/1"}, true);
  ASSERT_TRUE(durable) << durable.error().message;
  EXPECT_EQ(store.load()->berths.at("slurm/1").state, BerthState::attaching);
  // What cannot be made is still an error that names it.
  fs::remove_all(dir_ / "run");
  std::ofstream(dir_ / "run") << "not a directory";
  auto blocked = store.save(l, {"slurm/1"}, false);
  ASSERT_FALSE(blocked);
  EXPECT_NE(blocked.error().message.find((dir_ / "run").string()), std::string::npos)
      << blocked.error().message;
}

TEST(DevicesList, KnowsWhatIsAlreadyAllowed) {
  EXPECT_TRUE(devices_list_allows("a *:* rwm\n", 10, 229));
  EXPECT_TRUE(devices_list_allows("c 1:3 rwm\nc 10:229 rwm\n", 10, 229));
  EXPECT_TRUE(devices_list_allows("c 136:* rwm\n", 136, 4));
  EXPECT_FALSE(devices_list_allows("c *:* m\nb *:* m\nc 1:3 rwm\n", 10, 229));
  EXPECT_FALSE(devices_list_allows("c 10:229 r\n", 10, 229));
}

}  // namespace berth::agent
