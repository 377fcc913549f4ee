#pragma once
// Drives core::apply the way the engine does, with step outcomes decided by a test function.
#include <functional>
#include <optional>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/ledger.hpp"
#include "core/pool.hpp"
#include "tests/fakes/inventories.hpp"

namespace berth::testing {

// The two-socket node (4 CPUs a node) with a pool "grid" of two addresses.
inline Context grid_context() {
  Context ctx;
  ctx.inventory = two_socket(4);
  auto pool = parse_pool_config(nlohmann::json::parse(
      R"({"name":"grid","subnet":"10.77.0.0/24","ranges":["10.77.0.10-10.77.0.11"],"gateway":"10.77.0.1"})"));
  ctx.pools["grid"] = *pool;
  return ctx;
}

struct StepLog {
  Step step;
  bool rollback;
};

class LedgerDriver {
 public:
  using Outcome = std::function<event::StepFinished(const action::RunStep&)>;

  explicit LedgerDriver(Context ctx) : ctx_(std::move(ctx)) {
    outcome_ = [](const action::RunStep& r) { return event::StepFinished{r.owner, true, "", ""}; };
  }

  void set_outcome(Outcome o) { outcome_ = std::move(o); }

  // Applies `ev`, then keeps feeding step outcomes back until no step is pending.
  // Returns the replies, in order.
  std::vector<action::Reply> run(Event ev) {
    std::vector<action::Reply> replies;
    std::vector<Event> queue{std::move(ev)};
    while (!queue.empty()) {
      Event next = std::move(queue.front());
      queue.erase(queue.begin());
      for (auto& a : apply(ledger, ctx_, next)) {
        if (auto* r = std::get_if<action::RunStep>(&a)) {
          steps.push_back({r->step, r->rollback});
          queue.push_back(outcome_(*r));
        } else if (auto* rep = std::get_if<action::Reply>(&a)) {
          replies.push_back(*rep);
        } else if (auto* p = std::get_if<action::Persist>(&a)) {
          ++persists;
          durable.push_back(p->durable);
          if (on_persist) on_persist(*p, ledger);
        }
      }
    }
    return replies;
  }

  std::optional<Error> one(Event ev) {
    auto replies = run(std::move(ev));
    return replies.empty() ? std::optional<Error>(make_error(ErrorCode::internal, "no reply"))
                           : replies.back().error;
  }

  Context& context() { return ctx_; }

  Ledger ledger;
  // Called at each Persist with the ledger as it is then.
  std::function<void(const action::Persist&, const Ledger&)> on_persist;
  std::vector<StepLog> steps;
  int persists = 0;
  std::vector<bool> durable;  // of each Persist, in order

 private:
  Context ctx_;
  Outcome outcome_;
};

}  // namespace berth::testing
