#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "agent/host/journal_file.hpp"
#include "core/github.hpp"

using namespace berth;
using namespace berth::agent;

namespace {

class JournalFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("berth-journal-" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);  // the state directory; its github/ is made here
    path_ = (dir_ / "github" / "runners.journal").string();
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string contents() const {
    std::ifstream in(path_);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  std::filesystem::path dir_;
  std::string path_;
};

TEST_F(JournalFileTest, AppendsOverwriteSpaceLaidDownAheadWithoutGrowingTheFile) {
  JournalFile journal(path_, 4096);
  auto reset = journal.reset();  // makes the missing github/ too
  ASSERT_TRUE(reset) << reset.error().message;
  struct stat before {};
  ASSERT_EQ(::stat(path_.c_str(), &before), 0);
  EXPECT_EQ(before.st_size, 4096);
  EXPECT_GE(before.st_blocks * 512, 4096) << "the space is written, not a hole";
  ASSERT_TRUE(journal.append("{\"delivery\":\"a\"}\n"));
  ASSERT_TRUE(journal.append("{\"delivery\":\"b\"}\n"));
  struct stat after {};
  ASSERT_EQ(::stat(path_.c_str(), &after), 0);
  EXPECT_EQ(after.st_size, 4096)
      << "an append that grows the file makes every flush write the inode";
  EXPECT_EQ(journal_text(contents()), "{\"delivery\":\"a\"}\n{\"delivery\":\"b\"}\n");
}

TEST_F(JournalFileTest, GrowsByWholeChunksWhenALineDoesNotFit) {
  JournalFile journal(path_, 4096);
  ASSERT_TRUE(journal.reset());
  const std::string line = std::string(3000, 'x') + "\n";
  ASSERT_TRUE(journal.append(line));
  ASSERT_TRUE(journal.append(line));
  EXPECT_EQ(journal.capacity(), 8192u);
  EXPECT_EQ(std::filesystem::file_size(path_), 8192u);
  EXPECT_EQ(journal_text(contents()), line + line);
}

TEST_F(JournalFileTest, WholeBlockWritesKeepTheLinesBeforeThemAcrossBlockBoundaries) {
  JournalFile journal(path_, 4096);
  ASSERT_TRUE(journal.reset());
  std::string all;
  for (int i = 0; i < 200; ++i) {  // lines of 1 to 97 bytes: every offset within a block
    const std::string line = "{\"delivery\":\"" + std::string(static_cast<size_t>(i % 84), 'a') +
                             std::to_string(i) + "\"}\n";
    ASSERT_TRUE(journal.append(line));
    all += line;
  }
  EXPECT_EQ(journal.used(), all.size());
  EXPECT_EQ(journal_text(contents()), all);
  std::printf("journal written %s\n",
              journal.direct() ? "with O_DIRECT" : "through the page cache");
}

TEST_F(JournalFileTest, ResetEmptiesItAndAnAppendBeforeOneFails) {
  JournalFile journal(path_, 128);
  EXPECT_FALSE(journal.append("x\n")) << "nothing to append to before a reset";
  ASSERT_TRUE(journal.reset());
  ASSERT_TRUE(journal.append("{\"delivery\":\"a\"}\n"));
  ASSERT_TRUE(journal.reset());
  EXPECT_EQ(journal_text(contents()), "");
  ASSERT_TRUE(journal.append("{\"delivery\":\"b\"}\n"));
  EXPECT_EQ(journal_text(contents()), "{\"delivery\":\"b\"}\n");
}

TEST_F(JournalFileTest, AReplayReadsTheLinesBeforeTheSpaceNotYetWritten) {
  JournalFile journal(path_, 1024);
  ASSERT_TRUE(journal.reset());
  ASSERT_TRUE(journal.append("{\"delivery\":\"d1\"}\n{\"delivery\":\"d2\"}\n"));
  // A line cut short by a crash, then the zeros after it.
  ASSERT_TRUE(journal.append("{\"delivery\":"));
  github::Book book;
  auto applied = github::replay_journal(book, std::string(journal_text(contents())), 100);
  ASSERT_TRUE(applied) << applied.error().message;
  EXPECT_EQ(*applied, 2u);
  EXPECT_EQ(book.deliveries.size(), 2u);
}

}  // namespace
