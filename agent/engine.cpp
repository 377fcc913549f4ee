#include "agent/engine.hpp"

#include <spdlog/spdlog.h>
#include <algorithm>

#include <boost/asio/post.hpp>

#include "core/view.hpp"

namespace berth::agent {

Engine::Engine(boost::asio::io_context& io, Context ctx, Ledger ledger, Actuator& actuator,
               StateStore* store)
    : io_(io),
      ctx_(std::move(ctx)),
      ledger_(std::move(ledger)),
      actuator_(actuator),
      store_(store) {}

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

void Engine::resume() {
  dispatch(event::Resume{});
}

bool Engine::busy() const {
  if (!to_commit_.empty()) return true;
  for (const auto& [owner, b] : ledger_.berths)
    if (b.op != Operation::none) return true;
  return false;
}

void Engine::dispatch(const Event& ev) {
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
  perform(std::move(actions));
  if (!busy()) actuator_.idle();
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
  // Persist first: a caller is told "done" only for state that is saved, and is told when it is
  // not. Attachment state is written now (a rename); reservations at the end of this turn.
  const std::optional<Error> unsaved = save(attachment, false);
  if (durable && !commit_posted_) {
    commit_posted_ = true;
    boost::asio::post(io_, [this] { commit(); });
  }
  for (auto& a : actions) {
    if (auto* run = std::get_if<action::RunStep>(&a)) {
      // One step per reactor turn, so requests for other berths are served in between.
      boost::asio::post(io_, [this, run = std::move(*run)] {
        spdlog::debug("BERTH_STEP {} {}{}", run.owner, run.rollback ? "undo: " : "",
                      describe(run.step));
        StepOutcome out = actuator_.run(run.step, run.target, run.rollback);
        if (!out.ok)
          spdlog::warn("BERTH_STEP_FAILED {} {}: {}", run.owner, describe(run.step), out.error);
        dispatch(event::StepFinished{run.owner, out.ok, std::move(out.undo), std::move(out.error)});
      });
    } else if (auto* reply = std::get_if<action::Reply>(&a)) {
      auto it = waiting_.find(reply->request);
      if (it == waiting_.end()) continue;
      auto fn = std::move(it->second);
      waiting_.erase(it);
      nlohmann::json view;
      if (auto b = ledger_.berths.find(reply->owner); b != ledger_.berths.end())
        view = berth_view(b->second, ctx_.inventory);
      if (durable)
        after_commit_.push_back(
            {std::move(fn), reply->error ? reply->error : unsaved, std::move(view)});
      else
        fn(reply->error ? reply->error : unsaved, std::move(view));
    }
  }
}

std::optional<Error> Engine::save(const std::vector<std::string>& owners, bool durable) {
  if (owners.empty() || !store_) return std::nullopt;
  auto s = store_->save(ledger_, owners, durable);
  if (s) return std::nullopt;
  spdlog::error("BERTH_STATE_SAVE_FAILED {}", s.error().message);
  return make_error(ErrorCode::internal,
                    "the change was made but could not be saved (" + s.error().message +
                        "); it holds in memory until the next successful write");
}

void Engine::commit() {
  commit_posted_ = false;
  std::vector<std::string> owners(to_commit_.begin(), to_commit_.end());
  to_commit_.clear();
  const std::optional<Error> unsaved = save(owners, true);
  auto replies = std::move(after_commit_);
  after_commit_.clear();
  for (auto& r : replies) r.fn(r.error ? r.error : unsaved, std::move(r.view));
  if (!busy()) actuator_.idle();
}

}  // namespace berth::agent
