#pragma once
// The berth state machine: apply(ledger, event) -> actions, the ledger updated in place.
// The agent performs the actions and feeds their outcomes back as events.
#include <cstdint>
#include <map>
#include <string>
#include <variant>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "core/berth.hpp"
#include "core/inventory.hpp"
#include "core/pool.hpp"

namespace berth {

struct Ledger {
  std::map<std::string, Berth> berths;
  uint64_t next_seq = 1;
};

// What the state machine reads but never changes.
struct Context {
  Inventory inventory;
  std::map<std::string, PoolConfig> pools;
  size_t max_tombstones = 256;  // released berths kept so a repeated release is answered
};

// ---- events: requests from callers, and outcomes of actions -------------------------------
namespace event {
struct Create {
  uint64_t request = 0;
  std::string owner;
  BerthRequest spec;
};
struct Attach {
  uint64_t request = 0;
  std::string owner;
  Target target;
};
struct Detach {
  uint64_t request = 0;
  std::string owner;
};
struct Release {
  uint64_t request = 0;
  std::string owner;
};
struct StepFinished {
  std::string owner;
  bool ok = false;
  std::string undo;
  std::string error;
};
// At start: an operation cut off by a restart is finished. Attaching rolls back; detaching goes on.
struct Resume {};
}  // namespace event
using Event = std::variant<event::Create, event::Attach, event::Detach, event::Release,
                           event::StepFinished, event::Resume>;

// ---- actions: what the agent must do, in order ----------------------------------------------
namespace action {
struct RunStep {
  std::string owner;
  Target target;
  Step step;
  bool rollback = false;
};
// Write the records of these berths; an owner no longer in the ledger has its record removed.
// `durable`: must survive a power loss (fsync); otherwise only the agent's own death (rename).
struct Persist {
  std::vector<std::string> owners;
  bool durable = true;
};
// Answer request `request`: with the berth `owner` (now possibly released), or with `error`.
struct Reply {
  uint64_t request = 0;
  std::string owner;
  std::optional<Error> error;
};
}  // namespace action
using Action = std::variant<action::RunStep, action::Persist, action::Reply>;

// Applies one event to the ledger in place and returns the actions it calls for, in order.
// No I/O, no clock: the same ledger and event always give the same result.
std::vector<Action> apply(Ledger& ledger, const Context& ctx, const Event& ev);

void to_json(nlohmann::json& j, const Ledger& l);
Expected<Ledger> ledger_from_json(const nlohmann::json& j);

}  // namespace berth
