#include "agent/app/standing.hpp"

#include <map>

#include <spdlog/spdlog.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <nlohmann/json.hpp>

namespace berth::agent {
namespace asio = boost::asio;

StandingAttacher::StandingAttacher(asio::io_context& io, ControlApi& api, const Engine& engine,
                                   EventBus& bus)
    : io_(io), api_(api), engine_(engine), bus_(bus) {}

StandingAttacher::~StandingAttacher() {
  if (subscription_) bus_.unsubscribe(subscription_);
}

void StandingAttacher::attach(const std::string& owner) {
  if (!in_flight_.insert(owner).second) return;  // one attempt at a time per berth
  asio::co_spawn(
      io_,
      [this, owner]() -> asio::awaitable<void> {
        try {
          co_await api_.attach_standing(owner);
        } catch (const std::exception& e) {
          spdlog::error("BERTH_STANDING {}: {}", owner, e.what());
        }
        in_flight_.erase(owner);
      },
      asio::detached);
}

void StandingAttacher::attach_degraded_with_devices_back() {
  const auto& inv = engine_.context().inventory;
  for (const auto& [owner, b] : engine_.ledger().berths) {
    if (!b.request.standing || b.state != BerthState::degraded) continue;
    bool all_back = true;
    for (const auto& g : b.placement.gpus) all_back = all_back && inv.gpu_by_id(g);
    for (const auto& v : b.placement.vfs) all_back = all_back && inv.vf_by_pci(v);
    if (all_back) attach(owner);
  }
}

void StandingAttacher::start(const std::vector<StandingEntry>& entries) {
  subscription_ = bus_.subscribe([this](const BusEvent& ev) {
    const std::string type = ev.body.value("type", "");
    if (type == "berth" && ev.body.value("state", "") == "reserved" &&
        ev.body.value("message", "") == "created") {
      const std::string owner = ev.body.value("owner", "");
      auto it = engine_.ledger().berths.find(owner);
      if (it != engine_.ledger().berths.end() && it->second.request.standing) attach(owner);
    } else if (type == "inventory" || type == "warning") {
      // A device came back (a GPU reset, a re-plug): degraded standing berths whose devices are
      // all on the node again attach again. Checked after the engine has taken the new
      // inventory (the bus may hear of it first).
      asio::post(io_, [this] { attach_degraded_with_devices_back(); });
    }
  });
  asio::co_spawn(
      io_,
      [this, entries]() -> asio::awaitable<void> {
        for (const auto& e : entries) {
          nlohmann::json body = e.request;
          co_await call(boost::beast::http::verb::put, e.owner, body.dump());
        }
        for (const auto& [owner, b] : engine_.ledger().berths)
          if (b.request.standing &&
              (b.state == BerthState::reserved || b.state == BerthState::degraded))
            attach(owner);
      },
      asio::detached);
}

asio::awaitable<bool> StandingAttacher::call(boost::beast::http::verb method,
                                             const std::string& owner, const std::string& body) {
  net::Request req{method, "/v1/berths/" + owner, 11};
  req.body() = body;
  net::Peer root;
  root.uid = 0;
  root.gid = 0;
  auto reply = co_await api_.handle(std::move(req), root);
  if (reply.response.result_int() >= 400) {
    spdlog::error("BERTH_STANDING {} {} from the config failed: {}", std::string(to_string(method)),
                  owner, reply.response.body());
    co_return false;
  }
  co_return true;
}

void StandingAttacher::reload(const std::vector<StandingEntry>& before,
                              const std::vector<StandingEntry>& after) {
  std::map<std::string, BerthRequest> old_entries, new_entries;
  for (const auto& e : before) old_entries[e.owner] = e.request;
  for (const auto& e : after) new_entries[e.owner] = e.request;
  asio::co_spawn(
      io_,
      [this, old_entries, new_entries]() -> asio::awaitable<void> {
        for (const auto& [owner, request] : old_entries) {
          auto next = new_entries.find(owner);
          if (next != new_entries.end() && next->second == request) continue;  // unchanged
          spdlog::info("BERTH_STANDING {} {} by the reloaded config", owner,
                       next == new_entries.end() ? "removed" : "changed");
          co_await call(boost::beast::http::verb::delete_, owner, "");
        }
        for (const auto& [owner, request] : new_entries) {
          auto prev = old_entries.find(owner);
          if (prev != old_entries.end() && prev->second == request) continue;
          nlohmann::json body = request;
          // The create's "created" event attaches it where its container runs.
          co_await call(boost::beast::http::verb::put, owner, body.dump());
        }
      },
      asio::detached);
}

}  // namespace berth::agent
