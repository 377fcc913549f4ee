#include "agent/host/loaded_programs.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <vector>

using namespace berth;
using namespace berth::agent;

namespace {

// Any descriptor stands in for a loaded program here: the cache only keeps and copies them.
class LoadedProgramsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (auto& p : pipes_) ASSERT_EQ(::pipe(p), 0);
  }
  void TearDown() override {
    for (auto& p : pipes_) {
      ::close(p[0]);
      ::close(p[1]);
    }
  }
  static ino_t inode_of(int fd) {
    struct stat st {};
    return ::fstat(fd, &st) == 0 ? st.st_ino : 0;
  }
  static std::vector<bpf::Insn> program(int32_t imm) {
    return {bpf::Insn{bpf::kClassAlu64 | bpf::kOpMov, 0, 0, imm},
            bpf::Insn{bpf::kClassJmp | bpf::kExit, 0, 0, 0}};
  }
  static LoadedPrograms::Key key(uint64_t cgroup_id, int32_t imm) {
    return LoadedPrograms::key_of(cgroup_id, program(imm));
  }
  int fd(int i) const { return pipes_[i][0]; }
  int pipes_[3][2] = {};
};

TEST_F(LoadedProgramsTest, AKeptProgramIsFoundForTheSameCgroupAndInstructionsOnly) {
  LoadedPrograms loaded;
  loaded.keep(key(7, 1), fd(0), 101);
  auto [same, id] = loaded.find(key(7, 1), {});
  ASSERT_TRUE(same);
  EXPECT_EQ(id, 101u) << "its id comes with it: no need to ask the kernel";
  EXPECT_NE(same.get(), fd(0)) << "a descriptor of its own, which the caller may close";
  EXPECT_EQ(inode_of(same.get()), inode_of(fd(0)));
  EXPECT_FALSE(loaded.find(key(8, 1), {}).first) << "another cgroup loads its own";
  EXPECT_FALSE(loaded.find(key(7, 0), {}).first) << "other instructions are another program";
}

TEST_F(LoadedProgramsTest, AProgramAlreadyAttachedToTheCgroupIsNotHandedOutAgain) {
  LoadedPrograms loaded;
  loaded.keep(key(7, 1), fd(0), 101);
  EXPECT_FALSE(loaded.find(key(7, 1), {99, 101}).first);
  EXPECT_TRUE(loaded.find(key(7, 1), {99}).first);
}

TEST_F(LoadedProgramsTest, PastItsCapacityTheProgramUsedLongestAgoGoes) {
  LoadedPrograms loaded(2);
  loaded.keep(key(7, 1), fd(0), 101);
  loaded.keep(key(7, 2), fd(1), 102);
  ASSERT_TRUE(loaded.find(key(7, 1), {}).first);  // 1 used after 2
  loaded.keep(key(7, 3), fd(2), 103);
  EXPECT_EQ(loaded.kept(), 2u);
  EXPECT_TRUE(loaded.find(key(7, 1), {}).first);
  EXPECT_FALSE(loaded.find(key(7, 2), {}).first);
  EXPECT_TRUE(loaded.find(key(7, 3), {}).first);
}

TEST_F(LoadedProgramsTest, KeepingTheSameInstructionsAgainReplacesTheEntry) {
  LoadedPrograms loaded(2);
  loaded.keep(key(7, 1), fd(0), 101);
  loaded.keep(key(7, 1), fd(1), 111);
  EXPECT_EQ(loaded.kept(), 1u);
  UniqueFd found = loaded.find(key(7, 1), {101}).first;
  ASSERT_TRUE(found) << "the newer program, not attached";
  EXPECT_EQ(inode_of(found.get()), inode_of(fd(1)));
}

}  // namespace
