#include "agent/app/event_stream.hpp"

#include <spdlog/spdlog.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace berth::agent {
namespace asio = boost::asio;

std::string EventStream::frame(const BusEvent& e) {
  return "id: " + std::to_string(e.seq) + "\nevent: " + e.body.value("type", "event") +
         "\ndata: " + e.body.dump() + "\n\n";
}

EventStream::EventStream(const asio::any_io_executor& ex, EventBus& bus, uint64_t since,
                         bool follow, size_t max_queued)
    : bus_(bus), follow_(follow), max_queued_(max_queued), wake_(ex) {
  for (const auto& e : bus.since(since)) queue_.push_back(frame(e));
  sub_ = bus.subscribe([this](const BusEvent& e) {
    if (dropped_) return;
    if (queue_.size() >= max_queued_) {
      dropped_ = true;
      spdlog::warn("BERTH_EVENTS_READER_DROPPED a reader fell {} events behind", queue_.size());
    } else {
      queue_.push_back(frame(e));
    }
    wake_.cancel();
  });
}

EventStream::~EventStream() {
  bus_.unsubscribe(sub_);
}

asio::awaitable<std::optional<std::string>> EventStream::next() {
  if (!follow_ && queue_.empty()) co_return std::nullopt;
  while (queue_.empty() && !dropped_) {
    wake_.expires_after(std::chrono::seconds(15));
    auto [ec] = co_await wake_.async_wait(asio::as_tuple(asio::use_awaitable));
    if (!ec && queue_.empty()) co_return std::string(": keep-alive\n\n");
  }
  if (dropped_) co_return std::nullopt;
  std::string out;
  while (!queue_.empty() && out.size() < 65536) {
    out += queue_.front();
    queue_.pop_front();
  }
  co_return out;
}

}  // namespace berth::agent
