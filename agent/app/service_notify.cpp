#include "agent/app/service_notify.hpp"

#include <systemd/sd-daemon.h>

namespace berth::agent {

void ServiceNotify::ready(const std::string& status) {
  sd_notify(0, ("READY=1\nSTATUS=" + status).c_str());
}

void ServiceNotify::status(const std::string& status) {
  sd_notify(0, ("STATUS=" + status).c_str());
}

void ServiceNotify::stopping() {
  watchdog_.cancel();
  sd_notify(0, "STOPPING=1\nSTATUS=stopping");
}

void ServiceNotify::start_watchdog() {
  uint64_t usec = 0;
  if (sd_watchdog_enabled(0, &usec) <= 0 || usec == 0) return;
  interval_us_ = usec / 2;
  ping();
}

void ServiceNotify::ping() {
  sd_notify(0, "WATCHDOG=1");
  watchdog_.expires_after(std::chrono::microseconds(interval_us_));
  watchdog_.async_wait([this](const boost::system::error_code& ec) {
    if (!ec) ping();
  });
}

}  // namespace berth::agent
