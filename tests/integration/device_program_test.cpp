// cgroup v2 device programs on the real kernel: a test cgroup under the cgroup2 mount with a
// runtime-style deny-by-default program, a process in it that tries the stand-in device, and
// berth's wrap and unwrap around that program.
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <unistd.h>
#include <csignal>

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>

#include "agent/host/device_programs.hpp"
#include "tests/host/host.hpp"

namespace berth::itest {
namespace {

using agent::DevicePrograms;
using agent::UniqueFd;

constexpr unsigned kFuseMajor = 10, kFuseMinor = 229;  // the stand-in GPU
constexpr unsigned kZeroMajor = 1, kZeroMinor = 5;     // a second device berth may add

// What a runtime attaches: /dev/null and mknod of anything, nothing else.
std::vector<bpf::Insn> runtime_program() {
  return bpf::runtime_program({{bpf::kDevChar, 1, 3}, {bpf::kDevChar, -1, -1, bpf::kAccMknod}},
                              false);
}

class DeviceProgramTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!skip_reason.empty()) GTEST_SKIP() << skip_reason;
    mount_ = agent::find_unified_mount("/sys/fs/cgroup");
    if (mount_.empty())
      GTEST_SKIP() << "no cgroup2 mount at /sys/fs/cgroup or /sys/fs/cgroup/unified";
    dir_ = mount_ + "/" + cgroup_.substr(1);
    std::filesystem::create_directories(dir_);
    cg_.reset(::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    ASSERT_TRUE(cg_);
    auto prog = agent::load_device_program(runtime_program());
    ASSERT_TRUE(prog) << prog.error().message;
    runtime_ = std::move(*prog);
    auto s = agent::attach_device_program(cg_.get(), runtime_.get());
    ASSERT_TRUE(s) << s.error().message;
    runtime_id_ = only_program();
  }
  void TearDown() override {
    cg_.reset();
    if (!dir_.empty()) ::rmdir(dir_.c_str());  // releases whatever is still attached
  }

  uint32_t only_program() {
    auto ids = programs_.attached(cgroup_);
    EXPECT_TRUE(ids) << ids.error().message;
    EXPECT_EQ(ids->size(), 1u);
    return ids->empty() ? 0 : ids->front();
  }

  // Opens `path` from a child moved into the test cgroup: what a container process could do.
  bool can_open(const char* path) {
    pid_t pid = ::fork();
    if (pid == 0) {
      std::ofstream(dir_ + "/cgroup.procs") << 0 << std::flush;
      int fd = ::open(path, O_RDONLY | O_CLOEXEC);
      ::_exit(fd >= 0 ? 0 : 1);
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
  }

  std::string cgroup_ = "/berth-itest-devprog";
  std::string mount_;
  std::string dir_;
  UniqueFd cg_;
  UniqueFd runtime_;
  uint32_t runtime_id_ = 0;
  DevicePrograms programs_{agent::find_unified_mount("/sys/fs/cgroup")};
};

TEST_F(DeviceProgramTest, AttachAllowsTheDeviceKeepsTheOldRulesAndDetachPutsTheOriginalBack) {
  EXPECT_FALSE(can_open("/dev/fuse"));
  EXPECT_TRUE(can_open("/dev/null"));
  EXPECT_FALSE(can_open("/dev/zero"));

  auto a = programs_.allow(cgroup_, kFuseMajor, kFuseMinor);
  ASSERT_TRUE(a) << a.error().message;
  EXPECT_TRUE(a->present);
  EXPECT_FALSE(a->already);
  EXPECT_NE(only_program(), runtime_id_);
  EXPECT_TRUE(can_open("/dev/fuse"));
  EXPECT_TRUE(can_open("/dev/null")) << "what the runtime allowed is still allowed";
  EXPECT_FALSE(can_open("/dev/zero")) << "and nothing else";

  auto again = programs_.allow(cgroup_, kFuseMajor, kFuseMinor);
  ASSERT_TRUE(again);
  EXPECT_TRUE(again->already);
  auto null = programs_.allow(cgroup_, 1, 3);
  ASSERT_TRUE(null);
  EXPECT_TRUE(null->already) << "the runtime's program already allows /dev/null";

  auto d = programs_.deny(cgroup_, kFuseMajor, kFuseMinor);
  ASSERT_TRUE(d) << d.error().message;
  EXPECT_EQ(only_program(), runtime_id_) << "exactly the runtime's program again";
  EXPECT_NE(d->note.find("restored"), std::string::npos) << d->note;
  EXPECT_FALSE(can_open("/dev/fuse"));
  EXPECT_TRUE(can_open("/dev/null"));
}

// berthd restarts while a berth program stands in for the runtime's: with the original pinned
// in a bpffs, the new berthd's detach puts back exactly it (same id), and the pin goes.
class DeviceProgramPinTest : public DeviceProgramTest {
 protected:
  DeviceProgramPinTest() { cgroup_ = "/berth-itest-devprog-pin"; }
  void TearDown() override {
    if (!pins_.empty()) {
      ::umount2(pins_.c_str(), MNT_DETACH);
      ::rmdir(pins_.c_str());
    }
    DeviceProgramTest::TearDown();
  }
  // A bpffs of the test's own for berth's pins; empty (and `why` set) where there is none.
  std::string pin_dir(const std::string& name, std::string& why) {
    pins_ = std::filesystem::temp_directory_path() / (name + "-" + std::to_string(::getpid()));
    auto prepared = agent::prepare_pin_dir(pins_);
    if (prepared) return pins_;
    why = "no bpffs here: " + prepared.error().message;
    pins_.clear();
    return {};
  }
  // Only berth's pins (a fresh bpffs may hold the kernel's maps.debug and progs.debug).
  int pinned() const {
    int n = 0;
    for (const auto& e : std::filesystem::directory_iterator(pins_))
      n += e.path().filename().string().rfind("original-", 0) == 0;
    return n;
  }
  std::string pins_;
};

TEST_F(DeviceProgramPinTest, AfterARestartDetachPutsBackTheSameProgramFromItsPin) {
  std::string why;
  const std::string pins = pin_dir("berth-itest-bpf", why);
  if (pins.empty()) GTEST_SKIP() << why;
  const uint32_t runtime_id = runtime_id_;
  {
    DevicePrograms first(mount_, pins);
    auto a = first.allow(cgroup_, kFuseMajor, kFuseMinor);
    ASSERT_TRUE(a) << a.error().message;
    EXPECT_EQ(pinned(), 1);
  }
  // The runtime forgets its own descriptor too: only the pin keeps the program alive.
  runtime_.reset();
  EXPECT_TRUE(can_open("/dev/fuse"));
  DevicePrograms second(mount_, pins);
  auto zero = second.allow(cgroup_, kZeroMajor, kZeroMinor);  // another device meanwhile
  ASSERT_TRUE(zero) << zero.error().message;
  ASSERT_TRUE(second.deny(cgroup_, kZeroMajor, kZeroMinor));
  auto d = second.deny(cgroup_, kFuseMajor, kFuseMinor);
  ASSERT_TRUE(d) << d.error().message;
  EXPECT_EQ(only_program(), runtime_id) << "the runtime's own program, not a copy: " << d->note;
  EXPECT_NE(d->note.find("restored"), std::string::npos) << d->note;
  EXPECT_FALSE(can_open("/dev/fuse"));
  EXPECT_TRUE(can_open("/dev/null"));
  EXPECT_EQ(pinned(), 0) << "the pin is gone with the berth";
}

// A berth program kept for the cgroup stands in again, after the runtime replaced it with a new
// program of the same instructions (`runc update` regenerates the same rules): the pin under its
// id then names the runtime's new program, not the one it replaced, so after a restart detach
// puts back exactly the runtime's current program.
TEST_F(DeviceProgramPinTest, AKeptProgramStandingInAgainRepinsTheRuntimesCurrentProgram) {
  std::string why;
  const std::string pins = pin_dir("berth-itest-bpf-repin", why);
  if (pins.empty()) GTEST_SKIP() << why;
  DevicePrograms first(mount_, pins);
  ASSERT_TRUE(first.allow(cgroup_, kFuseMajor, kFuseMinor));
  const uint32_t stand_in = only_program();
  auto regenerated = agent::load_device_program(runtime_program());
  ASSERT_TRUE(regenerated) << regenerated.error().message;
  UniqueFd berths = agent::device_program_by_id(stand_in);
  ASSERT_TRUE(berths);
  ASSERT_TRUE(agent::attach_device_program(cg_.get(), regenerated->get(), berths.get()));
  berths.reset();
  const uint32_t current = only_program();
  ASSERT_TRUE(first.deny(cgroup_, kFuseMajor, kFuseMinor));
  EXPECT_EQ(only_program(), current) << "not berth's: left as it is";

  ASSERT_TRUE(first.allow(cgroup_, kFuseMajor, kFuseMinor));
  ASSERT_EQ(only_program(), stand_in) << "the kept program, the instructions being the same";
  EXPECT_EQ(pinned(), 1);
  DevicePrograms second(mount_, pins);  // berthd restarted
  auto d = second.deny(cgroup_, kFuseMajor, kFuseMinor);
  ASSERT_TRUE(d) << d.error().message;
  EXPECT_EQ(only_program(), current) << d->note;
  EXPECT_NE(d->note.find("restored"), std::string::npos) << d->note;
}

// A container that went away while its berth was attached (berthd down, or the cgroup removed
// before the detach) leaves a pin that keeps the runtime's program alive for nothing: the sweep
// at start removes it, and keeps the pins of berth programs that are still attached.
TEST_F(DeviceProgramPinTest, APinWhoseStandInIsGoneIsSweptAndALiveOneIsKept) {
  std::string why;
  const std::string pins = pin_dir("berth-itest-bpf-sweep", why);
  if (pins.empty()) GTEST_SKIP() << why;
  auto programs = std::make_unique<DevicePrograms>(mount_, pins);
  auto a = programs->allow(cgroup_, kFuseMajor, kFuseMinor);
  ASSERT_TRUE(a) << a.error().message;
  ASSERT_EQ(pinned(), 1);
  EXPECT_TRUE(agent::sweep_stale_pins(pins).empty()) << "its stand-in is attached";
  EXPECT_EQ(pinned(), 1);
  // berthd goes, with the programs it kept (the sweep runs when it starts again), and the
  // container's cgroup goes (its runtime removed it); the kernel frees the programs attached to
  // it once the cgroup is released, a moment later.
  programs.reset();
  cg_.reset();
  ASSERT_EQ(::rmdir(dir_.c_str()), 0) << std::strerror(errno);
  dir_.clear();
  std::vector<std::string> swept;
  for (int i = 0; i < 100 && swept.empty(); ++i) {
    swept = agent::sweep_stale_pins(pins);
    if (swept.empty()) ::usleep(50 * 1000);
  }
  ASSERT_EQ(swept.size(), 1u);
  EXPECT_EQ(swept[0].rfind("original-", 0), 0u);
  EXPECT_EQ(pinned(), 0);
}

TEST_F(DeviceProgramTest, DetachNamesTheProcessesThatStillHoldTheDeviceOpen) {
  // One in the container's own cgroup, one in a cgroup two levels below it (a systemd or a
  // runtime inside the container puts its processes there).
  const std::string nested = dir_ + "/inner/job";
  ASSERT_EQ(::mkdir((dir_ + "/inner").c_str(), 0755), 0) << std::strerror(errno);
  ASSERT_EQ(::mkdir(nested.c_str(), 0755), 0) << std::strerror(errno);
  // Stopped and removed however the test ends.
  struct Holders {
    std::vector<pid_t> pids;
    std::vector<std::string> dirs;
    ~Holders() {
      for (pid_t h : pids) {
        ::kill(h, SIGKILL);
        ::waitpid(h, nullptr, 0);
      }
      for (const auto& d : dirs) ::rmdir(d.c_str());
    }
  } holding{{}, {nested, dir_ + "/inner"}};
  std::vector<pid_t>& holders = holding.pids;
  ASSERT_TRUE(programs_.allow(cgroup_, kFuseMajor, kFuseMinor));
  for (const std::string& where : {dir_, nested}) {
    int ready[2];
    ASSERT_EQ(::pipe(ready), 0);
    pid_t holder = ::fork();
    if (holder == 0) {
      std::ofstream(where + "/cgroup.procs") << 0 << std::flush;
      int fd = ::open("/dev/fuse", O_RDONLY);
      (void)::write(ready[1], fd >= 0 ? "y" : "n", 1);
      ::pause();
      ::_exit(0);
    }
    char c = 0;
    EXPECT_EQ(::read(ready[0], &c, 1), 1);
    EXPECT_EQ(c, 'y') << "opened from " << where;
    ::close(ready[0]);
    ::close(ready[1]);
    holders.push_back(holder);
  }
  ASSERT_TRUE(programs_.deny(cgroup_, kFuseMajor, kFuseMinor));
  auto held = programs_.held_devices(cgroup_);
  const auto named = held[{kFuseMajor, kFuseMinor}];
  ASSERT_EQ(named.size(), 2u);
  for (pid_t h : holders) {
    const std::string who = "pid " + std::to_string(h) + " ";
    EXPECT_TRUE(named[0].rfind(who, 0) == 0 || named[1].rfind(who, 0) == 0)
        << who << "is not named: " << named[0] << ", " << named[1];
  }
}

TEST_F(DeviceProgramTest, TwoBerthsOnOneCgroupLeaveInEitherOrder) {
  for (bool fuse_first : {true, false}) {
    ASSERT_TRUE(programs_.allow(cgroup_, kFuseMajor, kFuseMinor));
    ASSERT_TRUE(programs_.allow(cgroup_, kZeroMajor, kZeroMinor));
    EXPECT_TRUE(can_open("/dev/fuse"));
    EXPECT_TRUE(can_open("/dev/zero"));
    if (fuse_first) {
      ASSERT_TRUE(programs_.deny(cgroup_, kFuseMajor, kFuseMinor));
      EXPECT_FALSE(can_open("/dev/fuse"));
      EXPECT_TRUE(can_open("/dev/zero"));
      ASSERT_TRUE(programs_.deny(cgroup_, kZeroMajor, kZeroMinor));
    } else {
      ASSERT_TRUE(programs_.deny(cgroup_, kZeroMajor, kZeroMinor));
      EXPECT_TRUE(can_open("/dev/fuse"));
      EXPECT_FALSE(can_open("/dev/zero"));
      ASSERT_TRUE(programs_.deny(cgroup_, kFuseMajor, kFuseMinor));
    }
    EXPECT_EQ(only_program(), runtime_id_);
    EXPECT_FALSE(can_open("/dev/fuse"));
    EXPECT_FALSE(can_open("/dev/zero"));
    EXPECT_TRUE(can_open("/dev/null"));
  }
}

TEST_F(DeviceProgramTest, AProgramTheRuntimeSwappedInMeanwhileIsWrappedNotClobbered) {
  ASSERT_TRUE(programs_.allow(cgroup_, kFuseMajor, kFuseMinor));
  // The runtime regenerates its program (say, an update that now also allows /dev/zero) and
  // replaces berth's with it, as runc and crun do.
  auto updated = agent::load_device_program(bpf::runtime_program(
      {{bpf::kDevChar, 1, 3}, {bpf::kDevChar, 1, 5}, {bpf::kDevChar, -1, -1, bpf::kAccMknod}},
      false));
  ASSERT_TRUE(updated);
  UniqueFd berths = agent::device_program_by_id(only_program());
  ASSERT_TRUE(berths);
  ASSERT_TRUE(agent::attach_device_program(cg_.get(), updated->get(), berths.get()));
  const uint32_t updated_id = only_program();
  EXPECT_FALSE(can_open("/dev/fuse")) << "berth's rules went with its program";
  EXPECT_TRUE(can_open("/dev/zero"));

  // Detach finds a program that is not berth's: it leaves it as it is.
  auto d = programs_.deny(cgroup_, kFuseMajor, kFuseMinor);
  ASSERT_TRUE(d) << d.error().message;
  EXPECT_EQ(only_program(), updated_id);

  // Attach again wraps the runtime's new program, keeping what it allows.
  ASSERT_TRUE(programs_.allow(cgroup_, kFuseMajor, kFuseMinor));
  EXPECT_TRUE(can_open("/dev/fuse"));
  EXPECT_TRUE(can_open("/dev/zero"));
  ASSERT_TRUE(programs_.deny(cgroup_, kFuseMajor, kFuseMinor));
  EXPECT_EQ(only_program(), updated_id);
}

// Each step's program is loaded once for a cgroup: a detach swaps back in the programs its attach
// loaded, and the next attach of the same container those again (the same ids). A new load would
// give each a new id.
TEST_F(DeviceProgramTest, ADetachAndTheNextAttachReuseTheProgramsLoadedForTheCgroup) {
  ASSERT_TRUE(programs_.allow(cgroup_, kFuseMajor, kFuseMinor));
  const uint32_t fuse_only = only_program();
  ASSERT_TRUE(programs_.allow(cgroup_, kZeroMajor, kZeroMinor));
  const uint32_t both = only_program();
  EXPECT_NE(both, fuse_only);

  auto d = programs_.deny(cgroup_, kZeroMajor, kZeroMinor);
  ASSERT_TRUE(d) << d.error().message;
  EXPECT_EQ(only_program(), fuse_only) << d->note;
  EXPECT_TRUE(can_open("/dev/fuse"));
  EXPECT_FALSE(can_open("/dev/zero"));
  ASSERT_TRUE(programs_.deny(cgroup_, kFuseMajor, kFuseMinor));
  EXPECT_EQ(only_program(), runtime_id_);

  ASSERT_TRUE(programs_.allow(cgroup_, kFuseMajor, kFuseMinor));
  EXPECT_EQ(only_program(), fuse_only);
  ASSERT_TRUE(programs_.allow(cgroup_, kZeroMajor, kZeroMinor));
  EXPECT_EQ(only_program(), both);
  EXPECT_TRUE(can_open("/dev/fuse"));
  EXPECT_TRUE(can_open("/dev/zero"));
  EXPECT_TRUE(can_open("/dev/null"));
  ASSERT_TRUE(programs_.deny(cgroup_, kZeroMajor, kZeroMinor));
  ASSERT_TRUE(programs_.deny(cgroup_, kFuseMajor, kFuseMinor));
  EXPECT_EQ(only_program(), runtime_id_);
  EXPECT_FALSE(can_open("/dev/fuse"));
}

// Two programs with the same instructions on one cgroup (two loads of the runtime's): each gets a
// berth program of its own, as the kernel attaches a program to a cgroup once; a kept program is
// used for one of them only.
TEST_F(DeviceProgramTest, TwoIdenticalProgramsOnOneCgroupAreEachWrapped) {
  auto twin = agent::load_device_program(runtime_program());
  ASSERT_TRUE(twin) << twin.error().message;
  ASSERT_TRUE(agent::attach_device_program(cg_.get(), twin->get()));
  auto ids = [&] {
    auto a = programs_.attached(cgroup_);
    EXPECT_TRUE(a) << a.error().message;
    return a ? std::set<uint32_t>(a->begin(), a->end()) : std::set<uint32_t>{};
  };
  const auto runtimes = ids();
  ASSERT_EQ(runtimes.size(), 2u);
  for (int round = 0; round < 2; ++round) {
    auto a = programs_.allow(cgroup_, kFuseMajor, kFuseMinor);
    ASSERT_TRUE(a) << "round " << round << ": " << a.error().message;
    const auto wrapped = ids();
    EXPECT_EQ(wrapped.size(), 2u) << a->note;
    for (uint32_t id : wrapped) EXPECT_EQ(runtimes.count(id), 0u) << a->note;
    EXPECT_TRUE(can_open("/dev/fuse"));
    EXPECT_TRUE(can_open("/dev/null"));
    auto d = programs_.deny(cgroup_, kFuseMajor, kFuseMinor);
    ASSERT_TRUE(d) << "round " << round << ": " << d.error().message;
    EXPECT_EQ(ids(), runtimes) << d->note;
    EXPECT_FALSE(can_open("/dev/fuse"));
  }
}

TEST_F(DeviceProgramTest, AProgramThatCallsHelpersIsRefusedAndLeftAttached) {
  // bpf_get_current_uid_gid (15), then allow.
  std::vector<bpf::Insn> calls = {bpf::Insn{bpf::kClassJmp | bpf::kCall, 0, 0, 15},
                                  bpf::Insn{bpf::kClassAlu64 | bpf::kOpMov, 0, 0, 0},
                                  bpf::Insn{bpf::kClassJmp | bpf::kExit, 0, 0, 0}};
  auto prog = agent::load_device_program(calls);
  ASSERT_TRUE(prog) << prog.error().message;
  ASSERT_TRUE(agent::attach_device_program(cg_.get(), prog->get(), runtime_.get()));
  const uint32_t id = only_program();
  auto a = programs_.allow(cgroup_, kFuseMajor, kFuseMinor);
  ASSERT_FALSE(a);
  EXPECT_NE(a.error().message.find("calls a helper"), std::string::npos) << a.error().message;
  EXPECT_EQ(only_program(), id);
}

TEST_F(DeviceProgramTest, ACgroupWithoutAProgramOfItsOwnIsNotV2Gated) {
  const std::string child = cgroup_ + "/inner";
  std::filesystem::create_directories(dir_ + "/inner");
  auto a = programs_.allow(child, kFuseMajor, kFuseMinor);
  ::rmdir((dir_ + "/inner").c_str());
  ASSERT_FALSE(a) << "the parent's program decides: berth says so instead of doing nothing";
  EXPECT_NE(a.error().message.find("parent cgroup"), std::string::npos) << a.error().message;
}

}  // namespace
}  // namespace berth::itest
