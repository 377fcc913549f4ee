#pragma once
// Watches attached containers for exit: each container's init process pinned by a pidfd, which
// becomes readable when the process exits, as an async source on the reactor. No polling.
#include <functional>
#include <map>
#include <memory>
#include <string>

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>

#include "core/berth.hpp"

namespace berth::agent {

class ExitWatcher {
 public:
  using OnExit = std::function<void(const std::string& owner, const Target& target)>;
  ExitWatcher(boost::asio::io_context& io, OnExit on_exit)
      : io_(io), on_exit_(std::move(on_exit)) {}

  // Watches `target` for `owner`, replacing an earlier watch. A process that is already gone, or
  // whose pid now belongs to another process (start time differs), is reported at once.
  void watch(const std::string& owner, const Target& target);
  void unwatch(const std::string& owner);
  size_t size() const { return watches_.size(); }

 private:
  struct Watch {
    Target target;
    uint64_t gen = 0;  // tells a handler of a replaced watch apart
    std::unique_ptr<boost::asio::posix::stream_descriptor> fd;
  };
  void report_later(const std::string& owner, const Target& target);

  boost::asio::io_context& io_;
  OnExit on_exit_;
  std::map<std::string, Watch> watches_;
  uint64_t next_gen_ = 1;
};

}  // namespace berth::agent
