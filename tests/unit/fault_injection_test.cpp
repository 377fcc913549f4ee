// Every OS operation of an attach fails in turn, on fakes of every OS interface (links, cgroups
// v1 and v2, device nodes, RDMA netlink, VF GUIDs and driver rebinds): the attach fails with that error and the host
// after the rollback equals the host before.
#include <gtest/gtest.h>

#include <sstream>

#include <boost/asio/io_context.hpp>
#include <nlohmann/json.hpp>

#include "agent/app/engine.hpp"
#include "agent/host/host_actuator.hpp"
#include "tests/fakes/engine_call.hpp"
#include "tests/fakes/fake_host.hpp"
#include "tests/fakes/inventories.hpp"

namespace berth::agent {
namespace {

constexpr int kPid = 42;

Context context() {
  Context ctx;
  ctx.inventory = testing::two_socket(2);
  ctx.inventory.rdma_netns = "exclusive";
  for (auto& vf : ctx.inventory.vfs) {
    vf.rdma = "mlx5_" + std::to_string(vf.vf_index + 2);
    vf.infiniband = true;
    vf.driver = "mlx5_core";  // rebound after its GUIDs are set
  }
  ctx.node_name = "gpu01";
  ctx.pools["grid"] = *parse_pool_config(nlohmann::json::parse(
      R"({"name":"grid","subnet":"10.77.0.0/24","ranges":["10.77.0.10-10.77.0.20"],"gateway":"10.77.0.1"})"));
  return ctx;
}

// A container with cgroups in both versions (a v1 devices list and a v2 device program), and
// the host's VFs, their RDMA devices and GUIDs.
void set_up(testing::FakeHost& host, const Context& ctx) {
  host.containers.add(kPid);
  host.cgroups.rules["/berth/c1"] = {};
  host.cgroups.programs["/berth/c1"] = {};
  for (const auto& vf : ctx.inventory.vfs) {
    host.links.host_ns[vf.netdev] = {vf.pci, false, 1500, {}, 100 + vf.vf_index, "mlx5_core"};
    host.rdma.where[vf.rdma] = -1;
    host.links.rebound[vf.pci] = vf;  // back from a rebind as it was
  }
}

Target target() {
  Target t;
  t.pid = kPid;
  t.start_time = 7;
  t.devices_cgroup = "/berth/c1";
  t.cpuset_cgroup = "/berth/c1";
  t.unified_cgroup = "/berth/c1";
  return t;
}

std::string state(const testing::FakeHost& host) {
  std::ostringstream s;
  auto links = [&](const char* where, const testing::FakeNetns& ns) {
    for (const auto& [name, l] : ns) {
      s << where << " " << name << " pci=" << l.pci << " up=" << l.up << " mtu=" << l.mtu
        << " ifindex=" << l.ifindex;
      for (const auto& a : l.addresses) s << " " << a;
      s << "\n";
    }
  };
  links("host", host.links.host_ns);
  for (const auto& [pid, c] : host.containers.containers) links("container", c.ns);
  for (const auto& [cg, rules] : host.cgroups.rules)
    for (const auto& r : rules) s << "v1 " << cg << " " << r << "\n";
  for (const auto& [cg, devs] : host.cgroups.programs)
    for (const auto& d : devs) s << "v2 " << cg << " " << d << "\n";
  for (const auto& [cg, v] : host.cgroups.cpusets) s << "cpuset " << cg << " " << v << "\n";
  for (const auto& [cg, v] : host.cgroups.cpusets_v2) s << "cpuset2 " << cg << " " << v << "\n";
  for (const auto& n : host.nodes.nodes) s << "node " << n << "\n";
  for (const auto& [d, fd] : host.rdma.where)
    s << "rdma " << d << (fd == -1 ? " host" : " away") << "\n";
  for (const auto& [vf, g] : host.links.guid_state) s << "guid " << vf << " " << g << "\n";
  for (const auto& [vf, st] : host.links.link_states) s << "link state " << vf << " " << st << "\n";
  return s.str();
}

BerthRequest request() {
  BerthRequest r;
  r.gpu_count = 1;
  r.vf_count = 1;
  r.network.pool = "grid";
  r.network.mtu = 4000;
  return r;
}

TEST(FaultInjection, EachOsOperationFailingInTurnLeavesTheHostAsBefore) {
  const Context ctx = context();
  int operations = 0;
  {
    // A clean attach counts the operations; a clean detach puts everything back.
    boost::asio::io_context io;
    testing::FakeHost host;
    set_up(host, ctx);
    HostActuator actuator(host.seams());
    Engine engine(io, ctx, {}, actuator, nullptr);
    ASSERT_FALSE(testing::call(io, engine, event::Create{0, "slurm/1", request()}).first);
    // Unset GUIDs are what the fake reports before any set; after the detach the state holds
    // the ones put back, so compare from after one full cycle.
    auto [ae, av] = testing::call(io, engine, event::Attach{0, "slurm/1", target()});
    ASSERT_FALSE(ae) << ae->message;
    operations = host.faults.calls;
    auto [de, dv] = testing::call(io, engine, event::Detach{0, "slurm/1"});
    ASSERT_FALSE(de) << de->message;
  }
  ASSERT_GE(operations, 12);
  for (int k = 1; k <= operations; ++k) {
    boost::asio::io_context io;
    testing::FakeHost host;
    set_up(host, ctx);
    HostActuator actuator(host.seams());
    Engine engine(io, ctx, {}, actuator, nullptr);
    ASSERT_FALSE(testing::call(io, engine, event::Create{0, "slurm/1", request()}).first);
    const std::string before = state(host);
    host.faults.fail_at = k;
    auto [e, v] = testing::call(io, engine, event::Attach{0, "slurm/1", target()});
    ASSERT_TRUE(e) << "operation " << k << " failed but the attach did not";
    EXPECT_EQ(e->code, ErrorCode::attach_failed);
    EXPECT_NE(e->message.find("injected failure of"), std::string::npos) << e->message;
    EXPECT_NE(e->message.find("rolled back"), std::string::npos) << e->message;
    std::string after = state(host);
    // GUIDs the rollback put back are the "unset" ones the fake reported at first.
    std::string normalized;
    std::istringstream lines(after);
    for (std::string line; std::getline(lines, line);)
      if (line.find("guid ") != 0 ||
          line.find("ff:ff:ff:ff:ff:ff:ff:ff|ff:ff:ff:ff:ff:ff:ff:ff") == std::string::npos)
        normalized += line + "\n";
    EXPECT_EQ(normalized, before) << "after operation " << k << " of " << operations
                                  << " failed: " << e->message;
  }
}

}  // namespace
}  // namespace berth::agent
