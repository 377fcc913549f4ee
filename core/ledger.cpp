#include "core/ledger.hpp"

#include <algorithm>
#include <set>

#include <nlohmann/json.hpp>

#include "core/placement.hpp"
#include "core/plan.hpp"

namespace berth {
namespace {

// The state machine's working set for one event.
struct Machine {
  Ledger& ledger;
  const Context& ctx;
  std::vector<Action> actions;

  void reply_ok(uint64_t request, const std::string& owner) {
    actions.push_back(action::Reply{request, owner, std::nullopt});
  }
  void reply_error(uint64_t request, const std::string& owner, ErrorCode code,
                   std::string message) {
    actions.push_back(action::Reply{request, owner, make_error(code, std::move(message))});
  }
  // What is reserved (a berth created, released or pruned) must survive a power loss.
  void persist_reservation(const std::string& owner) {
    actions.push_back(action::Persist{{owner}, true});
  }
  // Attachment state (the plan, the steps done, attached or not) describes device nodes, moved
  // links and cgroup rules of running containers. None of that outlives a power loss, so the
  // record only has to outlive the agent's own death.
  void persist_attachment(const std::string& owner) {
    actions.push_back(action::Persist{{owner}, false});
  }

  void set_state(Berth& b, BerthState to) {
    // Every state change passes the lifecycle check; a failure here is a bug in this file.
    if (!can_transition(b.state, to))
      throw std::logic_error("berth " + b.owner + ": " + std::string(to_string(b.state)) + " -> " +
                             std::string(to_string(to)));
    b.state = to;
  }

  Berth* find(const std::string& owner) {
    auto it = ledger.berths.find(owner);
    return it == ledger.berths.end() ? nullptr : &it->second;
  }

  void on(const event::Create& e);
  void on(const event::Attach& e);
  void on(const event::Detach& e);
  void on(const event::Release& e);
  void on(const event::StepFinished& e);
  void on(const event::Resume& e);

  // An operation starts: its caller is answered when it ends.
  void begin(Berth& b, Operation op, uint64_t request) {
    b.op = op;
    b.op_request = request;
    b.op_error.clear();
    persist_attachment(b.owner);
  }
  void reply_busy(uint64_t request, const Berth& b) {
    reply_error(request, b.owner, ErrorCode::busy,
                "berth " + b.owner + " is " + std::string(to_string(b.state)) +
                    "; try again when it settles");
  }

  void run_next_forward(Berth& b);
  void run_next_reverse(Berth& b);
  void finish_reverse(Berth& b);
  // Drops the oldest released berths beyond the limit, never `keep` (the one being answered).
  void prune_tombstones(const std::string& keep);
};

std::string nth_ifname(const std::string& base, int i, int count) {
  if (count == 1) return base;
  size_t digits = base.size();
  while (digits > 0 && base[digits - 1] >= '0' && base[digits - 1] <= '9') --digits;
  int start = digits < base.size() ? std::stoi(base.substr(digits)) : 0;
  return base.substr(0, digits) + std::to_string(start + i);
}

void Machine::on(const event::Create& e) {
  if (auto s = validate_owner(e.owner); !s)
    return reply_error(e.request, e.owner, s.error().code, s.error().message);
  if (Berth* b = find(e.owner); b && b->state != BerthState::released) {
    if (b->request == e.spec) return reply_ok(e.request, e.owner);
    return reply_error(e.request, e.owner, ErrorCode::conflict,
                       "berth " + e.owner + " exists with a different request; release it first");
  }
  const auto& net = e.spec.network;
  const PoolConfig* pool = nullptr;
  if (net.pool) {
    auto it = ctx.pools.find(*net.pool);
    if (it == ctx.pools.end())
      return reply_error(e.request, e.owner, ErrorCode::unknown_pool,
                         "no address pool named '" + *net.pool + "'");
    pool = &it->second;
  }
  Usage usage;
  std::map<std::string, std::set<IpAddress>> leased;  // pool -> addresses
  std::map<IpAddress, std::string> holders;
  for (const auto& [owner, other] : ledger.berths) {
    usage.add(other);
    if (other.state == BerthState::released) continue;
    for (const auto& v : other.vfs)
      for (const auto& a : v.addresses) {
        leased[v.pool].insert(a.address);
        holders[a.address] = owner;
      }
  }
  auto placement = place(ctx.inventory, usage, e.spec);
  if (!placement)
    return reply_error(e.request, e.owner, placement.error().code, placement.error().message);

  Berth b;
  b.owner = e.owner;
  b.seq = ledger.next_seq;
  b.request = e.spec;
  b.placement = *placement;
  for (size_t i = 0; i < placement->vfs.size(); ++i) {
    const Vf* vf = ctx.inventory.vf_by_pci(placement->vfs[i]);
    VfBinding vb{
        vf->pci, vf->netdev, nth_ifname(net.ifname, static_cast<int>(i), e.spec.vf_count), {}, ""};
    if (pool) {
      auto addr = next_free_address(*pool, leased[pool->name]);
      if (!addr) return reply_error(e.request, e.owner, addr.error().code, addr.error().message);
      leased[pool->name].insert(addr->address);
      vb.addresses.push_back(*addr);
      vb.pool = pool->name;
    } else if (net.address && i == 0) {
      if (auto h = holders.find(net.address->address); h != holders.end())
        return reply_error(
            e.request, e.owner, ErrorCode::conflict,
            "address " + net.address->address.to_string() + " is held by " + h->second);
      vb.addresses.push_back(*net.address);
    }
    b.vfs.push_back(std::move(vb));
  }
  b.routes = net.routes;
  std::optional<IpAddress> gateway = net.gateway;
  if (!gateway && pool && pool->gateway) gateway = pool->gateway;
  if (gateway) {
    IpAddress any{};
    any.family = gateway->family;
    b.routes.insert(b.routes.begin(), RouteSpec{Cidr{any, 0}, *gateway});
  }
  ++ledger.next_seq;
  ledger.berths[e.owner] = std::move(b);
  persist_reservation(e.owner);
  reply_ok(e.request, e.owner);
}

void Machine::on(const event::Attach& e) {
  Berth* b = find(e.owner);
  if (!b) return reply_error(e.request, e.owner, ErrorCode::unknown_owner, "no berth " + e.owner);
  switch (b->state) {
    case BerthState::attached:
      if (b->target && b->target->pid == e.target.pid &&
          b->target->start_time == e.target.start_time)
        return reply_ok(e.request, e.owner);
      return reply_error(e.request, e.owner, ErrorCode::conflict,
                         "berth " + e.owner + " is attached to pid " +
                             std::to_string(b->target->pid) + "; detach it first");
    case BerthState::attaching:
    case BerthState::detaching:
      return reply_busy(e.request, *b);
    case BerthState::released:
      return reply_error(e.request, e.owner, ErrorCode::invalid_state,
                         "berth " + e.owner + " is released");
    case BerthState::failed:
      if (!b->done.empty())
        return reply_error(
            e.request, e.owner, ErrorCode::invalid_state,
            "berth " + e.owner + " failed with host state left over; detach it first");
      break;
    case BerthState::reserved:
      break;
  }
  set_state(*b, BerthState::attaching);
  b->target = e.target;
  b->plan = attach_plan(*b, ctx.inventory);
  b->done.clear();
  b->error.clear();
  begin(*b, Operation::attach, e.request);
  run_next_forward(*b);
}

void Machine::on(const event::Detach& e) {
  Berth* b = find(e.owner);
  if (!b) return reply_error(e.request, e.owner, ErrorCode::unknown_owner, "no berth " + e.owner);
  switch (b->state) {
    case BerthState::reserved:
    case BerthState::released:
      return reply_ok(e.request, e.owner);
    case BerthState::attaching:
    case BerthState::detaching:
      return reply_busy(e.request, *b);
    case BerthState::failed:
      if (b->done.empty()) {
        set_state(*b, BerthState::reserved);
        b->error.clear();
        b->target.reset();
        persist_attachment(b->owner);
        return reply_ok(e.request, e.owner);
      }
      break;
    case BerthState::attached:
      break;
  }
  set_state(*b, BerthState::detaching);
  begin(*b, Operation::detach, e.request);
  run_next_reverse(*b);
}

void Machine::on(const event::Release& e) {
  Berth* b = find(e.owner);
  if (!b) return reply_error(e.request, e.owner, ErrorCode::unknown_owner, "no berth " + e.owner);
  switch (b->state) {
    case BerthState::released:
      return reply_ok(e.request, e.owner);
    case BerthState::attaching:
    case BerthState::detaching:
      return reply_busy(e.request, *b);
    case BerthState::reserved:
    case BerthState::failed:
      if (b->done.empty()) {
        set_state(*b, BerthState::released);
        b->target.reset();
        prune_tombstones(b->owner);
        persist_reservation(b->owner);
        return reply_ok(e.request, e.owner);
      }
      break;
    case BerthState::attached:
      break;
  }
  set_state(*b, BerthState::detaching);
  begin(*b, Operation::release, e.request);
  run_next_reverse(*b);
}

void Machine::on(const event::StepFinished& e) {
  Berth* b = find(e.owner);
  if (!b || b->op == Operation::none) return;  // a late outcome for an operation that is over
  bool forward = b->state == BerthState::attaching && b->op_error.empty();
  if (forward) {
    if (e.ok) {
      b->done.push_back({b->plan[b->done.size()], e.undo});
      persist_attachment(b->owner);
      return run_next_forward(*b);
    }
    b->op_error = "step " + std::to_string(b->done.size() + 1) + "/" +
                  std::to_string(b->plan.size()) + " (" + describe(b->plan[b->done.size()]) +
                  ") failed: " + e.error;
    return run_next_reverse(*b);
  }
  // Reverse: the last done step's inverse finished. A failed inverse is recorded, not retried.
  if (b->done.empty()) return;  // no inverse was asked for: a stray outcome
  if (!e.ok) {
    auto inv = inverse(b->done.back().step, b->done.back().undo);
    std::string what =
        "undo (" + (inv ? describe(*inv) : std::string("?")) + ") failed: " + e.error;
    if (b->op == Operation::attach)
      b->op_error += "; " + what;
    else
      b->op_error += (b->op_error.empty() ? "" : "; ") + what;
  }
  b->done.pop_back();
  persist_attachment(b->owner);
  run_next_reverse(*b);
}

void Machine::on(const event::Resume&) {
  for (auto& [owner, b] : ledger.berths) {
    if (b.op != Operation::none) continue;
    if (b.state == BerthState::attaching) {
      b.op = Operation::attach;
      b.op_request = 0;
      b.op_error = "the agent restarted during attach";
      run_next_reverse(b);
    } else if (b.state == BerthState::detaching) {
      b.op = Operation::detach;
      b.op_request = 0;
      b.op_error.clear();
      run_next_reverse(b);
    }
  }
}

void Machine::run_next_forward(Berth& b) {
  if (b.done.size() < b.plan.size()) {
    actions.push_back(action::RunStep{b.owner, *b.target, b.plan[b.done.size()], false});
    return;
  }
  set_state(b, BerthState::attached);
  b.op = Operation::none;
  persist_attachment(b.owner);
  reply_ok(b.op_request, b.owner);
}

void Machine::run_next_reverse(Berth& b) {
  while (!b.done.empty()) {
    auto inv = inverse(b.done.back().step, b.done.back().undo);
    if (inv) {
      actions.push_back(action::RunStep{b.owner, b.target.value_or(Target{}), *inv, true});
      return;
    }
    b.done.pop_back();
  }
  finish_reverse(b);
}

void Machine::finish_reverse(Berth& b) {
  const uint64_t request = b.op_request;
  const Operation op = b.op;
  b.op = Operation::none;
  if (op == Operation::attach) {
    set_state(b, BerthState::failed);
    b.error = b.op_error + (b.op_error.find("undo (") == std::string::npos ? "; rolled back" : "");
    b.target.reset();
    persist_attachment(b.owner);
    return reply_error(request, b.owner, ErrorCode::attach_failed, b.error);
  }
  if (!b.op_error.empty() && op == Operation::release) {
    // The caller wants it gone: free it, and keep what could not be undone in the tombstone.
    set_state(b, BerthState::released);
    b.error = "released with leftovers: " + b.op_error;
    b.target.reset();
    prune_tombstones(b.owner);
    persist_reservation(b.owner);
    return reply_ok(request, b.owner);
  }
  if (!b.op_error.empty()) {
    set_state(b, BerthState::failed);
    b.error = b.op_error;
    persist_attachment(b.owner);
    return reply_error(request, b.owner, ErrorCode::detach_failed, b.error);
  }
  b.target.reset();
  b.error.clear();
  if (op == Operation::release) {
    set_state(b, BerthState::released);
    prune_tombstones(b.owner);
    persist_reservation(b.owner);
  } else {
    set_state(b, BerthState::reserved);
    persist_attachment(b.owner);
  }
  reply_ok(request, b.owner);
}

void Machine::prune_tombstones(const std::string& keep) {
  std::vector<std::pair<uint64_t, std::string>> released;
  for (const auto& [owner, b] : ledger.berths)
    if (b.state == BerthState::released && owner != keep) released.emplace_back(b.seq, owner);
  const size_t total = released.size() + 1;  // `keep` counts too
  if (total <= ctx.max_tombstones) return;
  std::sort(released.begin(), released.end());
  for (size_t i = 0; i < total - ctx.max_tombstones; ++i) {
    ledger.berths.erase(released[i].second);
    persist_reservation(released[i].second);  // gone from the ledger: its record goes too
  }
}

}  // namespace

std::vector<Action> apply(Ledger& ledger, const Context& ctx, const Event& ev) {
  Machine m{ledger, ctx, {}};
  std::visit([&](const auto& e) { m.on(e); }, ev);
  return std::move(m.actions);
}

void to_json(nlohmann::json& j, const Ledger& l) {
  j = {{"version", 1}, {"next_seq", l.next_seq}, {"berths", nlohmann::json::array()}};
  for (const auto& [owner, b] : l.berths) j["berths"].push_back(b);
}

Expected<Ledger> ledger_from_json(const nlohmann::json& j) {
  if (!j.is_object() || j.value("version", 0) != 1)
    return make_error(ErrorCode::bad_request, "ledger: expected an object with \"version\": 1");
  Ledger l;
  if (!j.contains("next_seq") || !j["next_seq"].is_number_unsigned() || !j.contains("berths") ||
      !j["berths"].is_array())
    return make_error(ErrorCode::bad_request, "ledger: next_seq and berths are required");
  l.next_seq = j["next_seq"].get<uint64_t>();
  for (const auto& item : j["berths"]) {
    auto b = berth_from_json(item);
    if (!b) return make_error(b.error().code, "ledger: " + b.error().message);
    if (l.berths.count(b->owner))
      return make_error(ErrorCode::bad_request, "ledger: owner " + b->owner + " twice");
    l.next_seq = std::max(l.next_seq, b->seq + 1);
    l.berths[b->owner] = std::move(*b);
  }
  return l;
}

}  // namespace berth
