#pragma once
// Fakes of the host actuator's seams: links in namespaces, cgroups, device nodes and containers
// as plain maps, so the actuator's rules run without root.
#include <fcntl.h>
#include <unistd.h>

#include <map>
#include <set>
#include <string>

#include "agent/host/seams.hpp"

namespace berth::testing {

struct FakeLink {
  std::string pci;
  bool up = false;
  int mtu = 1500;
  std::set<std::string> addresses;
};
using FakeNetns = std::map<std::string, FakeLink>;  // by name

class FakeLinkOps : public net::LinkOps {
 public:
  FakeLinkOps(FakeNetns& ns, std::map<int, FakeNetns*>& by_fd) : ns_(ns), by_fd_(by_fd) {}
  bool exists(const std::string& n) override { return ns_.count(n) > 0; }
  Status move_to(const std::string& n, int fd, const std::string& to) override {
    if (!ns_.count(n) || !by_fd_.count(fd)) return missing(n);
    (*by_fd_[fd])[to] = ns_[n];
    ns_.erase(n);
    return ok_status();
  }
  Status rename(const std::string& n, const std::string& to) override {
    if (!ns_.count(n)) return missing(n);
    if (ns_.count(to)) return make_error(ErrorCode::conflict, to + " exists");
    ns_[to] = ns_[n];
    ns_.erase(n);
    return ok_status();
  }
  Status flush_addresses(const std::string& n) override {
    if (!ns_.count(n)) return missing(n);
    ns_[n].addresses.clear();
    return ok_status();
  }
  Expected<int> mtu(const std::string& n) override {
    if (!ns_.count(n)) return missing(n);
    return ns_[n].mtu;
  }
  Status set_mtu(const std::string& n, int m) override {
    if (!ns_.count(n)) return missing(n);
    ns_[n].mtu = m;
    return ok_status();
  }
  Status set_up(const std::string& n, bool up) override {
    if (!ns_.count(n)) return missing(n);
    ns_[n].up = up;
    return ok_status();
  }
  Status add_address(const std::string& n, const std::string& c) override {
    if (!ns_.count(n)) return missing(n);
    ns_[n].addresses.insert(c);
    return ok_status();
  }
  Status del_address(const std::string& n, const std::string& c) override {
    if (ns_.count(n)) ns_[n].addresses.erase(c);
    return ok_status();
  }
  Status add_route(const std::string&, const std::string&, const std::string&) override {
    return ok_status();
  }
  Status del_route(const std::string&, const std::string&, const std::string&) override {
    return ok_status();
  }

 private:
  static Error missing(const std::string& n) {
    return make_error(ErrorCode::internal, "no link named " + n);
  }
  FakeNetns& ns_;
  std::map<int, FakeNetns*>& by_fd_;
};

// The host's namespace and one namespace per fake container, found by the fd the container's
// handle carries.
class FakeLinkSeam : public agent::LinkSeam {
 public:
  FakeNetns host_ns;
  std::map<int, FakeNetns*> by_fd;
  Expected<std::unique_ptr<net::LinkOps>> host() override {
    return std::unique_ptr<net::LinkOps>(new FakeLinkOps(host_ns, by_fd));
  }
  Expected<std::unique_ptr<net::LinkOps>> in(int fd) override {
    if (!by_fd.count(fd)) return make_error(ErrorCode::internal, "no such namespace");
    return std::unique_ptr<net::LinkOps>(new FakeLinkOps(*by_fd[fd], by_fd));
  }
  std::string pci_of(const std::string& n) override {
    return host_ns.count(n) ? host_ns[n].pci : std::string();
  }
  std::vector<std::string> links_of(const std::string& pci) override {
    std::vector<std::string> out;
    for (const auto& [n, l] : host_ns)
      if (l.pci == pci) out.push_back(n);
    return out;
  }
};

class FakeCgroupSeam : public agent::CgroupSeam {
 public:
  std::map<std::string, std::set<std::string>> rules;  // cgroup -> "c M:m"
  std::map<std::string, std::string> cpusets;          // cgroup -> "cpus|mems"
  Expected<bool> allow_device(const std::string& cg, unsigned ma, unsigned mi) override {
    if (fail.erase("allow_device")) return make_error(ErrorCode::internal, "injected");
    return !rules[cg].insert("c " + std::to_string(ma) + ":" + std::to_string(mi)).second;
  }
  Status deny_device(const std::string& cg, unsigned ma, unsigned mi) override {
    if (!rules.count(cg)) return make_error(ErrorCode::internal, "no cgroup " + cg);
    rules[cg].erase("c " + std::to_string(ma) + ":" + std::to_string(mi));
    return ok_status();
  }
  Expected<std::string> set_cpuset(const std::string& cg, const std::string& cpus,
                                   const std::string& mems) override {
    std::string previous = cpusets.count(cg) ? cpusets[cg] : "0-3|0";
    cpusets[cg] = cpus + "|" + mems;
    return previous;
  }
  bool exists(const std::string& controller, const std::string& cg) override {
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
    if (fail.erase("deny_program")) return make_error(ErrorCode::internal, "injected");
    if (!programs.count(cg)) return agent::ProgramChange{};
    const bool had = programs[cg].erase("c " + std::to_string(ma) + ":" + std::to_string(mi));
    return agent::ProgramChange{true, !had, had ? "device program 2 -> 1" : ""};
  }
  std::vector<std::string> holders(const std::string&, unsigned, unsigned) override { return {}; }
  Expected<std::string> set_cpuset_v2(const std::string& cg, const std::string& cpus,
                                      const std::string& mems) override {
    if (!programs.count(cg)) return make_error(ErrorCode::internal, "no cgroup " + cg);
    std::string previous = cpusets_v2.count(cg) ? cpusets_v2[cg] : "|";
    cpusets_v2[cg] = cpus + "|" + mems;
    return previous;
  }
};

class FakeDeviceNodeSeam : public agent::DeviceNodeSeam {
 public:
  std::set<std::string> nodes;
  Expected<bool> make(int, const CharDevice& d) override { return !nodes.insert(d.path).second; }
  Status remove(int, const CharDevice& d) override {
    nodes.erase(d.path);
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
    return h;
  }
  bool alive(const agent::ContainerHandle& h) override {
    auto it = containers.find(h.target.pid);
    return it != containers.end() && it->second.alive;
  }

 private:
  FakeLinkSeam& links_;
};

struct FakeHost {
  FakeLinkSeam links;
  FakeCgroupSeam cgroups;
  FakeDeviceNodeSeam nodes;
  FakeContainerSeam containers{links};
  agent::HostSeams seams() { return {links, cgroups, nodes, containers}; }
};

}  // namespace berth::testing
