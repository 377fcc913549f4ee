#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "agent/host/cgroup_dirs.hpp"
#include "agent/host/cgroups.hpp"

using namespace berth::agent;
namespace fs = std::filesystem;

namespace {

class CgroupDirsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    mount_ = fs::temp_directory_path() / ("berth-cgroup-dirs-" + std::to_string(::getpid()));
    fs::remove_all(mount_);
    fs::create_directories(mount_ / "devices" / "box");
  }
  void TearDown() override { fs::remove_all(mount_); }
  // cgroupfs files exist before they are written; so do these.
  void make_files(const fs::path& dir) {
    for (const char* f : {"devices.allow", "devices.deny"}) std::ofstream(dir / f).put('\n');
  }
  static std::string contents(const fs::path& p) {
    std::ifstream in(p);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  static ino_t inode_of(int fd) {
    struct stat st {};
    return ::fstat(fd, &st) == 0 ? st.st_ino : 0;
  }
  fs::path mount_;
};

TEST_F(CgroupDirsTest, ADirectoryIsOpenedOnceAndKeptUntilForgotten) {
  CgroupDirs dirs;
  CgroupDir first = dirs.open(mount_ / "devices", "/box");
  ASSERT_TRUE(first) << std::strerror(errno);
  CgroupDir again = dirs.open(mount_ / "devices", "/box");
  EXPECT_EQ(again.get(), first.get()) << "the kept descriptor, not a new open";
  struct stat box {};
  ASSERT_EQ(::stat((mount_ / "devices" / "box").c_str(), &box), 0);
  EXPECT_EQ(inode_of(first.get()), box.st_ino);
  EXPECT_EQ(dirs.kept(), 1u);
  dirs.forget();
  EXPECT_EQ(dirs.kept(), 0u);
  EXPECT_EQ(::fcntl(first.get(), F_GETFD), -1) << "closed when forgotten";
}

TEST_F(CgroupDirsTest, AFailedLookupIsNotKeptAndLeavesErrno) {
  CgroupDirs dirs;
  errno = 0;
  EXPECT_FALSE(dirs.open(mount_ / "devices", "/missing"));
  EXPECT_EQ(errno, ENOENT);
  EXPECT_EQ(dirs.kept(), 0u);
  fs::create_directories(mount_ / "devices" / "missing");
  EXPECT_TRUE(dirs.open(mount_ / "devices", "/missing")) << "looked up again, found now";
}

TEST_F(CgroupDirsTest, PathsAreResolvedStrictlyBeneathTheMount) {
  CgroupDirs dirs;
  fs::create_directory_symlink(mount_ / "devices" / "box", mount_ / "devices" / "link");
  EXPECT_FALSE(dirs.open(mount_ / "devices", "/link")) << "a symlink is never followed";
  EXPECT_FALSE(dirs.open(mount_ / "devices", "/../devices/box")) << "nor a path out of the mount";
  EXPECT_EQ(dirs.kept(), 0u);
}

// A CgroupV1 that shares the kept directories writes through them: after the first file, the
// cgroup's path is not walked again until the directories are forgotten.
TEST_F(CgroupDirsTest, CgroupFilesAreOpenedBeneathTheKeptDirectory) {
  CgroupDirs dirs;
  CgroupV1 cg(mount_, &dirs);
  make_files(mount_ / "devices" / "box");
  ASSERT_TRUE(cg.write("devices", "/box", "devices.allow", "c 195:0 rwm"));
  EXPECT_EQ(dirs.kept(), 1u);
  // The directory is replaced by another of the same name: the kept one is still written to
  // (what a live container's cgroup cannot do), until forgotten.
  fs::rename(mount_ / "devices" / "box", mount_ / "devices" / "old");
  fs::create_directories(mount_ / "devices" / "box");
  make_files(mount_ / "devices" / "box");
  ASSERT_TRUE(cg.write("devices", "/box", "devices.deny", "c 195:0 rwm"));
  EXPECT_EQ(contents(mount_ / "devices" / "old" / "devices.deny"), "c 195:0 rwm");
  dirs.forget();
  ASSERT_TRUE(cg.write("devices", "/box", "devices.deny", "c 195:0 rwm"));
  EXPECT_EQ(contents(mount_ / "devices" / "box" / "devices.deny"), "c 195:0 rwm");
}

}  // namespace
