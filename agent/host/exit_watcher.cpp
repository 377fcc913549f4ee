#include "agent/host/exit_watcher.hpp"

#include <sys/syscall.h>
#include <unistd.h>

#include <spdlog/spdlog.h>
#include <boost/asio/post.hpp>

#include "agent/host/container.hpp"

namespace berth::agent {

void ExitWatcher::report_later(const std::string& owner, const Target& target) {
  boost::asio::post(io_, [this, owner, target] { on_exit_(owner, target); });
}

void ExitWatcher::watch(const std::string& owner, const Target& target) {
  unwatch(owner);
  const int fd = static_cast<int>(::syscall(SYS_pidfd_open, target.pid, 0));
  if (fd < 0) return report_later(owner, target);
  // The pid may have been reused between the berth's record and this call: the pidfd pins
  // whichever process has the pid now, so its start time must match the record's.
  auto start = process_start_time(target.pid);
  if (!start || (target.start_time != 0 && *start != target.start_time)) {
    ::close(fd);
    return report_later(owner, target);
  }
  const uint64_t gen = next_gen_++;
  Watch w{target, gen, std::make_unique<boost::asio::posix::stream_descriptor>(io_, fd)};
  w.fd->async_wait(boost::asio::posix::stream_descriptor::wait_read,
                   [this, owner, target, gen](const boost::system::error_code& ec) {
                     if (ec) return;  // unwatched
                     auto it = watches_.find(owner);
                     if (it == watches_.end() || it->second.gen != gen) return;
                     watches_.erase(it);
                     spdlog::info("BERTH_TARGET_EXITED {} pid {}", owner, target.pid);
                     on_exit_(owner, target);
                   });
  watches_[owner] = std::move(w);
}

void ExitWatcher::unwatch(const std::string& owner) {
  auto it = watches_.find(owner);
  if (it == watches_.end()) return;
  // Closing the descriptor aborts its wait; the handler then sees operation_aborted.
  watches_.erase(it);
}

}  // namespace berth::agent
