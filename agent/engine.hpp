#pragma once
// The loop, in one place: an event goes into core::apply, the actions that come out are
// performed here, and what they produce comes back in as the next event.
//
//   caller --Event--> Engine::submit --> core::apply(ledger, event) --> actions
//     RunStep  -> posted to the reactor -> Actuator::run -> StepFinished event -> apply ...
//     Persist  -> StateStore::save: attachment state at once; reservations (fsync) once per
//                 reactor turn for every event of that turn (group commit)
//     Reply    -> the waiting caller's callback, after its event's state is saved
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>

#include <boost/asio/io_context.hpp>
#include <nlohmann/json.hpp>

#include "agent/actuator.hpp"
#include "agent/state_store.hpp"
#include "core/ledger.hpp"

namespace berth::agent {

class Engine {
 public:
  // The reply carries the berth's API view, or an error.
  using ReplyFn = std::function<void(std::optional<Error>, nlohmann::json)>;

  Engine(boost::asio::io_context& io, Context ctx, Ledger ledger, Actuator& actuator,
         StateStore* store);

  // Create, Attach, Detach or Release: the request id is assigned here, the reply comes once.
  void submit(Event ev, ReplyFn reply);
  // Finishes operations that a restart cut off (see event::Resume).
  void resume();

  const Ledger& ledger() const { return ledger_; }
  const Context& context() const { return ctx_; }
  // True while any berth has an operation in flight, or a durable save is pending.
  bool busy() const;

 private:
  struct PendingReply {
    ReplyFn fn;
    std::optional<Error> error;
    nlohmann::json view;
  };

  void dispatch(const Event& ev);
  void perform(std::vector<Action> actions);
  // Writes the reservations changed in this reactor turn with one round of fsyncs, then answers
  // the callers that waited on them.
  void commit();
  // Saves `owners`; on failure logs it and returns the error their callers are to get.
  std::optional<Error> save(const std::vector<std::string>& owners, bool durable);

  boost::asio::io_context& io_;
  Context ctx_;
  Ledger ledger_;
  Actuator& actuator_;
  StateStore* store_;
  uint64_t next_request_ = 1;
  std::map<uint64_t, ReplyFn> waiting_;
  std::set<std::string> to_commit_;
  bool commit_posted_ = false;
  std::vector<PendingReply> after_commit_;
};

}  // namespace berth::agent
