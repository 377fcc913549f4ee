#include "net/udev_monitor.hpp"

#include <libudev.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

namespace berth::net {

UdevMonitor::UdevMonitor(boost::asio::io_context& io, OnEvent on_event, OnGap on_gap)
    : io_(io), on_event_(std::move(on_event)), on_gap_(std::move(on_gap)) {}

UdevMonitor::~UdevMonitor() {
  if (fd_) {
    fd_->release();  // libudev owns the fd
    fd_.reset();
  }
  if (mon_) udev_monitor_unref(mon_);
  if (udev_) udev_unref(udev_);
}

Status UdevMonitor::start(const std::string& source, const std::vector<std::string>& subsystems,
                          unsigned rcvbuf, bool filter_tag) {
  source_ = source;
  if (source_ == "auto") source_ = std::filesystem::exists("/run/udev/control") ? "udev" : "kernel";
  udev_ = udev_new();
  if (!udev_) return make_error(ErrorCode::internal, "udev_new failed");
  mon_ = udev_monitor_new_from_netlink(udev_, source_.c_str());
  if (!mon_)
    return make_error(ErrorCode::internal, "cannot open the " + source_ + " uevent monitor");
  for (const auto& s : subsystems)
    udev_monitor_filter_add_match_subsystem_devtype(mon_, s.c_str(), nullptr);
  // Kernel uevents carry no tags (udevd adds them); the tag filter applies to the udev source.
  if (filter_tag && source_ == "udev") udev_monitor_filter_add_match_tag(mon_, "berth");
  udev_monitor_set_receive_buffer_size(mon_, static_cast<int>(rcvbuf));
  if (int err = udev_monitor_enable_receiving(mon_); err < 0)
    return make_error(ErrorCode::internal,
                      "cannot receive " + source_ + " uevents: " + std::strerror(-err));
  const int fd = udev_monitor_get_fd(mon_);
  fd_ = std::make_unique<boost::asio::posix::stream_descriptor>(io_, fd);
  read();
  return ok_status();
}

void UdevMonitor::read() {
  fd_->async_wait(boost::asio::posix::stream_descriptor::wait_read,
                  [this](const boost::system::error_code& ec) {
                    if (ec) return;
                    drain();
                    read();
                  });
}

void UdevMonitor::drain() {
  for (;;) {
    errno = 0;
    udev_device* d = udev_monitor_receive_device(mon_);
    if (!d) {
      // libudev reports nothing for a lost batch; the socket error tells.
      int err = 0;
      socklen_t len = sizeof err;
      if (::getsockopt(udev_monitor_get_fd(mon_), SOL_SOCKET, SO_ERROR, &err, &len) == 0 &&
          err == ENOBUFS)
        on_gap_();
      if (errno == ENOBUFS) on_gap_();
      // A message libudev rejected (e.g. filtered) also returns null: keep reading while
      // there is more.
      char probe;
      if (::recv(udev_monitor_get_fd(mon_), &probe, 1, MSG_PEEK | MSG_DONTWAIT) > 0) continue;
      return;
    }
    auto str = [](const char* s) { return std::string(s ? s : ""); };
    Uevent ev{str(udev_device_get_action(d)), str(udev_device_get_subsystem(d)),
              str(udev_device_get_devpath(d)), str(udev_device_get_sysname(d))};
    udev_device_unref(d);
    on_event_(ev);
  }
}

}  // namespace berth::net
