#include "agent/host/journal_file.hpp"

#include <fcntl.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "agent/host/errno_error.hpp"
#include "agent/host/state_store.hpp"

namespace berth::agent {
namespace {

size_t round_up(size_t n, size_t to) {
  return (n + to - 1) / to * to;
}

// `size` bytes of `data` at `offset`, through short writes and EINTR; `flags` as for pwritev2.
bool write_at(int fd, const char* data, size_t size, size_t offset, int flags) {
  while (size > 0) {
    iovec iov{const_cast<char*>(data), size};
    const ssize_t n = ::pwritev2(fd, &iov, 1, static_cast<off_t>(offset), flags);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data += n;
    size -= static_cast<size_t>(n);
    offset += static_cast<size_t>(n);
  }
  return true;
}

}  // namespace

JournalFile::JournalFile(std::string path, size_t chunk)
    : path_(std::move(path)), chunk_(std::max(kBlock, round_up(chunk, kBlock))) {}

char* JournalFile::buffer(size_t size) {
  if (size > buffer_size_) {
    buffer_.reset(static_cast<char*>(std::aligned_alloc(kBlock, size)));
    buffer_size_ = buffer_ ? size : 0;
  }
  return buffer_.get();
}

Status JournalFile::reset() {
  fd_.reset();
  used_ = capacity_ = 0;
  tail_.clear();
  if (auto w = write_file_durably(path_, std::string(chunk_, '\0')); !w) return w;
  // Where the file system has no O_DIRECT (tmpfs before Linux 6.6), the same block writes go
  // through the page cache.
  UniqueFd fd(::open(path_.c_str(), O_WRONLY | O_CLOEXEC | O_DIRECT));
  direct_ = static_cast<bool>(fd);
  if (!fd && errno == EINVAL) fd.reset(::open(path_.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd) return errno_error("cannot open", path_);
  fd_ = std::move(fd);
  capacity_ = chunk_;
  return ok_status();
}

Status JournalFile::grow(size_t at_least) {
  const size_t capacity = round_up(at_least, chunk_);
  char* zeros = buffer(chunk_);
  if (!zeros) return make_error(ErrorCode::internal, "no memory to extend " + path_);
  std::memset(zeros, 0, chunk_);
  for (size_t at = capacity_; at < capacity; at += chunk_)
    if (!write_at(fd_.get(), zeros, chunk_, at, 0)) return errno_error("cannot extend", path_);
  if (::fdatasync(fd_.get()) != 0) return errno_error("cannot extend", path_);
  capacity_ = capacity;
  return ok_status();
}

Status JournalFile::append(std::string_view text) {
  if (!fd_) return make_error(ErrorCode::internal, "journal " + path_ + " is not open");
  if (text.empty()) return ok_status();
  const size_t start = used_ - tail_.size();  // the start of the block that holds the end
  const size_t bytes = tail_.size() + text.size();
  const size_t span = round_up(bytes, kBlock);
  if (start + span > capacity_)
    if (auto g = grow(start + span); !g) return g;
  char* out = buffer(span);
  if (!out) return make_error(ErrorCode::internal, "no memory to append to " + path_);
  std::memcpy(out, tail_.data(), tail_.size());
  std::memcpy(out + tail_.size(), text.data(), text.size());
  std::memset(out + bytes, 0, span - bytes);
  // RWF_DSYNC: the write and its flush in one call, as a write followed by fdatasync().
  bool written = write_at(fd_.get(), out, span, start, RWF_DSYNC);
  if (!written && direct_ && errno == EINVAL) {
    // A file system that opens with O_DIRECT but refuses the write: the page cache from now on.
    fd_.reset(::open(path_.c_str(), O_WRONLY | O_CLOEXEC));
    direct_ = false;
    written = fd_ && write_at(fd_.get(), out, span, start, RWF_DSYNC);
  }
  if (!written) {
    // What reached the file is a line cut short at most, which a replay leaves out; the next
    // write starts after a snapshot and a fresh journal.
    fd_.reset();
    return errno_error("cannot append to", path_);
  }
  used_ += text.size();
  const size_t kept = bytes % kBlock;
  tail_.assign(out + bytes - kept, kept);
  return ok_status();
}

std::string_view journal_text(std::string_view file) {
  return file.substr(0, file.find('\0'));
}

}  // namespace berth::agent
