#pragma once
// GET /v1/events: the event bus as Server-Sent Events. Each event is one `id:`/`data:` frame of
// JSON; a comment line every 15 s keeps idle connections honest. A reader more than
// `max_queued` events behind is dropped (it reconnects with Last-Event-ID / ?since=), so a slow
// reader never holds the reactor or berthd's memory.
#include <deque>
#include <memory>

#include <boost/asio/steady_timer.hpp>

#include "agent/app/event_bus.hpp"
#include "net/http_server.hpp"

namespace berth::agent {

class EventStream : public net::EventSource {
 public:
  // `follow`: keep the stream open for new events; otherwise end it after the kept ones.
  EventStream(const boost::asio::any_io_executor& ex, EventBus& bus, uint64_t since,
              bool follow = true, size_t max_queued = 1024);
  ~EventStream() override;
  boost::asio::awaitable<std::optional<std::string>> next() override;

  static std::string frame(const BusEvent& e);

 private:
  EventBus& bus_;
  uint64_t sub_ = 0;
  bool follow_;
  size_t max_queued_;
  std::deque<std::string> queue_;
  bool dropped_ = false;
  boost::asio::steady_timer wake_;
};

}  // namespace berth::agent
