#pragma once
// Device events from libudev's monitor, whose fd is an async source on the reactor: woken, it
// drains every queued device. Source "udev" (after udevd's rules, filtered on TAG berth when
// tagged) when udevd runs, else "kernel" (raw uevents). What leaves this file are plain values.
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>

#include "core/expected.hpp"

struct udev;
struct udev_monitor;

namespace berth::net {

struct Uevent {
  std::string action;  // add, remove, change, move, bind, unbind
  std::string subsystem;
  std::string devpath;  // /devices/...
  std::string sysname;  // eth0, 0000:17:00.0, ...
};

class UdevMonitor {
 public:
  using OnEvent = std::function<void(const Uevent&)>;
  // Called after the socket overran (events lost): rescan everything.
  using OnGap = std::function<void()>;

  UdevMonitor(boost::asio::io_context& io, OnEvent on_event, OnGap on_gap);
  ~UdevMonitor();
  // source: "udev", "kernel" or "auto" (udev when /run/udev/control exists).
  Status start(const std::string& source, const std::vector<std::string>& subsystems,
               unsigned rcvbuf, bool filter_tag);
  const std::string& source() const { return source_; }

 private:
  void read();
  void drain();

  boost::asio::io_context& io_;
  OnEvent on_event_;
  OnGap on_gap_;
  udev* udev_ = nullptr;
  udev_monitor* mon_ = nullptr;
  std::unique_ptr<boost::asio::posix::stream_descriptor> fd_;
  std::string source_;
};

}  // namespace berth::net
