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

void Engine::submit(Event ev, ReplyFn reply) {
  const uint64_t id = next_request_++;
  std::visit(
      [&](auto& e) {
        if constexpr (requires { e.request; }) e.request = id;
      },
      ev);
  waiting_[id] = std::move(reply);
  dispatch(ev);
}

void Engine::post(const Event& ev) {
  dispatch(ev);
}

void Engine::resume(std::vector<std::string> gone, bool rebooted) {
  dispatch(event::Resume{std::move(gone), rebooted});
}

bool Engine::busy() const {
  if (!to_commit_.empty() || jobs_in_flight_ > 0 || !dirty_.empty()) return true;
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
  std::vector<std::string> attachment;
  bool durable = false;
  for (auto& a : actions) {
    if (auto* p = std::get_if<action::Persist>(&a)) {
      if (p->durable) {
        durable = true;
        to_commit_.insert(p->owners.begin(), p->owners.end());
      } else {
        attachment.insert(attachment.end(), p->owners.begin(), p->owners.end());
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
  for (auto& a : actions) {
    if (auto* reply = std::get_if<action::Reply>(&a)) {
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
           if (!*status) {
             last_save_error_ = status->error().message;
             spdlog::error("BERTH_STATE_SAVE_FAILED {}", last_save_error_);
             dirty_.insert(attachment.begin(), attachment.end());
             forget_written(attachment);
             schedule_retry();
           }
         }});
  }
  if (durable && !commit_posted_) {
    commit_posted_ = true;
    boost::asio::post(io_, [this] { commit(); });
  }
  for (auto& a : actions) {
    std::visit(
        overloaded{
            [&](action::RunStep& run) {
              if (spdlog::should_log(spdlog::level::debug))  // describe() is not free
                spdlog::debug("BERTH_STEP {} {}{}", run.owner, run.rollback ? "undo: " : "",
                              describe(run.step));
              auto out = std::make_shared<StepOutcome>();
              batch.push_back(
                  {[this, run, out] { *out = actuator_.run(run.step, run.target, run.rollback); },
                   [this, run, out] {
                     if (!out->ok) {
                       spdlog::warn("BERTH_STEP_FAILED {} {}: {}", run.owner, describe(run.step),
                                    out->error);
                       if (hooks_.step_failed) hooks_.step_failed(run.step);
                     }
                     if (!out->note.empty())
                       spdlog::warn("BERTH_STEP_NOTE {} {}: {}", run.owner, describe(run.step),
                                    out->note);
                     dispatch(event::StepFinished{run.owner, out->ok, std::move(out->undo),
                                                  std::move(out->error), std::move(out->note),
                                                  std::move(out->vf), out->left_behind});
                   }});
            },
            [&](action::Notify& n) {
              if (n.warning)
                spdlog::warn("BERTH_WARNING {}: {}", n.owner, n.message);
              else
                spdlog::info("BERTH_STATE {} {}{}{}", n.owner, n.state,
                             n.message.empty() ? "" : ": ", n.message);
              if (hooks_.notify) hooks_.notify(n);
            },
            [&](action::Watch& w) {
              if (hooks_.watch) hooks_.watch(w);
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
