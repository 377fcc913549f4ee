#include "bench/engine_cycle.hpp"

#include <cstdio>
#include <optional>

#include <spdlog/spdlog.h>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

#include "agent/app/config.hpp"
#include "agent/app/engine.hpp"
#include "agent/app/stay_awake.hpp"
#include "agent/app/worker.hpp"
#include "agent/host/container.hpp"
#include "agent/host/discovery.hpp"
#include "agent/host/host_actuator.hpp"
#include "agent/host/real_host.hpp"
#include "agent/host/state_store.hpp"
#include "core/plan.hpp"

namespace berth::bench {

EngineCycles engine_gpu_cycles(const std::string& fixture, const std::string& state_dir,
                               const std::string& runtime_dir, int pid, int cycles) {
  agent::Config config;
  config.sysfs_root = fixture + "/sys";
  config.dev_root = fixture + "/dev";
  config.proc_root = fixture + "/proc";
  spdlog::set_level(spdlog::level::warn);  // berthd's level in the runs beside it
  auto found = agent::discover(config);
  if (!found) {
    std::fprintf(stderr, "engine cycle: %s\n", found.error().message.c_str());
    return {};
  }
  Context ctx;
  ctx.inventory = found->inventory;
  boost::asio::io_context io(1);
  auto guard = boost::asio::make_work_guard(io);
  agent::Worker worker;
  agent::StateStore store(state_dir, runtime_dir);
  agent::HostActuator actuator(
      agent::HostPaths{"/sys/fs/cgroup", config.sysfs_root, config.dev_root, "", "lxc-cgroup"});
  agent::Engine engine(io, ctx, {}, actuator, &store, &worker);
  auto call = [&](Event ev) {
    std::optional<std::optional<Error>> answer;
    engine.submit(std::move(ev), [&](std::optional<Error> e, const nlohmann::json&) {
      answer.emplace(std::move(e));
    });
    agent::run_staying_awake_until(
        io, [&] { return answer.has_value(); },
        [&] { return engine.awaiting_worker(); },  // as berthd runs
        agent::kReactorStayAwake);
    if (*answer) std::fprintf(stderr, "engine cycle: %s\n", (*answer)->message.c_str());
    return !*answer;
  };
  BerthRequest r;
  r.gpu_count = 1;
  const std::string owner = "manual/engine";
  if (!call(event::Create{0, owner, r})) return {};
  // Resolved as the control API resolves it before the attach reaches the engine (its start
  // time, cgroups and namespaces); a bare pid would be resolved again at every step.
  auto opened = agent::open_container(Target{pid, 0, ""});
  if (!opened) return {};
  Target target = opened->target;
  if (auto start = agent::process_start_time(pid)) target.start_time = *start;
  target.devices_cgroup = opened->devices_cgroup;
  target.cpuset_cgroup = opened->cpuset_cgroup;
  target.unified_cgroup = opened->unified_cgroup;
  auto [netns, mntns] = agent::container_namespaces(pid);
  target.netns = netns;
  target.mntns = mntns;
  auto cycle = [&] {
    auto start = Clock::now();
    bool ok = call(event::Attach{0, owner, target}) && call(event::Detach{0, owner});
    return ok ? ms_since(start) : -1.0;
  };
  cycle();  // warm-up
  std::vector<double> runs, one_by_one;
  for (int i = 0; i < 2 * cycles; ++i) {
    engine.set_step_runs(i % 2 == 0);
    if (double m = cycle(); m >= 0) (i % 2 == 0 ? runs : one_by_one).push_back(m);
  }
  engine.set_step_runs(true);
  call(event::Release{0, owner});
  return {summarize(runs), summarize(one_by_one)};
}

Summary actuator_gpu_cycles(const std::string& fixture, int pid, int cycles) {
  agent::Config config;
  config.sysfs_root = fixture + "/sys";
  config.dev_root = fixture + "/dev";
  config.proc_root = fixture + "/proc";
  auto found = agent::discover(config);
  if (!found || found->inventory.gpus.empty()) return {};
  agent::HostActuator actuator(
      agent::HostPaths{"/sys/fs/cgroup", config.sysfs_root, config.dev_root, "", "lxc-cgroup"});
  Berth b;
  b.placement.gpus = {found->inventory.gpus.front().pci};
  b.placement.cpus = {0};
  b.placement.mems = {0};
  const auto plan = attach_plan(b, found->inventory);
  auto target = agent::open_container(Target{pid, 0, ""});
  if (!target) return {};
  Target t = target->target;
  t.unified_cgroup = target->unified_cgroup;  // as the control API records it at attach
  auto cycle = [&] {
    auto start = Clock::now();
    std::vector<std::string> undo;
    for (const auto& s : plan) {
      auto out = actuator.run(s, t, false);
      if (!out.ok) {
        std::fprintf(stderr, "actuator cycle: %s: %s\n", describe(s).c_str(), out.error.c_str());
        return -1.0;
      }
      undo.push_back(out.undo);
    }
    std::vector<std::pair<unsigned, unsigned>> revoked;
    for (size_t i = plan.size(); i-- > 0;)
      if (auto inv = inverse(plan[i], undo[i])) {
        if (!actuator.run(*inv, t, true).ok) return -1.0;
        if (const auto* deny = std::get_if<step::DenyDevice>(&*inv))
          revoked.emplace_back(deny->major, deny->minor);
      }
    // As the engine does after the detach's reply: part of what a cycle costs the node.
    (void)actuator.still_open(t, revoked);
    actuator.idle();
    return ms_since(start);
  };
  cycle();
  std::vector<double> ms;
  for (int i = 0; i < cycles; ++i)
    if (double m = cycle(); m >= 0) ms.push_back(m);
  return summarize(ms);
}

}  // namespace berth::bench
