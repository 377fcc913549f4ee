// berthd: the node agent. One thread, one io_context; see agent/engine.hpp for the loop.
#include <grp.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>

#include <spdlog/spdlog.h>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <nlohmann/json.hpp>

#include "agent/config.hpp"
#include "agent/control_api.hpp"
#include "agent/discovery.hpp"
#include "agent/engine.hpp"
#include "agent/host_actuator.hpp"
#include "agent/state_store.hpp"
#include "net/http_server.hpp"

namespace {

constexpr const char* kUsage = R"(usage: berthd [--config FILE]
       berthd --check-config FILE
       berthd --help | --version

berthd owns this node's GPUs, InfiniBand/RoCE VFs and NUMA CPUs and hands them to workloads
as berths: reserved by berthctl (or a Slurm prolog, or a CI webhook), attached into a container,
detached and released when the workload ends.

  --config FILE        configuration (JSON); without it every default applies:
                       sysfs_root=/sys dev_root=/dev proc_root=/proc cgroup_root=/sys/fs/cgroup
                       state_dir=/var/lib/berth runtime_dir=/run/berth
                       control_socket=/run/berth/berth.sock
  --check-config FILE  validate FILE, run discovery against it, print the inventory summary
                       and exit 0 (valid) or 1 (the error names the field)

Examples: packaging/examples/*.json. API and CLI: docs/api.md.
)";

struct Prepared {
  berth::agent::Config config;
  berth::agent::Discovery discovery;
  std::optional<gid_t> group;
};

std::optional<Prepared> prepare(const std::string& path) {
  Prepared p;
  if (!path.empty()) {
    auto c = berth::agent::load_config(path);
    if (!c) {
      std::fprintf(stderr, "berthd: %s\n", c.error().message.c_str());
      return std::nullopt;
    }
    p.config = *c;
  }
  if (p.config.control_group) {
    group* g = ::getgrnam(p.config.control_group->c_str());
    if (!g) {
      std::fprintf(stderr, "berthd: config field 'control_group': no group named '%s'\n",
                   p.config.control_group->c_str());
      return std::nullopt;
    }
    p.group = g->gr_gid;
  }
  auto d = berth::agent::discover(p.config);
  if (!d) {
    std::fprintf(stderr, "berthd: discovery under %s failed: %s\n", p.config.sysfs_root.c_str(),
                 d.error().message.c_str());
    return std::nullopt;
  }
  p.discovery = std::move(*d);
  return p;
}

int check_config(const std::string& path) {
  auto p = prepare(path);
  if (!p) return 1;
  const auto& inv = p->discovery.inventory;
  std::printf("config %s is valid: %zu NUMA nodes, %zu GPUs, %zu HCAs, %zu VFs, %zu pools\n",
              path.c_str(), inv.numa_nodes.size(), inv.gpus.size(), inv.hcas.size(), inv.vfs.size(),
              p->config.pools.size());
  for (const auto& w : p->discovery.warnings) std::printf("warning: %s\n", w.c_str());
  return 0;
}

int run(const std::string& path) {
  auto p = prepare(path);
  if (!p) return 1;
  const auto& config = p->config;
  spdlog::set_level(spdlog::level::from_str(config.log_level));
  for (const auto& w : p->discovery.warnings) spdlog::warn("BERTH_DISCOVERY_WARNING {}", w);

  berth::agent::StateStore store(config.state_dir, config.runtime_dir);
  auto ledger = store.load();
  if (!ledger) {
    std::fprintf(stderr, "berthd: %s\n", ledger.error().message.c_str());
    return 1;
  }
  berth::Context ctx;
  ctx.inventory = p->discovery.inventory;
  ctx.pools = config.pools;

  boost::asio::io_context io(1);
  berth::agent::HostActuator actuator(config.cgroup_root);
  berth::agent::Engine engine(io, std::move(ctx), std::move(*ledger), actuator, &store);
  berth::agent::ControlApi api(engine, config, p->group, p->discovery.warnings);

  berth::net::UnixServerOptions options{config.control_socket, config.control_socket_mode,
                                        p->group};
  auto server = berth::net::UnixHttpServer::listen(
      io, options, [&api](berth::net::Request req, berth::net::Peer peer) {
        return api.handle(std::move(req), std::move(peer));
      });
  if (!server) {
    std::fprintf(stderr, "berthd: %s\n", server.error().message.c_str());
    return 1;
  }
  engine.resume();
  const auto& inv = engine.context().inventory;
  spdlog::info(
      "BERTH_STARTED listening on {}: {} NUMA nodes, {} GPUs, {} VFs, {} berths in the ledger",
      config.control_socket, inv.numa_nodes.size(), inv.gpus.size(), inv.vfs.size(),
      engine.ledger().berths.size());

  // On SIGINT/SIGTERM: stop accepting, let operations in flight finish (up to 10 s), then exit.
  boost::asio::signal_set signals(io, SIGINT, SIGTERM);
  boost::asio::steady_timer drain(io);
  auto deadline = std::chrono::steady_clock::now();
  std::function<void()> wait_idle = [&] {
    if (!engine.busy() || std::chrono::steady_clock::now() > deadline) return io.stop();
    drain.expires_after(std::chrono::milliseconds(20));
    drain.async_wait([&](auto) { wait_idle(); });
  };
  signals.async_wait([&](const boost::system::error_code& ec, int sig) {
    if (ec) return;
    spdlog::info("BERTH_STOPPING on signal {}", sig);
    (*server)->stop();
    deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    wait_idle();
  });
  io.run();
  spdlog::info("BERTH_STOPPED");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string config;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    if (a == "--version") {
      std::puts("berthd 0.1.0");
      return 0;
    }
    if ((a == "--config" || a == "--check-config") && i + 1 < argc) {
      if (a == "--check-config") return check_config(argv[i + 1]);
      config = argv[++i];
      continue;
    }
    std::fprintf(stderr, "berthd: unknown or incomplete argument '%s'\n%s", a.c_str(), kUsage);
    return 2;
  }
  try {
    return run(config);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "berthd: fatal: %s\n", e.what());
    return 1;
  }
}
