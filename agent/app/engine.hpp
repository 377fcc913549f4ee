#pragma once
// The loop, in one place: an event goes into core::apply, the actions that come out are
// performed here, and what they produce comes back in as the next event.
//
//   caller / watcher --Event--> Engine::submit|post --> core::apply(ledger, ctx, event) --> actions
//     Persist  -> records serialized now, written on the worker: attachment state at once (a
//                 progress line appended to the berth's runtime record, or the record by rename
//                 when more than progress changed), reservations (fsync) once per reactor turn
//                 for every event of that turn (group commit)
//     RunStep  -> worker: Actuator::run, after the records saved before it -> StepFinished -> ...
//                 with RunStep::then, the steps core asks for next run there back to back, each
//                 after its progress line, until one fails or an event comes in (it waits for
//                 the run); their outcomes are then fed to core in order (replay)
//     Reply    -> the waiting caller's callback, once its event's state is on disk; the next
//                 held attach is admitted (one at a time, oldest first)
//     Notify   -> hooks.notify (event stream, logs)
//     Watch    -> hooks.watch (container exit watching)
// Nothing here blocks the reactor: every write and every host step runs on the one worker
// thread, in the order posted, and comes back as a handler on the reactor.
#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <set>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <nlohmann/json.hpp>

#include "agent/app/actuator.hpp"
#include "agent/app/worker.hpp"
#include "agent/host/state_store.hpp"
#include "core/ledger.hpp"

namespace berth::agent {

struct EngineHooks {
  std::function<void(const action::Notify&)> notify;
  std::function<void(const action::Watch&)> watch;
  std::function<void(const Step&)> step_failed;  // metrics
  // After an event that changed what is reserved (a create, a release, a prune: a durable
  // write) or the inventory: the CDI spec follows. Not after each step of an attach.
  std::function<void()> reservations_changed;
};

class Engine {
 public:
  // The reply carries the berth's API view, or an error.
  using ReplyFn = std::function<void(std::optional<Error>, nlohmann::json)>;

  // `worker`: where steps and writes run; null runs them on the reactor (tests).
  Engine(boost::asio::io_context& io, Context ctx, Ledger ledger, Actuator& actuator,
         StateStore* store, Worker* worker = nullptr);
  // Waits for the engine's jobs still on the worker: they use the actuator, the store and the
  // engine itself, which go after it (a berthd stopped past its deadline with a step out; a
  // caller that leaves once its last reply came, with the actuator's idle still to run).
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  void set_hooks(EngineHooks hooks) { hooks_ = std::move(hooks); }
  // Off: every step goes to the worker alone and back to core (RunStep::then unused). On by
  // default; the benchmark compares both.
  void set_step_runs(bool on) { step_runs_ = on; }
  // Create, Attach, Detach or Release: the request id is assigned here, the reply comes once.
  void submit(Event ev, ReplyFn reply);
  // An internal event (a container exit, an inventory change, a fault): no one waits for it.
  void post(const Event& ev);
  // Reconciliation at start (see event::Resume).
  void resume(std::vector<std::string> gone = {}, bool rebooted = false);

  const Ledger& ledger() const { return ledger_; }
  // Runs `job` off the reactor (on the worker, in order with the engine's own jobs), then
  // `done` on the reactor. `for_operation`: the job is part of an operation about to reach the
  // engine (an attach's inspection of its process), so both threads stay awake for it as for the
  // engine's own jobs (stay_awake.hpp); other jobs let them sleep.
  void run_off_reactor(std::function<void()> job, std::function<void()> done,
                       bool for_operation = false) {
    on_worker(std::move(job), std::move(done), for_operation);
  }
  // The berth's API view as JSON text, rendered once and kept until the next event changes the
  // ledger (list calls are then a concatenation). The owner must be in the ledger.
  const std::string& view_text(const std::string& owner);
  const Context& context() const { return ctx_; }
  // True while any berth has an operation in flight, or a write is pending or failed.
  bool busy() const;
  // True while a job of the engine's own (a step, a record, a reply) or one for an operation
  // (run_off_reactor) is on the worker: the reactor then stays awake for its outcome
  // (stay_awake.hpp).
  bool awaiting_worker() const { return own_jobs_in_flight_ > 0; }
  // Owners whose latest state could not be written yet; retried every second.
  const std::set<std::string>& unsaved() const { return dirty_; }

 private:
  struct PendingReply {
    ReplyFn fn;
    std::optional<Error> error;
    nlohmann::json view;
    std::string owner;
  };

  struct WorkerJob {
    std::function<void()> run;   // on the worker
    std::function<void()> done;  // then on the reactor
  };

  // A RunStep and the steps core asks for after it, run back to back on the worker.
  struct StepRun {
    action::RunStep first;
    std::vector<Step> steps;       // first.step, then first.then
    Berth berth;                   // as core has it, brought up to date after each step
    std::optional<Berth> written;  // as its runtime record has it; nullopt: nothing to save
    std::vector<StepOutcome> outcomes;
    Status saved = ok_status();
    std::atomic<bool> stop{false};  // an event waits: no further step
  };

  // Dispatches held events, oldest first, until an attach is in flight again.
  void admit_held();
  // Core's next event, or one kept for after the run on the worker (see StepRun).
  void dispatch_or_defer(const Event& ev);
  void dispatch(const Event& ev);
  WorkerJob step_job(const action::RunStep& run);
  WorkerJob run_job(const action::RunStep& run);
  // A step's outcome: logged, counted, and fed to core.
  void finished(const action::RunStep& run, StepOutcome out);
  // The outcomes of a run, fed to core in order as if each step had been asked for alone.
  void replay(StepRun& run);
  // The attachment state of `owners` to write: a progress line where only that changed since
  // their last record, else the record.
  std::vector<RecordWrite> attachment_writes(const std::vector<std::string>& owners);
  // A write about `owners` failed or was made durably: their next runtime write is a record.
  void forget_written(const std::vector<std::string>& owners);
  // Attachment state of `owners` could not be written: they are dirty (retried every second)
  // and their next write is a whole record.
  void attachment_save_failed(const std::vector<std::string>& owners, const Error& e);
  void perform(std::vector<Action> actions);
  void run_batch(std::vector<WorkerJob> batch);
  // Runs `job` on the worker (or inline), then `done` on the reactor.
  // `own`: a job of the engine's own or one for an operation (see awaiting_worker), not one of
  // run_off_reactor's other jobs.
  void on_worker(std::function<void()> job, std::function<void()> done, bool own = true);
  // Writes the reservations changed in this reactor turn with one round of fsyncs, then answers
  // the callers that waited on them.
  void commit();
  void deliver(std::vector<PendingReply> replies);
  void schedule_retry();
  void check_idle();
  // Asks the actuator who still holds open the devices that operations now answered took away,
  // off the critical path: after this turn's writes and replies, without keeping the threads
  // awake. What it finds is a warning of the berth's (log and event stream).
  void report_still_open();

  boost::asio::io_context& io_;
  Context ctx_;
  Ledger ledger_;
  Actuator& actuator_;
  StateStore* store_;
  Worker* worker_;
  EngineHooks hooks_;
  uint64_t next_request_ = 1;
  std::map<uint64_t, ReplyFn> waiting_;
  std::set<std::string> to_commit_;
  bool commit_posted_ = false;
  std::vector<PendingReply> after_commit_;
  std::map<std::string, std::string> views_;
  // Each berth as its runtime record (with its progress lines) has it, once written there.
  std::map<std::string, Berth> written_;
  // The devices an operation in flight took away from its container, by owner.
  struct Revoked {
    Target target;
    std::vector<std::pair<unsigned, unsigned>> devices;
  };
  std::map<std::string, Revoked> revoked_;
  // The run on the worker, the events that came in meanwhile, and (while its outcomes are
  // replayed) the step it ran after the one being fed to core.
  std::shared_ptr<StepRun> run_out_;
  std::deque<Event> deferred_;
  // Attaches run one at a time, in the order they were submitted: a burst (a node's jobs
  // starting together) is answered one berth after another, the oldest first, instead of all
  // near the end with their steps taken in turns. `stepping_`: the attach in flight; `held_`:
  // those submitted after it, and anything for the owner of a held one (kept in order).
  std::optional<uint64_t> stepping_;
  std::deque<Event> held_;
  std::optional<action::RunStep> ran_next_;
  bool step_runs_ = true;
  size_t jobs_in_flight_ = 0;
  size_t own_jobs_in_flight_ = 0;
  // Owners whose last write failed: written again (durably) before any reply about them
  // succeeds, and on a retry timer.
  std::set<std::string> dirty_;
  std::string last_save_error_;
  boost::asio::steady_timer retry_;
  bool retry_armed_ = false;
};

}  // namespace berth::agent
