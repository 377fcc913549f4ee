#pragma once
// systemd's notify protocol (sd_notify from libsystemd): READY=1 once reconciliation is done and
// every socket listens, STATUS= with berth counts, WATCHDOG=1 at half of WatchdogSec, STOPPING=1
// on shutdown. Without NOTIFY_SOCKET (not run by systemd) every call does nothing.
#include <string>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

namespace berth::agent {

class ServiceNotify {
 public:
  explicit ServiceNotify(boost::asio::io_context& io) : watchdog_(io) {}
  void ready(const std::string& status);
  void status(const std::string& status);
  void stopping();
  // Starts the watchdog pings when systemd asked for them (WATCHDOG_USEC for this pid).
  void start_watchdog();

 private:
  void ping();
  boost::asio::steady_timer watchdog_;
  uint64_t interval_us_ = 0;
};

}  // namespace berth::agent
