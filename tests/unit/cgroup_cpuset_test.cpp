// The cpuset of a container's cgroup, on a directory tree shaped like a cgroup mount.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "agent/host/cgroups.hpp"

using namespace berth::agent;
namespace fs = std::filesystem;

namespace {

class CgroupCpusetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    mount_ = fs::temp_directory_path() / ("berth-cgroup-cpuset-" + std::to_string(::getpid()));
    fs::remove_all(mount_);
    fs::create_directories(mount_ / "runtime" / "box");
  }
  void TearDown() override { fs::remove_all(mount_); }
  // cgroupfs files exist before they are written; so do these. cgroup v2 reads "" as "inherit".
  void give_cpuset(const fs::path& dir) {
    for (const char* f : {"cpuset.cpus", "cpuset.mems"}) std::ofstream(dir / f) << "\n";
  }
  static std::string contents(const fs::path& p) {
    std::ifstream in(p);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  fs::path mount_;
};

TEST_F(CgroupCpusetTest, OnCgroupV2TheCpusetIsWrittenAndWhatItInheritedIsReturned) {
  CgroupV1 v2(mount_.string());
  give_cpuset(mount_ / "runtime" / "box");
  auto previous = v2.set_cpuset(".", "/runtime/box", "0-3", "0");
  ASSERT_TRUE(previous) << previous.error().message;
  EXPECT_EQ(*previous, "|") << "both inherited from the parent";
  EXPECT_EQ(contents(mount_ / "runtime" / "box" / "cpuset.cpus"), "0-3");
  EXPECT_EQ(contents(mount_ / "runtime" / "box" / "cpuset.mems"), "0");
}

// A cgroup v2 cgroup whose parent does not enable cpuset for its children has no cpuset files:
// the attach is refused with what to enable, and where, instead of a bare "No such file".
TEST_F(CgroupCpusetTest, ACgroupV2CgroupWithoutTheCpusetControllerIsRefusedWithTheFix) {
  CgroupV1 v2(mount_.string());
  auto previous = v2.set_cpuset(".", "/runtime/box", "0-3", "0");
  ASSERT_FALSE(previous);
  EXPECT_EQ(previous.error().code, berth::ErrorCode::host_unsupported);
  const std::string& m = previous.error().message;
  EXPECT_NE(m.find("cgroup " + (mount_ / "runtime" / "box").string() + " has no cpuset controller"),
            std::string::npos)
      << m;
  EXPECT_NE(m.find("echo +cpuset > " + (mount_ / "runtime").string() + "/cgroup.subtree_control"),
            std::string::npos)
      << m;
  EXPECT_NE(m.find("Delegate=cpuset"), std::string::npos) << m;
  EXPECT_FALSE(fs::exists(mount_ / "runtime" / "cgroup.subtree_control"))
      << "berth does not enable the controller in the runtime's cgroup itself";
  EXPECT_FALSE(fs::exists(mount_ / "runtime" / "box" / "cpuset.cpus"));
}

TEST_F(CgroupCpusetTest, AContainerCgroupRightBelowTheRootNamesTheRootsSubtreeControl) {
  CgroupV1 v2(mount_.string());
  fs::create_directories(mount_ / "top");
  auto previous = v2.set_cpuset(".", "/top", "0", "0");
  ASSERT_FALSE(previous);
  EXPECT_NE(previous.error().message.find("echo +cpuset > " + mount_.string() +
                                          "/cgroup.subtree_control"),
            std::string::npos)
      << previous.error().message;
}

// Only a cgroup that is there and lacks the files is told to enable the controller: a cgroup
// that is gone is reported as gone.
TEST_F(CgroupCpusetTest, ACgroupThatIsGoneIsReportedAsGoneNotAsMissingTheController) {
  CgroupV1 v2(mount_.string());
  auto previous = v2.set_cpuset(".", "/runtime/gone", "0", "0");
  ASSERT_FALSE(previous);
  EXPECT_NE(previous.error().code, berth::ErrorCode::host_unsupported);
  EXPECT_EQ(previous.error().message.find("cpuset controller"), std::string::npos)
      << previous.error().message;
}

// On cgroup v1 the controller has a hierarchy of its own: a missing file there is not this case.
TEST_F(CgroupCpusetTest, OnCgroupV1AMissingCpusetFileIsAPlainError) {
  CgroupV1 v1(mount_.string());
  fs::create_directories(mount_ / "cpuset" / "box");
  auto previous = v1.set_cpuset("/box", "0", "0");
  ASSERT_FALSE(previous);
  EXPECT_EQ(previous.error().message.find("cpuset controller"), std::string::npos)
      << previous.error().message;
}

}  // namespace
