#include "core/ledger.hpp"
#include "core/guid.hpp"

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
  Context& ctx;
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
  void warn(const std::string& owner, std::string message) {
    actions.push_back(action::Notify{owner, "", std::move(message), true});
  }

  void set_state(Berth& b, BerthState to, std::string message = {}) {
    // Every state change passes the lifecycle check; a failure here is a bug in this file.
    if (!can_transition(b.state, to))
      throw std::logic_error("berth " + b.owner + ": " + std::string(to_string(b.state)) + " -> " +
                             std::string(to_string(to)));
    b.state = to;
    actions.push_back(action::Notify{b.owner, std::string(to_string(to)), std::move(message)});
    if (to == BerthState::attached && b.target)
      actions.push_back(action::Watch{b.owner, *b.target, true});
  }
  // The berth no longer targets a container: stop watching it.
  void drop_target(Berth& b) {
    if (b.target) actions.push_back(action::Watch{b.owner, *b.target, false});
    b.target.reset();
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
  void on(const event::TargetExited& e);
  void on(const event::InventoryChanged& e);
  void on(const event::Fault& e);
  // A VF that came back from a driver rebind: the inventory and the berth's binding take its
  // names as they are now.
  void follow_vf(Berth& b, const Vf& now);

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

  void start_attach(Berth& b, const Target& target, uint64_t request);
  // Undoes what the berth holds on the host (its done steps, then its leftovers again) as `op`.
  void start_reverse(Berth& b, Operation op, uint64_t request, std::string message = {});
  void run_next_forward(Berth& b);
  void run_next_reverse(Berth& b);
  bool still_needed_by_another(Berth& b, DoneStep& d);
  // The inverses after the one of the last done step that core asks for next while each
  // succeeds: up to a step another berth shares, or one with nothing to undo.
  std::vector<Step> reverse_run(const Berth& b);
  void finish_reverse(Berth& b);
  // After a reboot: nothing of an attachment survived; keep the reservation by owner policy.
  void forget_attachment(Berth& b);
  // Drops the oldest released berths beyond the limit, never `keep` (the one being answered).
  void prune_tombstones(const std::string& keep);
};

// A success: a forward step joins the done steps with its undo; an inverse takes its step off.
void record_success(Berth& b, bool rollback, const std::string& undo) {
  if (rollback)
    b.done.pop_back();
  else
    b.done.push_back({b.plan[b.done.size()], undo});
}

void start_next_forward(Berth& b) {
  b.in_flight = b.plan[b.done.size()];
}

// A VF's GUIDs set with a driver rebind: the steps after it are planned again from the VF as it
// came back, so none of them is asked for ahead.
bool replans(const Step& s) {
  const auto* guid = std::get_if<step::SetVfGuid>(&s);
  return guid && !guid->rebind.empty();
}

// The forward steps after the one now in flight that core asks for next while each succeeds.
std::vector<Step> forward_run(const Berth& b) {
  std::vector<Step> run;
  for (size_t i = b.done.size(); i + 1 < b.plan.size() && !replans(b.plan[i]); ++i)
    run.push_back(b.plan[i + 1]);
  return run;
}

// Another berth in the same container that did the same device node or rule (the control node
// two berths' GPUs share), and its done step.
std::pair<const std::string*, DoneStep*> sharing(Ledger& ledger, const Berth& b,
                                                 const DoneStep& d) {
  if (!b.target) return {nullptr, nullptr};
  const auto* node = std::get_if<step::MakeNode>(&d.step);
  const auto* rule = std::get_if<step::AllowDevice>(&d.step);
  if (!node && !rule) return {nullptr, nullptr};
  for (auto& [owner, other] : ledger.berths) {
    if (owner == b.owner || !other.target || other.target->pid != b.target->pid ||
        other.target->start_time != b.target->start_time)
      continue;
    for (auto& od : other.done) {
      const auto* onode = std::get_if<step::MakeNode>(&od.step);
      const auto* orule = std::get_if<step::AllowDevice>(&od.step);
      if ((node && onode && onode->dev == node->dev) ||
          (rule && orule && orule->major == rule->major && orule->minor == rule->minor))
        return {&owner, &od};
    }
  }
  return {nullptr, nullptr};
}

bool same_process(const Target& a, const Target& b) {
  return a.pid == b.pid && a.start_time == b.start_time;
}

// The i-th of `count` interface names from `base`: "ib0" gives ib0, ib1, ...; "net" gives net0,
// net1, ... Empty when a name would be longer than the kernel's 15 characters. A request's
// ifname is at most 15 characters, so its digits fit in 64 bits.
std::string nth_ifname(const std::string& base, int i, int count) {
  if (count == 1) return base;
  size_t digits = base.size();
  while (digits > 0 && base[digits - 1] >= '0' && base[digits - 1] <= '9') --digits;
  uint64_t start = 0;
  for (size_t k = digits; k < base.size(); ++k) start = start * 10 + (base[k] - '0');
  std::string name = base.substr(0, digits) + std::to_string(start + static_cast<uint64_t>(i));
  return name.size() <= 15 ? name : std::string();
}

void Machine::on(const event::Create& e) {
  if (auto s = validate_owner(e.owner); !s)
    return reply_error(e.request, e.owner, s.error().code, s.error().message);
  if (Berth* b = find(e.owner); b && b->state == BerthState::released && !b->leftovers.empty())
    return reply_error(e.request, e.owner, ErrorCode::conflict,
                       "berth " + e.owner +
                           " was released with leftovers on the host; release it "
                           "again to retry their undo first");
  if (Berth* b = find(e.owner); b && b->state != BerthState::released) {
    if (b->request == e.spec && b->owner_uid == e.uid) return reply_ok(e.request, e.owner);
    if (b->request == e.spec)
      return reply_error(e.request, e.owner, ErrorCode::conflict,
                         "berth " + e.owner + " exists for another user; release it first");
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
  b.owner_uid = e.uid;
  b.placement = *placement;
  for (size_t i = 0; i < placement->vfs.size(); ++i) {
    const Vf* vf = ctx.inventory.vf_by_pci(placement->vfs[i]);
    VfBinding vb{
        vf->pci, vf->netdev, nth_ifname(net.ifname, static_cast<int>(i), e.spec.vf_count), {}, ""};
    if (vb.ifname.empty())
      return reply_error(e.request, e.owner, ErrorCode::bad_request,
                         "field 'network.ifname': '" + net.ifname + "' numbered for " +
                             std::to_string(e.spec.vf_count) +
                             " VFs gives names longer than 15 characters");
    if (i < net.guids.size() && !vf->infiniband)
      return reply_error(e.request, e.owner, ErrorCode::bad_request,
                         "field 'network.guids': VF " + vf->pci +
                             " is not an InfiniBand VF; only those take GUIDs");
    if (i < net.guids.size()) {
      vb.node_guid = net.guids[i].node;
      vb.port_guid = net.guids[i].port;
    } else if (vf->infiniband) {
      // Stable across reboots and unique per node, PF and VF: the same VF gets the same GUIDs.
      const auto index = static_cast<uint32_t>(vf->vf_index);
      vb.node_guid = format_guid(derive_guid(ctx.node_name, vf->pf_pci, index, 0));
      vb.port_guid = format_guid(derive_guid(ctx.node_name, vf->pf_pci, index, 1));
    }
    if (!vb.node_guid.empty() &&
        std::find(ctx.vf_rebind_drivers.begin(), ctx.vf_rebind_drivers.end(), vf->driver) !=
            ctx.vf_rebind_drivers.end())
      vb.rebind = vf->driver;
    if (!vf->rdma.empty() && net.rdma != "shared") {
      if (ctx.inventory.rdma_netns == "exclusive")
        vb.rdma = vf->rdma;
      else if (net.rdma == "isolated")
        return reply_error(
            e.request, e.owner, ErrorCode::host_unsupported,
            "network.rdma 'isolated': the RDMA subsystem is in " +
                (ctx.inventory.rdma_netns == "none" ? std::string("no")
                                                    : ctx.inventory.rdma_netns) +
                " netns mode, so VF " + vf->pci + "'s RDMA device " + vf->rdma +
                " is visible in every namespace; boot with 'options ib_core netns_mode=0' (in "
                "/etc/modprobe.d/ib_core.conf) for exclusive mode, or ask for 'shared'");
    }
    if (pool) {
      auto addr = next_free_address(*pool, leased[pool->name]);
      if (!addr) return reply_error(e.request, e.owner, addr.error().code, addr.error().message);
      leased[pool->name].insert(addr->address);
      vb.addresses.push_back(*addr);
      vb.pool = pool->name;
      if (pool->pkey) {
        if (!vf->infiniband)
          return reply_error(e.request, e.owner, ErrorCode::bad_request,
                             "pool '" + pool->name + "' is on InfiniBand partition 0x" +
                                 format_pkey(pool->pkey) + "; VF " + vf->pci +
                                 " is not an InfiniBand VF");
        vb.pkey = pool->pkey;
        if (pkey_link_name(vb).size() > 15)
          return reply_error(e.request, e.owner, ErrorCode::bad_request,
                             "field 'network.ifname': the partition child '" + pkey_link_name(vb) +
                                 "' would be longer than 15 characters; use a name of at most 10");
      }
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
  actions.push_back(action::Notify{e.owner, "reserved", "created"});
  reply_ok(e.request, e.owner);
}

void Machine::on(const event::Attach& e) {
  Berth* b = find(e.owner);
  if (!b) return reply_error(e.request, e.owner, ErrorCode::unknown_owner, "no berth " + e.owner);
  switch (b->state) {
    case BerthState::attached:
      if (b->target && same_process(*b->target, e.target)) return reply_ok(e.request, e.owner);
      return reply_error(e.request, e.owner, ErrorCode::conflict,
                         "berth " + e.owner + " is attached to pid " +
                             std::to_string(b->target->pid) + "; detach it first");
    case BerthState::degraded:
      if (b->target && same_process(*b->target, e.target))
        return start_reverse(*b, Operation::reattach, e.request, "attaching again");
      return reply_error(e.request, e.owner, ErrorCode::conflict,
                         "berth " + e.owner + " is degraded and attached to pid " +
                             std::to_string(b->target->pid) + "; detach it first");
    case BerthState::attaching:
    case BerthState::detaching:
      return reply_busy(e.request, *b);
    case BerthState::released:
      return reply_error(e.request, e.owner, ErrorCode::invalid_state,
                         "berth " + e.owner + " is released");
    case BerthState::failed:
      if (!b->done.empty() || !b->leftovers.empty())
        return reply_error(
            e.request, e.owner, ErrorCode::invalid_state,
            "berth " + e.owner + " failed with host state left over; detach it first");
      break;
    case BerthState::reserved:
      break;
  }
  start_attach(*b, e.target, e.request);
}

void Machine::start_attach(Berth& b, const Target& target, uint64_t request) {
  b.target = target;
  b.plan = attach_plan(b, ctx.inventory);
  b.done.clear();
  b.error.clear();
  b.reason.clear();
  set_state(b, BerthState::attaching);
  begin(b, Operation::attach, request);
  run_next_forward(b);
}

void Machine::start_reverse(Berth& b, Operation op, uint64_t request, std::string message) {
  // Leftovers of an earlier failed undo are tried again, the most recent first.
  for (auto it = b.leftovers.rbegin(); it != b.leftovers.rend(); ++it) b.done.push_back(*it);
  b.leftovers.clear();
  set_state(b, BerthState::detaching, std::move(message));
  begin(b, op, request);
  run_next_reverse(b);
}

void Machine::on(const event::Detach& e) {
  Berth* b = find(e.owner);
  if (!b) return reply_error(e.request, e.owner, ErrorCode::unknown_owner, "no berth " + e.owner);
  switch (b->state) {
    case BerthState::reserved:
      return reply_ok(e.request, e.owner);
    case BerthState::released:
      if (b->leftovers.empty()) return reply_ok(e.request, e.owner);
      return start_reverse(*b, Operation::release, e.request, "retrying leftovers");
    case BerthState::attaching:
    case BerthState::detaching:
      return reply_busy(e.request, *b);
    case BerthState::failed:
      if (b->done.empty() && b->leftovers.empty()) {
        set_state(*b, BerthState::reserved);
        b->error.clear();
        drop_target(*b);
        persist_attachment(b->owner);
        return reply_ok(e.request, e.owner);
      }
      break;
    case BerthState::attached:
    case BerthState::degraded:
      break;
  }
  start_reverse(*b, Operation::detach, e.request);
}

void Machine::on(const event::Release& e) {
  Berth* b = find(e.owner);
  if (!b) return reply_error(e.request, e.owner, ErrorCode::unknown_owner, "no berth " + e.owner);
  switch (b->state) {
    case BerthState::released:
      if (b->leftovers.empty()) return reply_ok(e.request, e.owner);
      return start_reverse(*b, Operation::release, e.request, "retrying leftovers");
    case BerthState::attaching:
    case BerthState::detaching:
      return reply_busy(e.request, *b);
    case BerthState::reserved:
    case BerthState::failed:
      if (b->done.empty() && b->leftovers.empty()) {
        set_state(*b, BerthState::released);
        drop_target(*b);
        prune_tombstones(b->owner);
        persist_reservation(b->owner);
        return reply_ok(e.request, e.owner);
      }
      break;
    case BerthState::attached:
    case BerthState::degraded:
      break;
  }
  start_reverse(*b, Operation::release, e.request);
}

void Machine::on(const event::StepFinished& e) {
  Berth* b = find(e.owner);
  if (!b || b->op == Operation::none) return;  // a late outcome for an operation that is over
  if (!e.note.empty()) warn(b->owner, e.note);
  if (e.vf) follow_vf(*b, *e.vf);
  bool forward = b->state == BerthState::attaching && b->op_error.empty();
  if (forward) {
    if (!b->in_flight) return;  // no step was asked for: a stray outcome
    b->in_flight.reset();
    if (e.ok) {
      record_success(*b, false, e.undo);
      if (e.vf) {
        // The steps after a rebind name the VF's netdev, RDMA device and nodes as they are now.
        auto fresh = attach_plan(*b, ctx.inventory);
        bool same_start = fresh.size() >= b->done.size();
        for (size_t i = 0; same_start && i < b->done.size(); ++i)
          same_start = fresh[i].index() == b->plan[i].index();
        const bool lost_rdma = e.vf->rdma.empty() &&
                               std::any_of(b->vfs.begin(), b->vfs.end(), [&](const VfBinding& v) {
                                 return v.pci == e.vf->pci && !v.rdma.empty();
                               });
        if (!same_start || lost_rdma) {
          b->op_error = "VF " + e.vf->pci + " came back from its driver rebind " +
                        (lost_rdma ? std::string("without the RDMA device it is to take along")
                                   : std::string("in a shape its steps so far do not fit"));
          return run_next_reverse(*b);
        }
        b->plan = std::move(fresh);
        persist_attachment(b->owner);
      }
      return run_next_forward(*b);
    }
    b->op_error = "step " + std::to_string(b->done.size() + 1) + "/" +
                  std::to_string(b->plan.size()) + " (" + describe(b->plan[b->done.size()]) +
                  ") failed: " + e.error;
    if (e.left_behind) b->done.push_back({b->plan[b->done.size()], e.undo});
    return run_next_reverse(*b);
  }
  // Reverse: the last done step's inverse finished. A failed inverse is kept as a leftover: the
  // berth holds its devices until a retry or reconciliation clears it.
  if (b->done.empty()) return;  // no inverse was asked for: a stray outcome
  if (!e.ok) {
    auto inv = inverse(b->done.back().step, b->done.back().undo);
    std::string what =
        "undo (" + (inv ? describe(*inv) : std::string("?")) + ") failed: " + e.error;
    b->op_error += (b->op_error.empty() ? "" : "; ") + what;
    b->leftovers.push_back(b->done.back());
    warn(b->owner, what);
    b->done.pop_back();
  } else {
    record_success(*b, true, e.undo);
  }
  persist_attachment(b->owner);
  run_next_reverse(*b);
}

void Machine::on(const event::Resume& e) {
  std::set<std::string> gone(e.gone.begin(), e.gone.end());
  for (auto& [owner, b] : ledger.berths) {
    if (e.rebooted) {
      forget_attachment(b);
      continue;
    }
    // A step that was running when the agent died may have been applied: undo it as if it had.
    if (b.in_flight) {
      b.done.push_back({*b.in_flight, ""});
      b.in_flight.reset();
    }
    const bool exited = gone.count(owner) > 0;
    switch (b.state) {
      case BerthState::attaching:
        b.op = Operation::attach;
        b.op_request = 0;
        b.op_error = "the agent restarted during attach";
        persist_attachment(owner);
        run_next_reverse(b);
        break;
      case BerthState::detaching:
        // A release or a detach cut off: finish it (the record says which).
        if (b.op != Operation::release) b.op = Operation::detach;
        b.op_request = 0;
        b.op_error.clear();
        persist_attachment(owner);
        run_next_reverse(b);
        break;
      case BerthState::attached:
      case BerthState::degraded:
        if (exited) {
          start_reverse(b, releases_on_exit(b) ? Operation::release : Operation::detach, 0,
                        "container exited while the agent was down");
        } else if (b.target) {
          b.op = Operation::none;
          actions.push_back(action::Watch{owner, *b.target, true});  // re-adopted, untouched
        }
        break;
      case BerthState::failed:
        b.op = Operation::none;
        if (!b.done.empty() || !b.leftovers.empty())
          start_reverse(b, Operation::detach, 0, "retrying what was left on the host");
        break;
      case BerthState::released:
        b.op = Operation::none;
        if (!b.leftovers.empty())
          start_reverse(b, Operation::release, 0, "retrying what was left on the host");
        break;
      case BerthState::reserved:
        b.op = Operation::none;
        break;
    }
  }
}

void Machine::forget_attachment(Berth& b) {
  const bool had = !b.done.empty() || b.in_flight || !b.leftovers.empty() || b.target;
  b.done.clear();
  b.in_flight.reset();
  b.leftovers.clear();
  b.op = Operation::none;
  b.op_error.clear();
  b.reason.clear();
  const bool was_attached = b.state == BerthState::attached || b.state == BerthState::degraded ||
                            b.state == BerthState::attaching || b.state == BerthState::detaching;
  if (b.state == BerthState::attaching) set_state(b, BerthState::failed);
  if (b.state == BerthState::attached || b.state == BerthState::degraded)
    set_state(b, BerthState::detaching);
  if (b.state == BerthState::detaching || b.state == BerthState::failed) {
    b.error.clear();
    b.target.reset();
    if (was_attached && releases_on_exit(b)) {
      set_state(b, BerthState::released, "the node rebooted");
      prune_tombstones(b.owner);
      persist_reservation(b.owner);
      return;
    }
    set_state(b, BerthState::reserved, "the node rebooted");
  }
  if (had || was_attached) persist_reservation(b.owner);
}

void Machine::on(const event::TargetExited& e) {
  Berth* b = find(e.owner);
  if (!b || !b->target || !same_process(*b->target, e.target)) return;
  if (b->state != BerthState::attached && b->state != BerthState::degraded) return;
  // An attach in flight fails at its next step and rolls back by itself.
  start_reverse(*b, releases_on_exit(*b) ? Operation::release : Operation::detach, 0,
                "container (pid " + std::to_string(e.target.pid) + ") exited");
}

void Machine::follow_vf(Berth& b, const Vf& now) {
  bool known = false;
  for (auto& v : ctx.inventory.vfs) {
    if (v.pci != now.pci) continue;
    known = true;
    v.netdev = now.netdev;
    v.rdma = now.rdma;
    v.devices = now.devices;
    v.driver = now.driver;
    v.infiniband = now.infiniband;
  }
  // A rediscovery that ran while the VF was unbound dropped it: it is back.
  if (!known && !now.pf_pci.empty()) {
    ctx.inventory.vfs.push_back(now);
    if (ctx.inventory.vfs.back().numa < 0) ctx.inventory.vfs.back().numa = 0;
  }
  for (auto& v : b.vfs) {
    if (v.pci != now.pci) continue;
    v.netdev = now.netdev;
    if (!v.rdma.empty() && !now.rdma.empty()) v.rdma = now.rdma;
  }
}

void Machine::on(const event::InventoryChanged& e) {
  ctx.inventory = e.inventory;
  for (auto& [owner, b] : ledger.berths) {
    if (!holds_devices(b)) continue;
    std::vector<std::string> missing;
    for (const auto& g : b.placement.gpus)
      if (!ctx.inventory.gpu_by_id(g)) missing.push_back("GPU " + g);
    for (const auto& v : b.placement.vfs)
      if (!ctx.inventory.vf_by_pci(v)) missing.push_back("VF " + v);
    std::string what;
    for (const auto& m : missing) what += (what.empty() ? "" : ", ") + m;
    if (!missing.empty()) {
      std::string reason = what + " gone from the node";
      if (b.state == BerthState::attached) {
        b.reason = reason;
        set_state(b, BerthState::degraded, reason);
        persist_attachment(owner);
      } else if (b.state == BerthState::degraded && b.reason != reason) {
        b.reason = reason;
        persist_attachment(owner);
        warn(owner, reason);
      } else if (b.state != BerthState::degraded) {
        warn(owner, reason);
      }
    } else if (b.state == BerthState::degraded &&
               b.reason.find(" gone from the node") != std::string::npos) {
      b.reason = "its devices are back; attach it again to the same container to re-attach";
      persist_attachment(owner);
      warn(owner, b.reason);
    }
  }
}

void Machine::on(const event::Fault& e) {
  Berth* b = find(e.owner);
  if (!b) return;
  if (b->state == BerthState::attached) {
    b->reason = e.reason;
    set_state(*b, BerthState::degraded, e.reason);
    persist_attachment(b->owner);
  } else {
    warn(b->owner, e.reason);
  }
}

void Machine::run_next_forward(Berth& b) {
  if (b.done.size() < b.plan.size()) {
    // The intent is saved before the step runs (the engine persists before it performs).
    start_next_forward(b);
    persist_attachment(b.owner);
    actions.push_back(
        action::RunStep{b.owner, *b.target, b.plan[b.done.size()], false, forward_run(b)});
    return;
  }
  b.op = Operation::none;
  set_state(b, BerthState::attached);
  persist_attachment(b.owner);
  reply_ok(b.op_request, b.owner);
}

// Device nodes and rules shared by several berths in one container (the control nodes of two
// berths' GPUs): the last berth to leave takes them away. A berth that leaves first hands its
// duty to remove them to one that stays.
bool Machine::still_needed_by_another(Berth& b, DoneStep& d) {
  auto [owner, od] = sharing(ledger, b, d);
  if (!od) return false;
  if (inverse(d.step, d.undo) && !inverse(od->step, od->undo)) {
    od->undo = d.undo;  // the one that stays now undoes what this one did
    persist_attachment(*owner);
  }
  return true;
}

std::vector<Step> Machine::reverse_run(const Berth& b) {
  std::vector<Step> run;
  for (size_t i = b.done.size() - 1; i-- > 0;) {
    auto inv = inverse(b.done[i].step, b.done[i].undo);
    if (!inv || sharing(ledger, b, b.done[i]).second) break;
    run.push_back(std::move(*inv));
  }
  return run;
}

void Machine::run_next_reverse(Berth& b) {
  while (!b.done.empty()) {
    if (still_needed_by_another(b, b.done.back())) {
      b.done.pop_back();
      continue;
    }
    auto inv = inverse(b.done.back().step, b.done.back().undo);
    if (inv) {
      actions.push_back(
          action::RunStep{b.owner, b.target.value_or(Target{}), *inv, true, reverse_run(b)});
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
  const std::string leftovers = b.leftovers.empty()
                                    ? ""
                                    : "; " + std::to_string(b.leftovers.size()) +
                                          " step(s) left on the host, devices held until cleared";
  if (op == Operation::attach) {
    b.error = b.op_error + (b.leftovers.empty() ? "; rolled back" : leftovers);
    drop_target(b);
    set_state(b, BerthState::failed, b.error);
    persist_attachment(b.owner);
    return reply_error(request, b.owner, ErrorCode::attach_failed, b.error);
  }
  if (op == Operation::reattach && b.op_error.empty()) {
    const Target target = b.target.value_or(Target{});
    set_state(b, BerthState::reserved);
    return start_attach(b, target, request);
  }
  if (op == Operation::release) {
    // The caller wants it gone: free it; what could not be undone stays held as leftovers.
    b.error = b.op_error.empty() ? "" : "released with leftovers: " + b.op_error;
    drop_target(b);
    set_state(b, BerthState::released, b.error);
    prune_tombstones(b.owner);
    persist_reservation(b.owner);
    return reply_ok(request, b.owner);
  }
  if (!b.op_error.empty()) {
    b.error = b.op_error + leftovers;
    set_state(b, BerthState::failed, b.error);
    persist_attachment(b.owner);
    return reply_error(request, b.owner, ErrorCode::detach_failed, b.error);
  }
  drop_target(b);
  b.error.clear();
  b.reason.clear();
  set_state(b, BerthState::reserved);
  persist_attachment(b.owner);
  reply_ok(request, b.owner);
}

void Machine::prune_tombstones(const std::string& keep) {
  std::vector<std::pair<uint64_t, std::string>> released;
  for (const auto& [owner, b] : ledger.berths)
    if (b.state == BerthState::released && b.leftovers.empty() && owner != keep)
      released.emplace_back(b.seq, owner);
  const size_t total = released.size() + 1;  // `keep` counts too
  if (total <= ctx.max_tombstones) return;
  std::sort(released.begin(), released.end());
  for (size_t i = 0; i < total - ctx.max_tombstones; ++i) {
    ledger.berths.erase(released[i].second);
    persist_reservation(released[i].second);  // gone from the ledger: its record goes too
  }
}

}  // namespace

void advance_in_run(Berth& b, bool rollback, const std::string& undo) {
  if (!rollback) b.in_flight.reset();
  record_success(b, rollback, undo);
  if (!rollback && b.done.size() < b.plan.size()) start_next_forward(b);
}

std::vector<Action> apply(Ledger& ledger, Context& ctx, const Event& ev) {
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
