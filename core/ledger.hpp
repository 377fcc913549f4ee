#pragma once
// The berth state machine: apply(ledger, event) -> actions, the ledger updated in place.
// The agent performs the actions and feeds their outcomes back as events.
#include <cstdint>
#include <map>
#include <optional>
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

// What the state machine reads; only the inventory changes, and only through
// event::InventoryChanged (hot-plug), inside apply.
struct Context {
  Inventory inventory;
  std::map<std::string, PoolConfig> pools;
  size_t max_tombstones = 256;  // released berths kept so a repeated release is answered
  std::string node_name = {};   // this node's name: part of the GUIDs derived for its VFs
  // Drivers of InfiniBand VFs that apply GUIDs only when they probe the VF: such a VF is
  // unbound and bound again after its GUIDs are set, and followed by its PCI address.
  std::vector<std::string> vf_rebind_drivers = {"mlx5_core"};
};

// ---- events: requests from callers, and outcomes of actions -------------------------------
namespace event {
struct Create {
  uint64_t request = 0;
  std::string owner;
  BerthRequest spec;
  // The uid whose workload this is (a Slurm job's user): that user may attach the berth into
  // its own processes without being root.
  std::optional<unsigned> uid = {};
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
  std::string note =
      {};  // reported as a warning (e.g. a stand-in link destroyed with its namespace)
  // The VF as the host shows it after a step that re-probed it (a driver rebind): the berth and
  // the inventory follow its new names, and the rest of an attach is planned again from them.
  std::optional<Vf> vf = {};
  // A failed step that left part of its change on the host (its own take-back failed): the
  // rollback undoes it with `undo` first.
  bool left_behind = false;
};
// At start, before any caller is served: the ledger meets the machine.
// - an operation cut off by a restart is finished: attaching rolls back (a step that was in
//   flight is undone as if it had run), detaching goes on;
// - a berth whose container is gone (`gone`) is detached, and released by its owner's policy;
// - `rebooted`: nothing attached survived a reboot; attachment state is dropped and reservations
//   are kept by owner policy;
// - leftovers of failed undo steps are retried.
struct Resume {
  std::vector<std::string> gone;
  bool rebooted = false;
};
// The container a berth is attached to has exited (its pidfd became readable).
struct TargetExited {
  std::string owner;
  Target target;
};
// Discovery ran again (a udev event, a rescan): the new inventory. A held device that is gone
// degrades its berth.
struct InventoryChanged {
  Inventory inventory;
};
// Something the agent observed breaks an attached berth (its VF link went down, was renamed or
// lost): the berth becomes degraded with this reason.
struct Fault {
  std::string owner;
  std::string reason;
};
}  // namespace event
using Event =
    std::variant<event::Create, event::Attach, event::Detach, event::Release, event::StepFinished,
                 event::Resume, event::TargetExited, event::InventoryChanged, event::Fault>;

// ---- actions: what the agent must do, in order ----------------------------------------------
namespace action {
struct RunStep {
  std::string owner;
  Target target;
  Step step;
  bool rollback = false;
  // The steps core asks for next, in this order, as long as each one before succeeds (without a
  // note or a VF that came back from a rebind) and no other event comes in between: the engine
  // may run them back to back, bringing each berth up to date with advance_in_run() and saving
  // its progress before the next, and feed their outcomes to core afterwards. Core then asks
  // for each of them again, as it would have.
  std::vector<Step> then = {};
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
// Tell watchers (event stream, logs): a berth changed state, or something worth a warning.
struct Notify {
  std::string owner;
  std::string state;  // the berth's new state; empty for a warning
  std::string message;
  bool warning = false;
};
// Start or stop watching the berth's container for exit.
struct Watch {
  std::string owner;
  Target target;
  bool watch = true;
};
}  // namespace action
using Action =
    std::variant<action::RunStep, action::Persist, action::Reply, action::Notify, action::Watch>;

// The berth as core leaves it when the step it asked for (forward, or an inverse with
// `rollback`) succeeded with `undo` and the next step of the same run is asked for: what apply()
// does with that StepFinished, for one step of RunStep::then.
void advance_in_run(Berth& b, bool rollback, const std::string& undo);

// Applies one event to the ledger in place and returns the actions it calls for, in order.
// No I/O, no clock: the same ledger, context and event always give the same result.
// Only event::InventoryChanged, and a StepFinished that reports a re-probed VF, change the
// context.
std::vector<Action> apply(Ledger& ledger, Context& ctx, const Event& ev);

void to_json(nlohmann::json& j, const Ledger& l);
Expected<Ledger> ledger_from_json(const nlohmann::json& j);

}  // namespace berth
