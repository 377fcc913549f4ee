#pragma once
// The seam between the state machine and the host: one step in, one outcome out.
// HostActuator changes the real host; tests/ has fakes that record and fail on demand.
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/berth.hpp"
#include "core/inventory.hpp"
#include "core/step.hpp"

namespace berth::agent {

struct StepOutcome {
  bool ok = false;
  std::string undo;           // what the step replaced, for its inverse
  std::string error;          // why it failed
  std::string note = {};      // something worth reporting about a step that succeeded
  std::optional<Vf> vf = {};  // the VF as it came back from a driver rebind
  // A failed step whose own take-back of a partial change failed too: what is left is undone
  // with `undo` by the rollback, like a step that succeeded.
  bool left_behind = false;
};

class Actuator {
 public:
  virtual ~Actuator() = default;
  // `rollback` is true for inverse steps: a target that has exited then has nothing left to undo
  // inside it.
  virtual StepOutcome run(const Step& step, const Target& target, bool rollback) = 0;
  // No operation is in flight: let go of whatever was held for the last one (a container's
  // pidfd and namespace would otherwise outlive the container).
  virtual void idle() {}
  // Who in `target` still has each of `devices` (char major:minor) open: taking a device rule
  // away does not close what is open. One sentence per device held, "; "-joined, or "" when
  // none is. Asked once per operation, after its reply.
  virtual std::string still_open(const Target& target,
                                 const std::vector<std::pair<unsigned, unsigned>>& devices) {
    (void)target;
    (void)devices;
    return {};
  }
};

}  // namespace berth::agent
