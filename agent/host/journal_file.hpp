#pragma once
// An append-only journal written into space the file already has. The file is laid down as
// zeros ahead of the lines, so an append overwrites blocks that are allocated and initialized,
// and its synchronous write flushes the data alone: an append that grew the file would also
// make the kernel write the inode (the new size) on every flush. Appends go around the page
// cache (O_DIRECT, where the file system has it) in whole blocks: the block that holds the end
// of the journal is written again with the lines it already had, byte for byte the same, so a
// write cut short cannot change them. The journal's text is what comes before its first NUL.
// Not thread-safe: one thread (berthd's worker) uses it.
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

#include "agent/host/unique_fd.hpp"
#include "core/expected.hpp"

namespace berth::agent {

class JournalFile {
 public:
  // `chunk`: how much space is laid down at a time, a multiple of kBlock.
  explicit JournalFile(std::string path, size_t chunk = size_t{1} << 20);

  // An empty journal in place of whatever `path` held: `chunk` zero bytes written to a
  // temporary file, fsynced and renamed over it (the directory fsynced, and made when missing).
  // A crash at any point leaves the old journal or the new empty one, never a mix.
  Status reset();
  // Appends `text` and returns once it is on disk. Without a reset() first (or after a failed
  // append) it fails: the caller writes a snapshot and resets.
  Status append(std::string_view text);

  bool direct() const { return direct_; }
  size_t used() const { return used_; }
  size_t capacity() const { return capacity_; }

  // The unit of a direct write: a multiple of every device's logical block size.
  static constexpr size_t kBlock = 4096;

 private:
  struct Free {
    void operator()(char* p) const { std::free(p); }
  };
  // An aligned buffer of at least `size` bytes (kept between appends).
  char* buffer(size_t size);
  Status grow(size_t at_least);

  std::string path_;
  size_t chunk_;
  UniqueFd fd_;
  bool direct_ = false;
  size_t used_ = 0;
  size_t capacity_ = 0;
  std::string tail_;  // the journal's bytes in its last, partly written block
  std::unique_ptr<char, Free> buffer_;
  size_t buffer_size_ = 0;
};

// The text of a journal as read from disk: up to its first NUL (the space not yet written).
std::string_view journal_text(std::string_view file);

}  // namespace berth::agent
