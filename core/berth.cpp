#include "core/berth.hpp"

#include <nlohmann/json.hpp>

#include "core/cpulist.hpp"
#include "core/pool.hpp"

namespace berth {

std::string pkey_link_name(const VfBinding& v) {
  return v.pkey ? v.ifname + "." + format_pkey(v.pkey) : std::string();
}

std::string_view to_string(BerthState s) {
  switch (s) {
    case BerthState::reserved:
      return "reserved";
    case BerthState::attaching:
      return "attaching";
    case BerthState::attached:
      return "attached";
    case BerthState::degraded:
      return "degraded";
    case BerthState::detaching:
      return "detaching";
    case BerthState::released:
      return "released";
    case BerthState::failed:
      return "failed";
  }
  return "failed";
}

std::optional<BerthState> berth_state_from_string(std::string_view s) {
  for (auto st :
       {BerthState::reserved, BerthState::attaching, BerthState::attached, BerthState::degraded,
        BerthState::detaching, BerthState::released, BerthState::failed})
    if (to_string(st) == s) return st;
  return std::nullopt;
}

bool can_transition(BerthState from, BerthState to) {
  using S = BerthState;
  switch (from) {
    case S::reserved:
      return to == S::attaching || to == S::released;
    case S::attaching:
      return to == S::attached || to == S::failed;
    case S::attached:
      return to == S::detaching || to == S::degraded;
    case S::degraded:
      return to == S::detaching;
    case S::detaching:
      return to == S::reserved || to == S::released || to == S::failed;
    case S::failed:
      return to == S::attaching || to == S::detaching || to == S::reserved || to == S::released;
    case S::released:
      return to == S::detaching;  // only to retry the undo of leftovers
  }
  return false;
}

std::string_view to_string(Operation op) {
  switch (op) {
    case Operation::none:
      return "none";
    case Operation::attach:
      return "attach";
    case Operation::detach:
      return "detach";
    case Operation::release:
      return "release";
    case Operation::reattach:
      return "reattach";
  }
  return "none";
}

void to_json(nlohmann::json& j, const Berth& b) {
  j = nlohmann::json::object();
  j["owner"] = b.owner;
  j["seq"] = b.seq;
  j["state"] = to_string(b.state);
  j["request"] = b.request;
  if (b.owner_uid) j["owner_uid"] = *b.owner_uid;
  j["numa"] = b.placement.numa;
  j["gpus"] = nlohmann::json::array();
  for (const auto& id : b.placement.gpus) {
    // The id, and its PCI address apart for readers that only know whole GPUs.
    nlohmann::json g = {{"id", id}, {"pci", id.substr(0, id.find('/'))}};
    if (id.find('/') != std::string::npos) g["mig"] = id.substr(id.find('/') + 1);
    j["gpus"].push_back(std::move(g));
  }
  j["vfs"] = nlohmann::json::array();
  for (const auto& v : b.vfs) {
    nlohmann::json addrs = nlohmann::json::array();
    for (const auto& a : v.addresses) addrs.push_back(a.to_string());
    j["vfs"].push_back({{"pci", v.pci},
                        {"netdev", v.netdev},
                        {"ifname", v.ifname},
                        {"addresses", addrs},
                        {"pool", v.pool},
                        {"rdma", v.rdma},
                        {"node_guid", v.node_guid},
                        {"port_guid", v.port_guid}});
    if (!v.rebind.empty()) j["vfs"].back()["rebind"] = v.rebind;
    if (v.pkey) j["vfs"].back()["pkey"] = "0x" + format_pkey(v.pkey);
  }
  j["routes"] = nlohmann::json::array();
  for (const auto& r : b.routes)
    j["routes"].push_back({{"dst", r.dst.to_string()}, {"via", r.via.to_string()}});
  j["cpus"] = format_cpulist(b.placement.cpus);
  j["mems"] = format_cpulist(b.placement.mems);
  if (b.target)
    j["target"] = {{"pid", b.target->pid},
                   {"start_time", b.target->start_time},
                   {"runc_id", b.target->runc_id},
                   {"rootfs", b.target->rootfs},
                   {"lxc", b.target->lxc},
                   {"lxcpath", b.target->lxcpath},
                   {"apptainer", b.target->apptainer},
                   {"driver", b.target->driver},
                   {"devices_cgroup", b.target->devices_cgroup},
                   {"cpuset_cgroup", b.target->cpuset_cgroup},
                   {"unified_cgroup", b.target->unified_cgroup},
                   {"netns", b.target->netns},
                   {"mntns", b.target->mntns}};
  else
    j["target"] = nullptr;
  j["plan"] = nlohmann::json::array();
  for (const auto& s : b.plan) j["plan"].push_back(step_to_json(s));
  j["done"] = nlohmann::json::array();
  for (const auto& d : b.done)
    j["done"].push_back({{"step", step_to_json(d.step)}, {"undo", d.undo}});
  if (b.in_flight) j["in_flight"] = step_to_json(*b.in_flight);
  if (!b.leftovers.empty()) {
    j["leftovers"] = nlohmann::json::array();
    for (const auto& d : b.leftovers)
      j["leftovers"].push_back({{"step", step_to_json(d.step)}, {"undo", d.undo}});
  }
  if (!b.error.empty()) j["error"] = b.error;
  if (!b.reason.empty()) j["reason"] = b.reason;
  j["operation"] = to_string(b.op);
}

Operation operation_from_string(std::string_view s) {
  return s == "attach"     ? Operation::attach
         : s == "detach"   ? Operation::detach
         : s == "release"  ? Operation::release
         : s == "reattach" ? Operation::reattach
                           : Operation::none;
}

bool releases_on_exit(const Berth& b) {
  if (b.request.standing || b.owner.starts_with("lab/")) return false;  // follows its container
  if (b.owner.starts_with("github/")) return true;
  if (b.owner.starts_with("slurm/")) return false;
  return b.request.release_on_exit;
}

bool holds_devices(const Berth& b) {
  return b.state != BerthState::released || !b.leftovers.empty();
}

Expected<Berth> berth_from_json(const nlohmann::json& j) {
  try {
    Berth b;
    b.owner = j.at("owner").get<std::string>();
    b.seq = j.at("seq").get<uint64_t>();
    auto st = berth_state_from_string(j.at("state").get<std::string>());
    if (!st)
      return make_error(ErrorCode::bad_request,
                        "unknown state '" + j.at("state").get<std::string>() + "'");
    b.state = *st;
    auto req = parse_request(j.at("request"));
    if (!req) return req.error();
    b.request = *req;
    if (j.contains("owner_uid")) b.owner_uid = j.at("owner_uid").get<unsigned>();
    b.placement.numa = j.at("numa").get<std::vector<int>>();
    for (const auto& g : j.at("gpus"))
      b.placement.gpus.push_back(g.contains("id") ? g.at("id").get<std::string>()
                                                  : g.at("pci").get<std::string>());
    for (const auto& v : j.at("vfs")) {
      VfBinding vb{v.at("pci").get<std::string>(),
                   v.at("netdev").get<std::string>(),
                   v.at("ifname").get<std::string>(),
                   {},
                   v.at("pool").get<std::string>(),
                   v.value("rdma", ""),
                   v.value("node_guid", ""),
                   v.value("port_guid", ""),
                   v.value("rebind", "")};
      if (v.contains("pkey")) {
        auto k = parse_pkey(v.at("pkey").get<std::string>());
        if (!k) return k.error();
        vb.pkey = *k;
      }
      for (const auto& a : v.at("addresses")) {
        auto c = parse_cidr(a.get<std::string>());
        if (!c) return c.error();
        vb.addresses.push_back(*c);
      }
      b.placement.vfs.push_back(vb.pci);
      b.vfs.push_back(std::move(vb));
    }
    for (const auto& r : j.at("routes")) {
      auto dst = parse_cidr(r.at("dst").get<std::string>());
      auto via = parse_ip(r.at("via").get<std::string>());
      if (!dst) return dst.error();
      if (!via) return via.error();
      b.routes.push_back({*dst, *via});
    }
    auto cpus = parse_cpulist(j.at("cpus").get<std::string>());
    auto mems = parse_cpulist(j.at("mems").get<std::string>());
    if (!cpus) return cpus.error();
    if (!mems) return mems.error();
    b.placement.cpus = *cpus;
    b.placement.mems = *mems;
    if (!j.at("target").is_null()) {
      const auto& t = j.at("target");
      b.target = Target{t.at("pid").get<int>(),
                        t.at("start_time").get<uint64_t>(),
                        t.at("runc_id").get<std::string>(),
                        t.value("rootfs", ""),
                        t.value("devices_cgroup", ""),
                        t.value("cpuset_cgroup", ""),
                        t.value("lxc", ""),
                        t.value("lxcpath", ""),
                        t.value("apptainer", ""),
                        t.value("driver", ""),
                        t.value("unified_cgroup", ""),
                        t.value("netns", uint64_t{0}),
                        t.value("mntns", uint64_t{0})};
    }
    for (const auto& s : j.at("plan")) {
      auto step = step_from_json(s);
      if (!step) return step.error();
      b.plan.push_back(*step);
    }
    for (const auto& d : j.at("done")) {
      auto step = step_from_json(d.at("step"));
      if (!step) return step.error();
      b.done.push_back({*step, d.at("undo").get<std::string>()});
    }
    if (j.contains("in_flight")) {
      auto step = step_from_json(j.at("in_flight"));
      if (!step) return step.error();
      b.in_flight = *step;
    }
    if (j.contains("leftovers"))
      for (const auto& d : j.at("leftovers")) {
        auto step = step_from_json(d.at("step"));
        if (!step) return step.error();
        b.leftovers.push_back({*step, d.at("undo").get<std::string>()});
      }
    b.error = j.value("error", "");
    b.reason = j.value("reason", "");
    // The operation that was in flight, so a restart finishes it as what it was (whoever asked
    // has lost the connection; event::Resume settles it).
    b.op = operation_from_string(j.value("operation", "none"));
    return b;
  } catch (const std::exception& e) {
    return make_error(ErrorCode::bad_request, std::string("bad berth record: ") + e.what());
  }
}

}  // namespace berth
