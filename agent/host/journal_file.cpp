#include "agent/host/journal_file.hpp"

#include <fcntl.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "agent/host/state_store.hpp"

namespace berth::agent {
namespace {

Error io_error(const std::string& what, const std::string& path) {
  return make_error(ErrorCode::internal, what + " " + path + ": " + std::strerror(errno));
}

// The whole of `data` at `offset`, through short writes and EINTR; `flags` as for pwritev2.
bool write_at(int fd, std::string_view data, size_t offset, int flags) {
  while (!data.empty()) {
    iovec iov{const_cast<char*>(data.data()), data.size()};
    const ssize_t n = ::pwritev2(fd, &iov, 1, static_cast<off_t>(offset), flags);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
    offset += static_cast<size_t>(n);
  }
  return true;
}

}  // namespace

Status JournalFile::reset() {
  fd_.reset();
  used_ = capacity_ = 0;
  if (auto w = write_file_durably(path_, std::string(chunk_, '\0')); !w) return w;
  UniqueFd fd(::open(path_.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd) return io_error("cannot open", path_);
  fd_ = std::move(fd);
  capacity_ = chunk_;
  return ok_status();
}

Status JournalFile::grow(size_t at_least) {
  size_t capacity = capacity_;
  while (capacity < at_least) capacity += chunk_;
  const std::string zeros(capacity - capacity_, '\0');
  if (!write_at(fd_.get(), zeros, capacity_, 0) || ::fdatasync(fd_.get()) != 0)
    return io_error("cannot extend", path_);
  capacity_ = capacity;
  return ok_status();
}

Status JournalFile::append(std::string_view text) {
  if (!fd_) return make_error(ErrorCode::internal, "journal " + path_ + " is not open");
  if (text.empty()) return ok_status();
  if (used_ + text.size() > capacity_)
    if (auto g = grow(used_ + text.size()); !g) return g;
  // RWF_DSYNC: the write and its flush in one call, as a write followed by fdatasync().
  if (!write_at(fd_.get(), text, used_, RWF_DSYNC)) {
    // What reached the file is a line cut short at most, which a replay leaves out; the next
    // write starts after a snapshot and a fresh journal.
    fd_.reset();
    return io_error("cannot append to", path_);
  }
  used_ += text.size();
  return ok_status();
}

std::string_view journal_text(std::string_view file) {
  return file.substr(0, file.find('\0'));
}

}  // namespace berth::agent
