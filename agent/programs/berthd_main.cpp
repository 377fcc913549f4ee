// berthd: the node agent. One thread, one io_context; see agent/engine.hpp for the loop.
#include <grp.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <string>

#include <spdlog/spdlog.h>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <nlohmann/json.hpp>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/sinks/systemd_sink.h>
#include <sys/stat.h>

#include "agent/app/cdi_writer.hpp"
#include "agent/app/config.hpp"
#include "agent/app/control_api.hpp"
#include "agent/app/engine.hpp"
#include "agent/app/event_bus.hpp"
#include "agent/app/machine_watch.hpp"
#include "agent/app/metrics.hpp"
#include "agent/app/runner_service.hpp"
#include "agent/app/service_notify.hpp"
#include "agent/app/standing.hpp"
#include "agent/app/stay_awake.hpp"
#include "agent/app/usage_view.hpp"
#include "agent/app/worker.hpp"
#include "agent/host/container.hpp"
#include "agent/host/device_nodes.hpp"
#include "agent/host/discovery.hpp"
#include "agent/host/exit_watcher.hpp"
#include "agent/host/host_actuator.hpp"
#include "agent/host/state_store.hpp"
#include "net/http_server.hpp"
#include "net/rdma_netlink.hpp"

namespace {

constexpr const char* kUsage = R"(usage: berthd [--config FILE] [--recover]
       berthd --check-config FILE
       berthd --help | --version

berthd owns this node's GPUs, InfiniBand/RoCE VFs and NUMA CPUs and hands them to workloads
as berths: reserved by berthctl (or a Slurm prolog, or a CI webhook), attached into a container,
detached and released when the workload ends.

  --config FILE        configuration (JSON); without it every default applies:
                       sysfs_root=/sys dev_root=/dev proc_root=/proc cgroup_root=/sys/fs/cgroup
                       state_dir=/var/lib/berth runtime_dir=/run/berth
                       control_socket=/run/berth/berth.sock
  --recover            start although some berth records are unreadable: each is moved to
                       <state_dir>/quarantine/ and named on stderr; the rest of the ledger is
                       reconciled with the machine as at every start
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
  if (p.config.sysfs_root == "/sys") {
    // The RDMA subsystem's own answer (RDMA_NLDEV_CMD_SYS_GET); no NETLINK_RDMA means no RDMA.
    berth::net::RdmaSocket rdma;
    if (auto mode = rdma.netns_mode(); mode && *mode)
      p.discovery.inventory.rdma_netns =
          **mode == berth::net::RdmaNetnsMode::exclusive ? "exclusive" : "shared";
  }
  return p;
}

int check_config(const std::string& path) {
  auto p = prepare(path);
  if (!p) return 1;
  const auto& inv = p->discovery.inventory;
  std::printf("config %s is valid: %zu NUMA nodes, %zu GPUs, %zu HCAs, %zu VFs, %zu pools\n",
              path.c_str(), inv.numa_nodes.size(), inv.gpus.size(), inv.hcas.size(), inv.vfs.size(),
              p->config.pools.size());
  if (const auto& g = p->config.github) {
    auto secrets = berth::agent::read_secrets(*g);
    if (!secrets) {
      std::fprintf(stderr, "berthd: %s\n", secrets.error().message.c_str());
      return 1;
    }
    std::printf("github: webhook listener %s (%s), %zu flavors, max_runners %u, registration %s\n",
                g->listen.c_str(), g->tls_cert.empty() ? "HTTP" : "HTTPS",
                g->settings.flavors.size(), g->settings.max_runners, g->registration.c_str());
  }
  for (const auto& w : p->discovery.warnings) std::printf("warning: %s\n", w.c_str());
  return 0;
}

std::string read_boot_id() {
  std::ifstream in("/proc/sys/kernel/random/boot_id");
  std::string id;
  std::getline(in, id);
  return id;
}

bool process_alive(const berth::Target& t) {
  auto start = berth::agent::process_start_time(t.pid);
  return start && (t.start_time == 0 || *start == t.start_time);
}

// What may change on SIGHUP; anything else needs a restart and is refused.
std::optional<std::string> needs_restart(const berth::agent::Config& a,
                                         const berth::agent::Config& b) {
  berth::agent::Config x = a, y = b;
  x.log_level = y.log_level;
  auto dump = [](const berth::agent::Config& c) {
    nlohmann::json j;
    j["paths"] = {c.sysfs_root,  c.dev_root,       c.proc_root, c.cgroup_root, c.state_dir,
                  c.runtime_dir, c.control_socket, c.runc,      c.runc_root,   c.cdi_spec,
                  c.cdi_hook,    c.lxc_info,       c.apptainer};
    j["mode"] = c.control_socket_mode;
    j["http"] = {c.http_listen, c.http_status_page};
    j["github"] = c.github ? c.github->raw : "";
    j["group"] = c.control_group.value_or("");
    j["iommu"] = c.passthrough_iommu_groups;
    j["netlink"] = {c.netlink_resync_s, c.netlink_rcvbuf, c.udev_source, c.udev_subsystems};
    nlohmann::json pools = nlohmann::json::object();
    for (const auto& [name, p] : c.pools) pools[name] = p.subnet.to_string();
    j["pools"] = pools;
    return j;
  };
  auto dx = dump(x), dy = dump(y);
  if (dx == dy && x.pools.size() == y.pools.size()) return std::nullopt;
  for (auto& [k, v] : dx.items())
    if (v != dy[k]) return "'" + k + "' changed";
  return "pools changed";
}

// Under systemd, stderr is the journal's stream ($JOURNAL_STREAM names its device and inode):
// then log to the journal directly, with PRIORITY, SYSLOG_IDENTIFIER, TID and CODE_* fields.
// Otherwise log to stderr (spdlog's default is stdout, which is for what berthd is asked).
void choose_log_sink() {
  const char* stream = std::getenv("JOURNAL_STREAM");
  struct stat st {};
  if (stream && ::fstat(STDERR_FILENO, &st) == 0 &&
      std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino) == stream) {
    auto sink = std::make_shared<spdlog::sinks::systemd_sink_mt>("berthd");
    spdlog::set_default_logger(std::make_shared<spdlog::logger>("berthd", sink));
    return;
  }
  auto sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
  spdlog::set_default_logger(std::make_shared<spdlog::logger>("berthd", sink));
}

int run(const std::string& path, bool recover) {
  choose_log_sink();
  auto p = prepare(path);
  if (!p) return 1;
  auto config = p->config;
  spdlog::set_level(spdlog::level::from_str(config.log_level));
  for (const auto& w : p->discovery.warnings) spdlog::warn("BERTH_DISCOVERY_WARNING {}", w);
  if (!berth::agent::is_tmpfs(config.runtime_dir))
    spdlog::warn(
        "BERTH_RUNTIME_DIR_PERSISTENT {} is not a tmpfs: attachment records outlive a "
        "reboot there; the boot id tells them apart",
        config.runtime_dir);

  berth::agent::StateStore store(config.state_dir, config.runtime_dir);
  std::vector<std::string> set_aside;
  auto ledger = recover ? store.load_setting_aside(set_aside) : store.load();
  for (const auto& r : set_aside) {
    spdlog::warn("BERTH_RECOVER set aside {}", r);
    std::fprintf(stderr, "berthd: --recover: set aside %s\n", r.c_str());
  }
  if (!ledger) {
    std::fprintf(stderr,
                 "berthd: %s\nberthd: start with --recover to set unreadable records aside\n",
                 ledger.error().message.c_str());
    return 1;
  }
  const std::string boot_id = read_boot_id();
  auto previous_boot = store.swap_boot_id(boot_id);
  if (!previous_boot) {
    std::fprintf(stderr, "berthd: %s\n", previous_boot.error().message.c_str());
    return 1;
  }
  const bool rebooted = !previous_boot->empty() && *previous_boot != boot_id;

  berth::Context ctx;
  ctx.inventory = p->discovery.inventory;
  ctx.pools = config.pools;
  ctx.vf_rebind_drivers = config.vf_rebind_drivers;
  if (config.dev_root == "/dev") {
    std::vector<berth::CharDevice> nodes;
    for (const auto& g : ctx.inventory.gpus)
      nodes.insert(nodes.end(), g.devices.begin(), g.devices.end());
    for (const auto& v : ctx.inventory.vfs)
      nodes.insert(nodes.end(), v.devices.begin(), v.devices.end());
    for (const auto& link : berth::agent::ensure_char_links("/dev", nodes))
      spdlog::info("BERTH_CHAR_LINK made {} for a device node udev did not announce", link);
  }
  {
    char host[256] = {};
    if (::gethostname(host, sizeof host - 1) == 0) ctx.node_name = host;
  }

  // Declared before the io_context: coroutine frames of event-stream readers, destroyed with the
  // io_context, unsubscribe from it.
  berth::agent::EventBus bus;
  boost::asio::io_context io(1);
  berth::agent::Worker worker;
  // The runtime device programs berth stands in for are pinned under the host's bpffs (where
  // systemd mounts it), so a restart still puts back exactly them.
  std::string bpf_pins;
  if (!berth::agent::find_unified_mount(config.cgroup_root).empty() &&
      berth::agent::is_bpffs("/sys/fs/bpf")) {
    bpf_pins = "/sys/fs/bpf/berth";
    if (auto pinned = berth::agent::prepare_pin_dir(bpf_pins); !pinned) {
      spdlog::warn("BERTH_BPF_PIN_FAILED {}; the runtime's programs are held in memory only",
                   pinned.error().message);
      bpf_pins.clear();
    }
    for (const auto& pin : berth::agent::sweep_stale_pins(bpf_pins))
      spdlog::info("BERTH_BPF_PIN_STALE {}/{} removed: its stand-in program is gone", bpf_pins,
                   pin);
  }
  berth::agent::HostActuator actuator(berth::agent::HostPaths{
      config.cgroup_root, config.sysfs_root, config.dev_root, bpf_pins, config.lxc_cgroup});
  berth::agent::Metrics metrics(BERTH_VERSION);
  std::optional<berth::agent::CdiWriter> cdi;
  if (!config.cdi_spec.empty())
    cdi.emplace(config.cdi_spec, berth::CdiOptions{config.cdi_hook, config.control_socket},
                [&](std::function<void()> job) { worker.post(std::move(job)); });
  berth::agent::Engine engine(io, std::move(ctx), std::move(*ledger), actuator, &store, &worker);
  berth::agent::ExitWatcher exits(io, [&](const std::string& owner, const berth::Target& t) {
    engine.post(berth::event::TargetExited{owner, t});
  });
  berth::agent::MachineWatch* machine_ptr = nullptr;  // set once it exists, after reconciliation
  engine.set_hooks({
      [&](const berth::action::Notify& n) {
        if (n.warning)
          bus.publish("warning", {{"owner", n.owner}, {"message", n.message}});
        else
          bus.publish("berth", {{"owner", n.owner}, {"state", n.state}, {"message", n.message}});
      },
      [&](const berth::action::Watch& w) {
        if (w.watch)
          exits.watch(w.owner, w.target);
        else
          exits.unwatch(w.owner);
        if (machine_ptr) {
          if (w.watch)
            machine_ptr->watch_container(w.owner, w.target);
          else
            machine_ptr->unwatch_container(w.owner);
        }
      },
      [&](const berth::Step& step) {
        metrics.step_failed(berth::step_to_json(step).value("op", "unknown"));
      },
      [&] {
        if (cdi) cdi->update(engine.ledger(), engine.context().inventory);
      },
  });

  // Reconciliation, before any socket opens: the ledger meets the machine.
  std::vector<std::string> gone;
  for (const auto& [owner, b] : engine.ledger().berths)
    if (b.target && !process_alive(*b.target)) gone.push_back(owner);
  if (recover) {
    std::fprintf(stderr,
                 "berthd: --recover: %zu berths read, %zu records set aside, %zu containers gone; "
                 "VFs under foreign names on the host are restored as the link dump is read\n",
                 engine.ledger().berths.size(), set_aside.size(), gone.size());
  }
  spdlog::info("BERTH_RECONCILE {} berths, {} with a container gone{}",
               engine.ledger().berths.size(), gone.size(), rebooted ? ", node rebooted" : "");
  engine.resume(gone, rebooted);
  // Outcomes come back from the worker thread: run until reconciliation settles.
  while (engine.busy() && engine.unsaved().empty()) {
    io.restart();
    io.run_for(std::chrono::milliseconds(5));
  }
  io.restart();

  berth::agent::ControlApi api(engine, config, p->group, p->discovery.warnings, bus);
  api.set_metrics(&metrics);
  berth::agent::UsageView usage(bus, config.cgroup_root);
  api.set_usage(&usage);
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
  std::unique_ptr<berth::net::TcpHttpServer> tcp_server;
  if (!config.http_listen.empty()) {
    const auto colon = config.http_listen.rfind(':');
    berth::net::TcpServerOptions tcp{
        config.http_listen.substr(0, colon),
        static_cast<uint16_t>(std::stoul(config.http_listen.substr(colon + 1)))};
    const bool page = config.http_status_page;
    auto listening = berth::net::TcpHttpServer::listen(
        io, tcp, [&api, page](berth::net::Request req, berth::net::Peer peer) {
          return api.handle_tcp(std::move(req), std::move(peer), page);
        });
    if (!listening) {
      std::fprintf(stderr, "berthd: http.listen: %s\n", listening.error().message.c_str());
      return 1;
    }
    tcp_server = std::move(*listening);
    spdlog::info("BERTH_HTTP_LISTENING {} (read-only; status page {})", config.http_listen,
                 page ? "on" : "off");
  }
  // The CI webhook front door: its own TCP listener (25 MiB bodies, GitHub's limit), the same
  // server code and reactor.
  std::unique_ptr<berth::agent::RunnerService> runners;
  std::unique_ptr<berth::net::TcpHttpServer> webhook_server;
  if (config.github) {
    const auto& g = *config.github;
    auto secrets = berth::agent::read_secrets(g);
    if (!secrets) {
      std::fprintf(stderr, "berthd: %s\n", secrets.error().message.c_str());
      return 1;
    }
    runners = std::make_unique<berth::agent::RunnerService>(io, config, std::move(*secrets), api,
                                                            worker, bus, metrics);
    if (auto loaded = runners->load(); !loaded) {
      std::fprintf(stderr, "berthd: %s\n", loaded.error().message.c_str());
      return 1;
    }
    api.set_runners([&runners] { return runners->view(); });
    const auto colon = g.listen.rfind(':');
    berth::net::TcpServerOptions opts;
    opts.address = g.listen.substr(0, colon);
    opts.port = static_cast<uint16_t>(std::stoul(g.listen.substr(colon + 1)));
    opts.limits.body_limit = 25u << 20;
    opts.limits.header_limit = 16u << 10;
    opts.limits.max_connections = g.max_connections;
    opts.limits.read_timeout = std::chrono::seconds(g.read_timeout_s);
    opts.limits.max_per_peer = std::min<size_t>(32, g.max_connections);
    opts.limits.peer_rate = g.rate_per_peer;
    opts.limits.peer_burst = g.rate_per_peer * 2;
    opts.tls_cert = g.tls_cert;
    opts.tls_key = g.tls_key;
    auto* service = runners.get();
    auto listening = berth::net::TcpHttpServer::listen(
        io, opts, [service](berth::net::Request req, berth::net::Peer peer) {
          return service->handle(std::move(req), std::move(peer));
        });
    if (!listening) {
      std::fprintf(stderr, "berthd: github.listen: %s\n", listening.error().message.c_str());
      return 1;
    }
    webhook_server = std::move(*listening);
    spdlog::info("BERTH_WEBHOOK_LISTENING {} ({}; {} flavors, max_runners {}, registration {})",
                 g.listen, g.tls_cert.empty() ? "HTTP" : "HTTPS", g.settings.flavors.size(),
                 g.settings.max_runners, g.registration);
  }
  berth::agent::MachineWatch machine(io, worker, config, engine, actuator, bus);
  machine_ptr = &machine;
  if (auto s = machine.start(); !s) {
    std::fprintf(stderr, "berthd: %s\n", s.error().message.c_str());
    return 1;
  }
  api.set_links([&machine] { return machine.links_view(); });
  api.set_rescan([&machine](berth::agent::ControlApi::RescanDone done) {
    machine.rescan("asked for through the API",
                   [done = std::move(done)](const berth::agent::MachineWatch::RescanResult& r) {
                     done(r.error, r.changed, r.warnings);
                   });
  });
  api.set_health([&] {
    return nlohmann::json{{"netlink_overruns", machine.overruns()},
                          {"netlink_resyncs", machine.resyncs()},
                          {"rescans", machine.rescans()},
                          {"watched_containers", exits.size()},
                          {"watched_links", machine.watched_containers()},
                          {"events", bus.last_seq()}};
  });
  berth::agent::ServiceNotify notify(io);
  auto counts = [&] {
    std::map<std::string, int> by_state;
    for (const auto& [owner, b] : engine.ledger().berths)
      ++by_state[std::string(berth::to_string(b.state))];
    std::string text = std::to_string(engine.ledger().berths.size()) + " berths";
    for (const auto& [state, n] : by_state) text += ", " + std::to_string(n) + " " + state;
    return text;
  };
  // Reconciliation is done and every socket listens: only now is berthd ready.
  notify.ready(counts());
  // Standing berths: created from the config and attached where their container runs; after
  // READY, since attaching resolves containers through their runtimes (async children).
  berth::agent::StandingAttacher standing(io, api, engine, bus);
  standing.start(config.standing);
  if (runners) runners->start();
  notify.start_watchdog();
  bus.subscribe([&](const berth::agent::BusEvent& e) {
    if (e.body.value("type", "") == "berth") notify.status(counts());
  });
  const auto& inv = engine.context().inventory;
  spdlog::info(
      "BERTH_STARTED listening on {}: {} NUMA nodes, {} GPUs, {} VFs, {} berths in the ledger",
      config.control_socket, inv.numa_nodes.size(), inv.gpus.size(), inv.vfs.size(),
      engine.ledger().berths.size());

  // SIGTERM/SIGINT: stop accepting, let the operation in flight finish and its state be written
  // (up to 4 s, so systemd's 5 s is kept), then exit 0.
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
    notify.stopping();
    (*server)->stop();
    if (tcp_server) tcp_server->stop();
    if (webhook_server) webhook_server->stop();
    if (runners) runners->stop();
    machine.stop();
    deadline = std::chrono::steady_clock::now() + std::chrono::seconds(4);
    wait_idle();
  });
  // SIGHUP: read the config again; what can change live is applied, anything else is refused
  // and the running config stays.
  boost::asio::signal_set hup(io, SIGHUP);
  std::function<void()> on_hup = [&] {
    hup.async_wait([&](const boost::system::error_code& ec, int) {
      if (ec) return;
      on_hup();
      machine.rescan("SIGHUP");  // devices that come without a uevent (MIG instances)
      if (path.empty()) {
        spdlog::warn("BERTH_RELOAD_REFUSED berthd runs without a config file");
        bus.publish("warning", {{"message", "reload refused: no config file"}});
        return;
      }
      auto next = berth::agent::load_config(path);
      if (!next) {
        spdlog::error("BERTH_RELOAD_REFUSED {}; the running config stays", next.error().message);
        bus.publish("warning", {{"message", "reload refused: " + next.error().message}});
        return;
      }
      if (auto why = needs_restart(config, *next)) {
        spdlog::error("BERTH_RELOAD_REFUSED {}: that needs a restart; the running config stays",
                      *why);
        bus.publish("warning", {{"message", "reload refused: " + *why + " (needs a restart)"}});
        return;
      }
      config.log_level = next->log_level;
      config.slurm = next->slurm;
      standing.reload(config.standing, next->standing);
      config.standing = next->standing;
      spdlog::set_level(spdlog::level::from_str(config.log_level));
      spdlog::info("BERTH_RELOADED {} (log_level {})", path, config.log_level);
      bus.publish("reload", {{"message", "config reloaded"}, {"log_level", config.log_level}});
    });
  };
  on_hup();
  berth::agent::run_staying_awake(
      io, [&] { return engine.awaiting_worker(); }, berth::agent::kReactorStayAwake);
  spdlog::info("BERTH_STOPPED");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string config;
  bool recover = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    if (a == "--version") {
      std::puts("berthd " BERTH_VERSION);
      return 0;
    }
    if (a == "--recover") {
      recover = true;
      continue;
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
    return run(config, recover);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "berthd: fatal: %s\n", e.what());
    return 1;
  }
}
