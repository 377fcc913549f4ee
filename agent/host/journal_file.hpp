#pragma once
// An append-only journal written into space the file already has. The file is laid down as
// zeros ahead of the lines, so an append overwrites blocks that are allocated and initialized,
// and its synchronous write flushes the data alone: an append that grew the file would also
// make the kernel write the inode (the new size) on every flush. The journal's text is what
// comes before its first NUL byte. Not thread-safe: one thread (berthd's worker) uses it.
#include <string>
#include <string_view>

#include "agent/host/unique_fd.hpp"
#include "core/expected.hpp"

namespace berth::agent {

class JournalFile {
 public:
  explicit JournalFile(std::string path, size_t chunk = size_t{1} << 20)
      : path_(std::move(path)), chunk_(chunk) {}

  // An empty journal in place of whatever `path` held: `chunk` zero bytes written to a
  // temporary file, fsynced and renamed over it (the directory fsynced, and made when missing).
  // A crash at any point leaves the old journal or the new empty one, never a mix.
  Status reset();
  // Appends `text` and returns once it is on disk. Without a reset() first (or after a failed
  // one) it fails: the caller writes a snapshot and resets.
  Status append(std::string_view text);

  bool open() const { return static_cast<bool>(fd_); }
  size_t used() const { return used_; }
  size_t capacity() const { return capacity_; }

 private:
  Status grow(size_t at_least);

  std::string path_;
  size_t chunk_;
  UniqueFd fd_;
  size_t used_ = 0;
  size_t capacity_ = 0;
};

// The text of a journal as read from disk: up to its first NUL (the space not yet written).
std::string_view journal_text(std::string_view file);

}  // namespace berth::agent
