#pragma once
// Fakes of the host actuator's seams: links in namespaces, cgroups, device nodes and containers
// as plain maps, so the actuator's rules run without root.
#include <fcntl.h>
#include <unistd.h>

#include <functional>
#include <map>
#include <set>
#include <string>

#include "agent/host/seams.hpp"
#include "core/guid.hpp"

namespace berth::testing {

// Fault injection across every fake: the k-th call of an OS operation fails (0: none).
struct Faults {
  int fail_at = 0;
  int calls = 0;
  bool hit() { return ++calls == fail_at; }
};
inline Error injected_fault(const std::string& what) {
  return make_error(ErrorCode::internal, "injected failure of " + what);
}
#define BERTH_FAULT(what) \
  if (faults && faults->hit()) return injected_fault(what)

struct FakeLink {
  std::string pci;
  bool up = false;
  int mtu = 1500;
  std::set<std::string> addresses;
  int ifindex = 0;  // 0: the fake gives it one
  std::string driver = "mlx5_core";
  uint16_t pkey = 0;  // an IPoIB child's partition
};
using FakeNetns = std::map<std::string, FakeLink>;  // by name

class FakeLinkOps : public net::LinkOps {
 public:
  // A namespace fd the fake does not know is the host's (the actuator opens its own).
  FakeLinkOps(FakeNetns& ns, std::map<int, FakeNetns*>& by_fd, FakeNetns& host, Faults* f = nullptr)
      : faults(f), ns_(ns), by_fd_(by_fd), host_(host) {}
  Faults* faults;
  // Every lookup fails (a netlink socket that cannot be read), as it would on ENOBUFS.
  const bool* fail_lookups = nullptr;
  Expected<bool> exists(const std::string& n) override {
    if (fail_lookups && *fail_lookups)
      return make_error(ErrorCode::internal, "cannot look up link " + n);
    return ns_.count(n) > 0;
  }
  Expected<net::LinkIdentity> identity(const std::string& n) override {
    BERTH_FAULT("identity " + n);
    if (!ns_.count(n)) return missing(n);
    auto& l = ns_[n];
    if (l.ifindex == 0) l.ifindex = static_cast<int>(std::hash<std::string>{}(n) % 1000) + 10;
    return net::LinkIdentity{l.ifindex, l.driver, l.pci};
  }
  Expected<std::string> name_of(int ifindex) override {
    for (auto& [n, l] : ns_)
      if (l.ifindex == ifindex) return n;
    return std::string();
  }
  Status move_index(int ifindex, int fd, const std::string& to) override {
    auto n = name_of(ifindex);
    if (n->empty()) return missing("#" + std::to_string(ifindex));
    return move_to(*n, fd, to);
  }
  Status move_to(const std::string& n, int fd, const std::string& to) override {
    BERTH_FAULT("move_to " + n);
    if (!ns_.count(n)) return missing(n);
    FakeNetns& there = by_fd_.count(fd) ? *by_fd_[fd] : host_;
    if (there.count(to)) return make_error(ErrorCode::conflict, to + " exists there");
    there[to] = ns_[n];
    ns_.erase(n);
    return ok_status();
  }
  Status rename(const std::string& n, const std::string& to) override {
    BERTH_FAULT("rename " + n);
    if (!ns_.count(n)) return missing(n);
    if (ns_.count(to)) return make_error(ErrorCode::conflict, to + " exists");
    ns_[to] = ns_[n];
    ns_.erase(n);
    return ok_status();
  }
  Status flush_addresses(const std::string& n) override {
    BERTH_FAULT("flush_addresses " + n);
    if (!ns_.count(n)) return missing(n);
    ns_[n].addresses.clear();
    return ok_status();
  }
  Expected<int> mtu(const std::string& n) override {
    if (!ns_.count(n)) return missing(n);
    return ns_[n].mtu;
  }
  Status set_mtu(const std::string& n, int m) override {
    BERTH_FAULT("set_mtu " + n);
    if (!ns_.count(n)) return missing(n);
    ns_[n].mtu = m;
    return ok_status();
  }
  Status set_up(const std::string& n, bool up) override {
    BERTH_FAULT("set_up " + n);
    if (!ns_.count(n)) return missing(n);
    ns_[n].up = up;
    return ok_status();
  }
  Status add_address(const std::string& n, const std::string& c) override {
    BERTH_FAULT("add_address " + n);
    if (!ns_.count(n)) return missing(n);
    ns_[n].addresses.insert(c);
    return ok_status();
  }
  Status del_address(const std::string& n, const std::string& c) override {
    BERTH_FAULT("del_address " + n);
    if (ns_.count(n)) ns_[n].addresses.erase(c);
    return ok_status();
  }
  Status add_route(const std::string&, const std::string&, const std::string&) override {
    return ok_status();
  }
  Status del_route(const std::string&, const std::string&, const std::string&) override {
    return ok_status();
  }
  Status add_pkey_child(const std::string& parent, const std::string& n, uint16_t pkey) override {
    BERTH_FAULT("add_pkey_child " + n);
    if (!ns_.count(parent)) return missing(parent);
    if (ns_.count(n)) return make_error(ErrorCode::conflict, n + " exists");
    FakeLink child;
    child.pci = ns_[parent].pci;
    child.driver = "ib_ipoib";
    child.pkey = pkey;
    child.ifindex = 2000 + static_cast<int>(ns_.size());
    ns_[n] = child;
    return ok_status();
  }
  Status delete_index(int ifindex) override {
    BERTH_FAULT("delete_index " + std::to_string(ifindex));
    for (auto it = ns_.begin(); it != ns_.end(); ++it)
      if (it->second.ifindex == ifindex) {
        ns_.erase(it);
        break;
      }
    return ok_status();
  }

 private:
  static Error missing(const std::string& n) {
    return make_error(ErrorCode::internal, "no link named " + n);
  }
  FakeNetns& ns_;
  std::map<int, FakeNetns*>& by_fd_;
  FakeNetns& host_;
};

// The host's namespace and one namespace per fake container, found by the fd the container's
// handle carries.
class FakeLinkSeam : public agent::LinkSeam {
 public:
  Faults* faults = nullptr;
  FakeNetns host_ns;
  std::map<int, FakeNetns*> by_fd;
  bool fail_lookups = false;  // every FakeLinkOps handed out fails its lookups
  Expected<std::unique_ptr<net::LinkOps>> host() override {
    auto* ops = new FakeLinkOps(host_ns, by_fd, host_ns, faults);
    ops->fail_lookups = &fail_lookups;
    return std::unique_ptr<net::LinkOps>(ops);
  }
  Expected<std::unique_ptr<net::LinkOps>> in(int fd) override {
    if (!by_fd.count(fd)) return make_error(ErrorCode::internal, "no such namespace");
    auto* ops = new FakeLinkOps(*by_fd[fd], by_fd, host_ns, faults);
    ops->fail_lookups = &fail_lookups;
    return std::unique_ptr<net::LinkOps>(ops);
  }
  std::string pci_of(const std::string& n) override {
    return host_ns.count(n) ? host_ns[n].pci : std::string();
  }
  // VF PCI -> "<node>|<port>"; the calls, in order, as "<pf> vf <n> node|port <guid>".
  std::map<std::string, std::string> guids;
  std::vector<std::string> guid_calls;
  std::map<std::string, std::string> guid_state;  // "<pf>#<vf>" -> "<node>|<port>"
  bool fail_port_guid = false;
  Expected<std::string> vf_guids(const std::string& vf_pci) override {
    return guids.count(vf_pci) ? guids[vf_pci]
                               : std::string("ff:ff:ff:ff:ff:ff:ff:ff|ff:ff:ff:ff:ff:ff:ff:ff");
  }
  Status set_vf_guid(const std::string& pf, int vf, uint64_t guid, bool port) override {
    if (port && fail_port_guid) return make_error(ErrorCode::internal, "injected");
    BERTH_FAULT("set_vf_guid");
    // The VF of `pf` with index `vf` is found by the calls' order only; the state kept is per PF
    // and index.
    auto& g = guid_state[pf + "#" + std::to_string(vf)];
    if (g.empty()) g = "ff:ff:ff:ff:ff:ff:ff:ff|ff:ff:ff:ff:ff:ff:ff:ff";
    const auto bar = g.find('|');
    g = port ? g.substr(0, bar) + "|" + format_guid(guid) : format_guid(guid) + g.substr(bar);
    guid_calls.push_back(pf + " vf " + std::to_string(vf) + (port ? " port " : " node ") +
                         format_guid(guid));
    return ok_status();
  }
  std::map<std::string, int> link_states;  // "<pf>#<vf>" -> state
  Status set_vf_link_state(const std::string& pf, int vf, int state) override {
    BERTH_FAULT("set_vf_link_state");
    guid_calls.push_back(pf + " vf " + std::to_string(vf) + " link " + std::to_string(state));
    if (state == 0)
      link_states.erase(pf + "#" + std::to_string(vf));
    else
      link_states[pf + "#" + std::to_string(vf)] = state;
    return ok_status();
  }
  std::vector<std::string> links_of(const std::string& pci) override {
    std::vector<std::string> out;
    for (const auto& [n, l] : host_ns)
      if (l.pci == pci) out.push_back(n);
    return out;
  }
  // A rebind renames the VF's host link to rebound[pci].netdev (when given) and reports that VF;
  // the call is logged in guid_calls as "rebind <pci> <driver>".
  std::map<std::string, Vf> rebound;
  int fail_rebinds = 0;  // the next N rebinds fail
  Expected<Vf> rebind_vf(const std::string& pci, const std::string& driver) override {
    guid_calls.push_back("rebind " + pci + " " + driver);
    BERTH_FAULT("rebind_vf");
    if (fail_rebinds > 0) {
      --fail_rebinds;
      return make_error(ErrorCode::internal, "injected: no netdev after binding " + driver);
    }
    Vf v = rebound.count(pci) ? rebound[pci] : Vf{};
    v.pci = pci;
    v.driver = driver;
    for (auto it = host_ns.begin(); it != host_ns.end(); ++it) {
      if (it->second.pci != pci) continue;
      if (v.netdev.empty()) v.netdev = it->first;
      if (v.netdev != it->first) {
        FakeLink l = it->second;
        l.ifindex = 0;  // a new netdev: a new ifindex
        host_ns.erase(it);
        host_ns[v.netdev] = l;
      }
      break;
    }
    return v;
  }
};

class FakeCgroupSeam : public agent::CgroupSeam {
 public:
  Faults* faults = nullptr;
  std::map<std::string, std::set<std::string>> rules;  // cgroup -> "c M:m"
  std::map<std::string, std::string> cpusets;          // cgroup -> "cpus|mems"
  Expected<bool> allow_device(const std::string& cg, unsigned ma, unsigned mi) override {
    BERTH_FAULT("allow_device");
    if (fail.erase("allow_device")) return make_error(ErrorCode::internal, "injected");
    return !rules[cg].insert("c " + std::to_string(ma) + ":" + std::to_string(mi)).second;
  }
  Status deny_device(const std::string& cg, unsigned ma, unsigned mi) override {
    BERTH_FAULT("deny_device");
    if (!rules.count(cg)) return make_error(ErrorCode::internal, "no cgroup " + cg);
    rules[cg].erase("c " + std::to_string(ma) + ":" + std::to_string(mi));
    return ok_status();
  }
  Expected<std::string> set_cpuset(const std::string& cg, const std::string& cpus,
                                   const std::string& mems) override {
    BERTH_FAULT("set_cpuset");
    std::string previous = cpusets.count(cg) ? cpusets[cg] : "0-3|0";
    cpusets[cg] = cpus + "|" + mems;
    return previous;
  }
  int dirs_forgotten = 0;
  void forget_dirs() override { ++dirs_forgotten; }
  bool fail_exists = false;  // looking fails (EMFILE, EACCES), as opposed to "not there"
  Expected<bool> exists(const std::string& controller, const std::string& cg) override {
    if (fail_exists) return make_error(ErrorCode::internal, "cannot open cgroup " + cg);
    if (controller == "unified") return programs.count(cg) > 0;
    return rules.count(cg) > 0;
  }

  // cgroup v2: a cgroup listed here has a device program; the set holds berth's devices in it,
  // `program_allows` what the runtime's own program allows.
  std::map<std::string, std::set<std::string>> programs;
  std::set<std::string> program_allows;
  std::set<std::string> fail;  // "allow_program", "deny_program", "allow_device": fail once
  std::map<std::string, std::string> cpusets_v2;
  Expected<agent::ProgramChange> allow_program(const std::string& cg, unsigned ma,
                                               unsigned mi) override {
    BERTH_FAULT("allow_program");
    if (fail.erase("allow_program")) return make_error(ErrorCode::internal, "injected");
    if (!programs.count(cg)) return agent::ProgramChange{};
    const std::string dev = "c " + std::to_string(ma) + ":" + std::to_string(mi);
    if (program_allows.count(dev) || programs[cg].count(dev))
      return agent::ProgramChange{true, true, ""};
    programs[cg].insert(dev);
    return agent::ProgramChange{true, false, "device program 1 -> 2"};
  }
  Expected<agent::ProgramChange> deny_program(const std::string& cg, unsigned ma,
                                              unsigned mi) override {
    BERTH_FAULT("deny_program");
    if (fail.erase("deny_program")) return make_error(ErrorCode::internal, "injected");
    if (!programs.count(cg)) return agent::ProgramChange{};
    const bool had = programs[cg].erase("c " + std::to_string(ma) + ":" + std::to_string(mi));
    return agent::ProgramChange{true, !had, had ? "device program 2 -> 1" : ""};
  }
  agent::HeldDevices held;  // what the container's processes hold open
  int held_reads = 0;       // passes over their descriptors
  agent::HeldDevices held_devices(const std::string&) override {
    ++held_reads;
    return held;
  }
  Expected<std::optional<bool>> device_programs_allow(const std::string& cg, unsigned ma,
                                                      unsigned mi) override {
    if (!programs.count(cg)) return std::optional<bool>{};
    const std::string dev = "c " + std::to_string(ma) + ":" + std::to_string(mi);
    return std::optional<bool>{program_allows.count(dev) > 0 || programs[cg].count(dev) > 0};
  }
  Expected<std::string> set_cpuset_v2(const std::string& cg, const std::string& cpus,
                                      const std::string& mems) override {
    BERTH_FAULT("set_cpuset_v2");
    if (!programs.count(cg)) return make_error(ErrorCode::internal, "no cgroup " + cg);
    std::string previous = cpusets_v2.count(cg) ? cpusets_v2[cg] : "|";
    cpusets_v2[cg] = cpus + "|" + mems;
    return previous;
  }
};

class FakeDeviceNodeSeam : public agent::DeviceNodeSeam {
 public:
  Faults* faults = nullptr;
  std::set<std::string> nodes;
  std::set<std::string> bound;  // bind mounts of the host's node
  Expected<agent::NodeMade> make(int, const CharDevice& d) override {
    BERTH_FAULT("make node " + d.path);
    return agent::NodeMade{!nodes.insert(d.path).second, 0};
  }
  Expected<agent::NodeMade> bind(int, const agent::UserNs&, const CharDevice& d) override {
    BERTH_FAULT("bind node " + d.path);
    if (nodes.count(d.path)) return agent::NodeMade{true, 0, true};
    return agent::NodeMade{!bound.insert(d.path).second, 0, true};
  }
  Status remove(int, const CharDevice& d, int, const agent::UserNs* ns) override {
    BERTH_FAULT("remove node " + d.path);
    (ns ? bound : nodes).erase(d.path);
    return ok_status();
  }
};

// Containers by pid: alive or not, each with its own links namespace.
class FakeContainerSeam : public agent::ContainerSeam {
 public:
  explicit FakeContainerSeam(FakeLinkSeam& links) : links_(links) {}
  ~FakeContainerSeam() override {
    for (auto& [pid, c] : containers) ::close(c.token);
  }
  struct Container {
    bool alive = true;
    int token = -1;  // stands for the namespace fd
    FakeNetns ns;
    int member_of = 0;    // another process of the container of this pid (same namespaces)
    bool userns = false;  // in a user namespace of its own
  };
  std::map<int, Container> containers;
  Container& add(int pid) {
    auto& c = containers[pid];
    c.token = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    links_.by_fd[c.token] = &c.ns;
    return c;
  }
  Expected<agent::ContainerHandle> open(const Target& t) override {
    auto it = containers.find(t.pid);
    if (it == containers.end() || !it->second.alive)
      return make_error(ErrorCode::target_not_found, "pid " + std::to_string(t.pid) + " is gone");
    agent::ContainerHandle h;
    h.target = t;
    h.netns.reset(::dup(it->second.token));
    links_.by_fd[h.netns.get()] = &it->second.ns;
    h.devices_cgroup = t.devices_cgroup;
    h.cpuset_cgroup = t.cpuset_cgroup;
    h.unified_cgroup = t.unified_cgroup;
    if (it->second.userns) h.userns_mntns.reset(::dup(it->second.token));
    return h;
  }
  Expected<agent::ContainerHandle> open_member(const Target& t) override {
    for (auto& [pid, c] : containers)
      if (c.alive && c.member_of == t.pid) {
        Target member = t;
        member.pid = pid;
        return open(member);
      }
    return make_error(ErrorCode::target_not_found, "no process of its container is left");
  }
  bool alive(const agent::ContainerHandle& h) override {
    auto it = containers.find(h.target.pid);
    return it != containers.end() && it->second.alive;
  }

 private:
  FakeLinkSeam& links_;
};

// RDMA devices by the namespace (fd, -1 for the host) they are in.
class FakeRdmaSeam : public agent::RdmaSeam {
 public:
  Faults* faults = nullptr;
  std::map<std::string, int> where;  // device -> netns fd
  std::set<std::string> fail;        // devices whose next move fails
  Status move(const std::string& d, int from, int to) override {
    BERTH_FAULT("move RDMA device " + d);
    if (fail.erase(d)) return make_error(ErrorCode::internal, "injected");
    auto it = where.find(d);
    if (it == where.end() || !same_ns(it->second, from))
      return make_error(ErrorCode::internal, "RDMA device " + d + " is not in that namespace");
    it->second = to;
    return ok_status();
  }
  Expected<bool> present(const std::string& d, int ns) override {
    auto it = where.find(d);
    return it != where.end() && same_ns(it->second, ns);
  }
  // Fds of one namespace differ from handle to handle; the fake compares them by what they
  // stand for, the container's token, through the links fake.
  std::function<bool(int, int)> same_ns = [](int a, int b) { return a == b; };
};

// LXC's rule list per container ("lxcpath:name" -> "c M:m"), changed as lxc-cgroup would.
class FakeRuntimeDeviceSeam : public agent::RuntimeDeviceSeam {
 public:
  Faults* faults = nullptr;
  std::map<std::string, std::set<std::string>> lxc_rules;
  std::vector<std::string> calls;
  bool fail_next = false;
  Status lxc(const std::string& lxcpath, const std::string& name, bool allow, unsigned ma,
             unsigned mi) override {
    BERTH_FAULT("lxc-cgroup");
    const std::string dev = "c " + std::to_string(ma) + ":" + std::to_string(mi);
    calls.push_back(std::string(allow ? "allow " : "deny ") + lxcpath + ":" + name + " " + dev);
    if (fail_next) {
      fail_next = false;
      return make_error(ErrorCode::attach_failed, "LXC did not allow " + dev);
    }
    auto& rules = lxc_rules[lxcpath + ":" + name];
    if (allow)
      rules.insert(dev);
    else
      rules.erase(dev);
    return ok_status();
  }
  // systemd's units and their DeviceAllow=; a unit not listed is unknown to systemd.
  std::map<std::string, agent::DeviceAllowList> units;
  bool no_systemd = false;
  Expected<agent::DeviceAllowList> device_allow(const std::string& unit) override {
    BERTH_FAULT("systemd GetUnit");
    if (no_systemd) return make_error(ErrorCode::host_unsupported, "systemd: no bus");
    auto it = units.find(unit);
    if (it == units.end()) return make_error(ErrorCode::target_not_found, "no unit " + unit);
    return it->second;
  }
  Status set_device_allow(const std::string& unit, const agent::DeviceAllowList& list) override {
    BERTH_FAULT("systemd SetUnitProperties");
    units[unit] = list;
    return ok_status();
  }
};

struct FakeHost {
  FakeHost() {
    links.faults = cgroups.faults = nodes.faults = rdma.faults = runtimes.faults = &faults;
    rdma.same_ns = [this](int a, int b) {
      if (a == b) return true;
      auto ia = links.by_fd.find(a);
      auto ib = links.by_fd.find(b);
      return ia != links.by_fd.end() && ib != links.by_fd.end() && ia->second == ib->second;
    };
  }
  FakeHost(const FakeHost&) = delete;
  FakeHost& operator=(const FakeHost&) = delete;
  Faults faults;
  FakeLinkSeam links;
  FakeCgroupSeam cgroups;
  FakeDeviceNodeSeam nodes;
  FakeContainerSeam containers{links};
  FakeRdmaSeam rdma;
  FakeRuntimeDeviceSeam runtimes;
  agent::HostSeams seams() { return {links, cgroups, nodes, containers, rdma, runtimes}; }
};

}  // namespace berth::testing
