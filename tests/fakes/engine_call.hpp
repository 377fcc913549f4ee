#pragma once
// Submits one event to an Engine and runs the loop until it is answered. A watchdog fails the
// test after 20 s instead of letting a lost reply hang CI.
#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <optional>
#include <utility>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include "agent/app/engine.hpp"

namespace berth::testing {

using Answer = std::pair<std::optional<Error>, nlohmann::json>;

inline Answer call(boost::asio::io_context& io, agent::Engine& engine, Event ev,
                   const std::function<void()>& on_reply = {}) {
  std::optional<Answer> result;
  engine.submit(std::move(ev), [&](std::optional<Error> e, nlohmann::json v) {
    result.emplace(std::move(e), std::move(v));
    if (on_reply) on_reply();
  });
  boost::asio::steady_timer watchdog(io, std::chrono::seconds(20));
  bool expired = false;
  watchdog.async_wait([&](auto ec) { expired = !ec; });
  while (!result && !expired) io.run_one();
  watchdog.cancel();
  while (io.poll_one() > 0) {
  }
  io.restart();
  if (expired) ADD_FAILURE() << "watchdog: no reply within 20 s";
  return result.value_or(Answer{make_error(ErrorCode::internal, "no reply"), nlohmann::json()});
}

}  // namespace berth::testing
