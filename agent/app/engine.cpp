#include "agent/app/engine.hpp"

#include <spdlog/spdlog.h>
#include <algorithm>

#include <boost/asio/post.hpp>

#include "core/overloaded.hpp"
#include "core/progress.hpp"
#include "core/view.hpp"

namespace berth::agent {

Engine::Engine(boost::asio::io_context& io, Context ctx, Ledger ledger, Actuator& actuator,
               StateStore* store, Worker* worker)
    : io_(io),
      ctx_(std::move(ctx)),
      ledger_(std::move(ledger)),
      actuator_(actuator),
      store_(store),
      worker_(worker),
      retry_(io) {}

namespace {

// The berth an event is about; null for one about none (an inventory change, a resume).
const std::string* owner_of(const Event& ev) {
  return std::visit(
      [](const auto& e) -> const std::string* {
        if constexpr (requires { e.owner; })
          return &e.owner;
        else
          return nullptr;
      },
      ev);
}

// Attaches are admitted one at a time (see Engine::held_). Detaches and releases are not held:
// taken in turns, their durable writes go together (one fsync round for a burst of releases,
// where one each made a burst of 32 slower by a tenth).
bool one_at_a_time(const Event& ev) {
  return std::holds_alternative<event::Attach>(ev);
}

}  // namespace

void Engine::submit(Event ev, ReplyFn reply) {
  const uint64_t id = next_request_++;
  std::visit(
      [&](auto& e) {
        if constexpr (requires { e.request; }) e.request = id;
      },
      ev);
  waiting_[id] = std::move(reply);
  const std::string* owner = owner_of(ev);
  const bool behind_held = owner && std::any_of(held_.begin(), held_.end(), [&](const Event& h) {
                             const std::string* o = owner_of(h);
                             return o && *o == *owner;
                           });
  if (behind_held || (one_at_a_time(ev) && (stepping_ || !held_.empty()))) {
    held_.push_back(std::move(ev));
    return;
  }
  if (one_at_a_time(ev)) stepping_ = id;
  dispatch_or_defer(ev);
}

void Engine::admit_held() {
  while (!stepping_ && !held_.empty()) {
    Event ev = std::move(held_.front());
    held_.pop_front();
    if (const auto* attach = std::get_if<event::Attach>(&ev)) stepping_ = attach->request;
    dispatch_or_defer(ev);
  }
}

void Engine::post(const Event& ev) {
  dispatch_or_defer(ev);
}

void Engine::resume(std::vector<std::string> gone, bool rebooted) {
  dispatch_or_defer(event::Resume{std::move(gone), rebooted});
}

Engine::~Engine() {
  // What those jobs post back to the reactor is left there: the reactor runs no more of this
  // engine's handlers once it is gone (berthd has stopped it; tests and benchmarks stop running
  // it).
  if (worker_) worker_->drain();
}

bool Engine::busy() const {
  if (!to_commit_.empty() || jobs_in_flight_ > 0 || !dirty_.empty() || !deferred_.empty() ||
      !held_.empty() || stepping_)
    return true;
  for (const auto& [owner, b] : ledger_.berths)
    if (b.op != Operation::none) return true;
  return false;
}

void Engine::check_idle() {
  if (busy()) return;
  // Let go of the last container's pidfd, namespace and root, on the thread that holds them.
  on_worker([this] { actuator_.idle(); }, [] {});
}

const std::string& Engine::view_text(const std::string& owner) {
  auto it = views_.find(owner);
  if (it != views_.end()) return it->second;
  return views_[owner] = berth_view(ledger_.berths.at(owner), ctx_.inventory).dump();
}

void Engine::dispatch_or_defer(const Event& ev) {
  // While a run is out, its berth as the worker has it must stay what core has: nothing else
  // reaches core until the run has stopped (after its step now running) and is replayed.
  if (run_out_) {
    deferred_.push_back(ev);
    run_out_->stop = true;
    return;
  }
  dispatch(ev);
}

void Engine::dispatch(const Event& ev) {
  views_.clear();  // any event may change any berth's view (an inventory change all of them)
  std::vector<Action> actions;
  try {
    actions = apply(ledger_, ctx_, ev);
  } catch (const std::exception& e) {
    // A broken invariant in core: answer the caller instead of letting it escape the reactor.
    spdlog::critical("BERTH_CORE_INVARIANT {}", e.what());
    std::visit(
        [&](const auto& x) {
          if constexpr (requires { x.request; })
            actions.push_back(
                action::Reply{x.request, x.owner, make_error(ErrorCode::internal, e.what())});
        },
        ev);
  }
  const bool reservations = std::holds_alternative<event::InventoryChanged>(ev) ||
                            std::holds_alternative<event::Resume>(ev) ||
                            std::any_of(actions.begin(), actions.end(), [](const Action& a) {
                              const auto* p = std::get_if<action::Persist>(&a);
                              return p && p->durable;
                            });
  perform(std::move(actions));
  if (reservations && hooks_.reservations_changed) hooks_.reservations_changed();
}

void Engine::on_worker(std::function<void()> job, std::function<void()> done, bool own) {
  ++jobs_in_flight_;
  if (own) ++own_jobs_in_flight_;
  auto back = [this, done = std::move(done), own] {
    --jobs_in_flight_;
    if (own) --own_jobs_in_flight_;
    done();
  };
  if (!worker_) {
    boost::asio::post(io_, [job = std::move(job), back = std::move(back)] {
      job();
      back();
    });
    return;
  }
  worker_->post(
      [this, job = std::move(job), back = std::move(back)]() mutable {
        job();
        boost::asio::post(io_, std::move(back));
      },
      own);
}

void Engine::perform(std::vector<Action> actions) {
  // Replaying a run: the step core asks for now has run already, after its progress line.
  const std::string* ran_ahead = nullptr;
  if (ran_next_) {
    auto it = std::find_if(actions.begin(), actions.end(), [&](const Action& a) {
      const auto* r = std::get_if<action::RunStep>(&a);
      return r && r->owner == ran_next_->owner && r->rollback == ran_next_->rollback &&
             r->step == ran_next_->step;
    });
    if (it != actions.end()) {
      actions.erase(it);
      ran_ahead = &ran_next_->owner;
    } else {
      spdlog::critical("BERTH_RUN_DIVERGED {}: core did not ask for {} next", ran_next_->owner,
                       describe(ran_next_->step));
    }
  }
  std::vector<std::string> attachment;
  bool durable = false;
  for (auto& a : actions) {
    if (auto* p = std::get_if<action::Persist>(&a)) {
      if (p->durable) {
        durable = true;
        to_commit_.insert(p->owners.begin(), p->owners.end());
        continue;
      }
      for (const auto& o : p->owners) {
        auto b = ledger_.berths.find(o);
        if (ran_ahead && o == *ran_ahead && b != ledger_.berths.end())
          written_.insert_or_assign(o, b->second);  // the run wrote this line
        else
          attachment.push_back(o);
      }
    }
  }
  std::sort(attachment.begin(), attachment.end());
  attachment.erase(std::unique(attachment.begin(), attachment.end()), attachment.end());

  // Persist first: the records are taken now and written on the worker before any step posted
  // after them runs, so an intent is on disk before its step touches the host. What this turn
  // sends to the worker goes as one batch.
  std::vector<WorkerJob> batch;
  std::vector<PendingReply> replies;
  bool admit_after_turn = false;
  for (auto& a : actions) {
    if (auto* reply = std::get_if<action::Reply>(&a)) {
      if (stepping_ && reply->request == *stepping_) {
        // Its steps are done: the next one's start after the writes this turn posts (the commit
        // is posted first), so this answer does not wait behind them.
        stepping_.reset();
        admit_after_turn = !held_.empty();
      }
      auto it = waiting_.find(reply->request);
      if (it == waiting_.end()) continue;
      nlohmann::json view;
      if (auto b = ledger_.berths.find(reply->owner); b != ledger_.berths.end())
        view = berth_view(b->second, ctx_.inventory);
      // A reply about a berth whose record is not on disk waits for (and forces) a durable write.
      if (dirty_.count(reply->owner)) {
        durable = true;
        to_commit_.insert(reply->owner);
      }
      replies.push_back({std::move(it->second), reply->error, std::move(view), reply->owner});
      waiting_.erase(it);
    }
  }
  if (store_ && !attachment.empty()) {
    auto records = attachment_writes(attachment);
    auto status = std::make_shared<Status>(ok_status());
    batch.push_back(
        {[this, records = std::move(records), status] { *status = store_->write(records, false); },
         [this, attachment, status] {
           if (!*status) attachment_save_failed(attachment, status->error());
         }});
  }
  if (durable && !commit_posted_) {
    commit_posted_ = true;
    boost::asio::post(io_, [this] { commit(); });
  }
  for (auto& a : actions) {
    std::visit(overloaded{
                   [&](action::RunStep& run) {
                     if (spdlog::should_log(spdlog::level::debug))  // describe() is not free
                       spdlog::debug("BERTH_STEP {} {}{}", run.owner, run.rollback ? "undo: " : "",
                                     describe(run.step));
                     // One run out at a time, none while events wait for one or a run is replayed,
                     // and only from a record the worker can bring up to date.
                     const bool as_run = step_runs_ && !run.then.empty() && !run_out_ &&
                                         deferred_.empty() && !ran_next_ &&
                                         (!store_ || written_.count(run.owner));
                     batch.push_back(as_run ? run_job(run) : step_job(run));
                   },
                   [&](action::Notify& n) {
                     if (n.warning)
                       spdlog::warn("BERTH_WARNING {}: {}", n.owner, n.message);
                     else
                       spdlog::info("BERTH_STATE {} {}{}{}", n.owner, n.state,
                                    n.message.empty() ? "" : ": ", n.message);
                   },
                   [](auto&) {},
               },
               a);
  }
  if (!replies.empty()) {
    if (durable) {
      for (auto& r : replies) after_commit_.push_back(std::move(r));
    } else {
      // After the attachment records above are written (the worker runs jobs in order).
      auto shared = std::make_shared<std::vector<PendingReply>>(std::move(replies));
      batch.push_back({[] {}, [this, shared] { deliver(std::move(*shared)); }});
    }
  }
  run_batch(std::move(batch));
  // The hooks after the batch: what they post to the worker (a VF berth's link watch enters the
  // container's network namespace there) then runs after this turn's writes, and the reply
  // does not wait behind it.
  for (auto& a : actions) {
    if (auto* n = std::get_if<action::Notify>(&a); n && hooks_.notify) hooks_.notify(*n);
    if (auto* w = std::get_if<action::Watch>(&a); w && hooks_.watch) hooks_.watch(*w);
  }
  if (admit_after_turn) boost::asio::post(io_, [this] { admit_held(); });
  if (!revoked_.empty()) report_still_open();
  check_idle();
}

void Engine::report_still_open() {
  for (auto it = revoked_.begin(); it != revoked_.end();) {
    const auto b = ledger_.berths.find(it->first);
    if (b != ledger_.berths.end() && b->second.op != Operation::none) {
      ++it;  // asked when its operation is over
      continue;
    }
    auto revoked = std::make_shared<Revoked>(std::move(it->second));
    auto note = std::make_shared<std::string>();
    // Posted to the reactor first, so that a durable commit this turn posted (a release's
    // reply waits for it) reaches the worker before this job. Counted from now, so that a
    // stopping berthd waits for it as for any job of the engine's.
    ++jobs_in_flight_;
    boost::asio::post(io_, [this, owner = it->first, revoked, note] {
      --jobs_in_flight_;
      on_worker([&actuator = actuator_, revoked,
                 note] { *note = actuator.still_open(revoked->target, revoked->devices); },
                [this, owner, note] {
                  if (!note->empty()) {
                    const action::Notify warning{owner, "", *note, true};
                    spdlog::warn("BERTH_WARNING {}: {}", owner, warning.message);
                    if (hooks_.notify) hooks_.notify(warning);
                  }
                  check_idle();
                },
                false);
    });
    it = revoked_.erase(it);
  }
}

Engine::WorkerJob Engine::step_job(const action::RunStep& run) {
  auto out = std::make_shared<StepOutcome>();
  return {[this, run, out] { *out = actuator_.run(run.step, run.target, run.rollback); },
          [this, run, out] { finished(run, std::move(*out)); }};
}

Engine::WorkerJob Engine::run_job(const action::RunStep& run) {
  auto r = std::make_shared<StepRun>();
  r->first = run;
  r->steps.reserve(run.then.size() + 1);
  r->steps.push_back(run.step);
  r->steps.insert(r->steps.end(), run.then.begin(), run.then.end());
  r->berth = ledger_.berths.at(run.owner);
  if (auto w = written_.find(run.owner); w != written_.end()) r->written = w->second;
  run_out_ = r;
  return {
      [this, r] {
        for (size_t i = 0;; ++i) {
          r->outcomes.push_back(actuator_.run(r->steps[i], r->first.target, r->first.rollback));
          const StepOutcome& out = r->outcomes.back();
          if (!out.ok || out.vf || i + 1 == r->steps.size() || r->stop) return;
          advance_in_run(r->berth, r->first.rollback, out.undo);
          if (!store_ || !r->written) continue;
          auto line = progress_line(*r->written, r->berth);
          if (!line) return;  // more than progress changed: core writes the record
          r->saved = store_->write({RecordWrite{r->first.owner, std::move(*line), true}}, false);
          if (!r->saved) return;
        }
      },
      [this, r] { replay(*r); }};
}

void Engine::finished(const action::RunStep& run, StepOutcome out) {
  if (!out.ok) {
    spdlog::warn("BERTH_STEP_FAILED {} {}: {}", run.owner, describe(run.step), out.error);
    if (hooks_.step_failed) hooks_.step_failed(run.step);
  }
  if (!out.note.empty())
    spdlog::warn("BERTH_STEP_NOTE {} {}: {}", run.owner, describe(run.step), out.note);
  if (const auto* deny = std::get_if<step::DenyDevice>(&run.step); deny && out.ok) {
    Revoked& r = revoked_[run.owner];
    r.target = run.target;
    r.devices.emplace_back(deny->major, deny->minor);
  }
  event::StepFinished ev{run.owner,           out.ok,
                         std::move(out.undo), std::move(out.error),
                         std::move(out.note), std::move(out.vf),
                         out.left_behind};
  if (ran_next_)
    dispatch(ev);  // a run's outcome, replayed
  else
    dispatch_or_defer(ev);
}

void Engine::replay(StepRun& r) {
  run_out_.reset();
  const size_t n = r.outcomes.size();
  for (size_t i = 0; i < n; ++i) {
    action::RunStep step{r.first.owner, r.first.target, r.steps[i], r.first.rollback};
    if (i + 1 < n) {
      ran_next_ = action::RunStep{r.first.owner, r.first.target, r.steps[i + 1], r.first.rollback};
    } else {
      ran_next_.reset();
      if (!r.saved) {
        // The line before the step that did not run could not be written.
        attachment_save_failed({r.first.owner}, r.saved.error());
      }
    }
    finished(step, std::move(r.outcomes[i]));
  }
  ran_next_.reset();
  while (!run_out_ && !deferred_.empty()) {
    Event ev = std::move(deferred_.front());
    deferred_.pop_front();
    dispatch(ev);
  }
  check_idle();
}

std::vector<RecordWrite> Engine::attachment_writes(const std::vector<std::string>& owners) {
  std::vector<RecordWrite> out;
  for (const auto& owner : owners) {
    auto b = ledger_.berths.find(owner);
    if (b == ledger_.berths.end()) {
      written_.erase(owner);
      out.push_back({owner, std::nullopt});
      continue;
    }
    if (auto w = written_.find(owner); w != written_.end())
      if (auto line = progress_line(w->second, b->second)) {
        out.push_back({owner, std::move(*line), true});
        continue;
      }
    out.push_back({owner, nlohmann::json(b->second).dump()});
    written_.insert_or_assign(owner, b->second);
  }
  return out;
}

void Engine::attachment_save_failed(const std::vector<std::string>& owners, const Error& e) {
  last_save_error_ = e.message;
  spdlog::error("BERTH_STATE_SAVE_FAILED {}", last_save_error_);
  dirty_.insert(owners.begin(), owners.end());
  forget_written(owners);
  schedule_retry();
}

void Engine::forget_written(const std::vector<std::string>& owners) {
  for (const auto& o : owners) written_.erase(o);
}

void Engine::run_batch(std::vector<WorkerJob> batch) {
  if (batch.empty()) return;
  if (batch.size() == 1) return on_worker(std::move(batch[0].run), std::move(batch[0].done));
  // One trip to the worker and back for all of them: they run in order there, and their
  // outcomes are handled in the same order here, as if posted one by one.
  auto jobs = std::make_shared<std::vector<WorkerJob>>(std::move(batch));
  on_worker(
      [jobs] {
        for (auto& j : *jobs) j.run();
      },
      [jobs] {
        for (auto& j : *jobs) j.done();
      });
}

void Engine::deliver(std::vector<PendingReply> replies) {
  for (auto& r : replies) {
    std::optional<Error> error = r.error;
    if (!error && dirty_.count(r.owner))
      error = make_error(ErrorCode::internal,
                         "the change was made but could not be saved (" + last_save_error_ +
                             "); it holds in memory and is written again every second");
    r.fn(std::move(error), std::move(r.view));
  }
  check_idle();
}

void Engine::commit() {
  commit_posted_ = false;
  // Owners whose earlier write failed are written again, durably, with this round.
  to_commit_.insert(dirty_.begin(), dirty_.end());
  std::vector<std::string> owners(to_commit_.begin(), to_commit_.end());
  to_commit_.clear();
  auto replies = std::make_shared<std::vector<PendingReply>>(std::move(after_commit_));
  after_commit_.clear();
  if (!store_) {
    on_worker([] {}, [this, replies] { deliver(std::move(*replies)); });
    return;
  }
  auto records = StateStore::records(ledger_, owners);
  forget_written(owners);  // the durable record replaces the runtime one
  auto status = std::make_shared<Status>(ok_status());
  on_worker(
      [this, records = std::move(records), status] { *status = store_->write(records, true); },
      [this, owners, status, replies] {
        if (*status) {
          for (const auto& o : owners) dirty_.erase(o);
        } else {
          last_save_error_ = status->error().message;
          spdlog::error("BERTH_STATE_SAVE_FAILED {}", last_save_error_);
          dirty_.insert(owners.begin(), owners.end());
          schedule_retry();
        }
        deliver(std::move(*replies));
      });
}

void Engine::schedule_retry() {
  if (retry_armed_) return;
  retry_armed_ = true;
  retry_.expires_after(std::chrono::seconds(1));
  retry_.async_wait([this](const boost::system::error_code& ec) {
    retry_armed_ = false;
    if (ec || dirty_.empty()) return;
    spdlog::info("BERTH_STATE_SAVE_RETRY {} berth(s)", dirty_.size());
    if (!commit_posted_) {
      commit_posted_ = true;
      boost::asio::post(io_, [this] { commit(); });
    }
  });
}

}  // namespace berth::agent
