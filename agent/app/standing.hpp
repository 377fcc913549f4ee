#pragma once
// Standing berths follow their container: berthd attaches each one whenever its container runs
// (at berthd's start and after a restart, when the berth is created, when its container starts
// and calls `berthctl standing-start`, when a held device comes back to the node); the
// container's exit detaches it and keeps the reservation (core: releases_on_exit).
#include <set>
#include <string>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>

#include "agent/app/config.hpp"
#include "agent/app/control_api.hpp"
#include "agent/app/event_bus.hpp"

namespace berth::agent {

class StandingAttacher {
 public:
  StandingAttacher(boost::asio::io_context& io, ControlApi& api, const Engine& engine,
                   EventBus& bus);
  ~StandingAttacher();
  StandingAttacher(const StandingAttacher&) = delete;
  StandingAttacher& operator=(const StandingAttacher&) = delete;

  // Creates the config's standing berths (idempotent) and attaches every standing berth whose
  // container runs; from then on follows the event stream.
  void start(const std::vector<StandingEntry>& entries);
  // SIGHUP: entries removed from the config are released, changed ones released and created
  // again (then attached), new ones created; the others are not touched.
  void reload(const std::vector<StandingEntry>& before, const std::vector<StandingEntry>& after);

 private:
  void attach(const std::string& owner);
  void attach_degraded_with_devices_back();
  boost::asio::awaitable<bool> call(boost::beast::http::verb method, const std::string& owner,
                                    const std::string& body);

  boost::asio::io_context& io_;
  ControlApi& api_;
  const Engine& engine_;
  EventBus& bus_;
  uint64_t subscription_ = 0;
  std::set<std::string> in_flight_;
};

}  // namespace berth::agent
