// Agent benchmarks, side by side with the peers in one run on one machine: the attach cycle
// (berth vs kernel floor vs CNI host-device vs ip commands), bursts, control API load, the
// prolog path, and berthd's footprint. Prints a table and writes a JSON result file.
//
// Needs root, runc and busybox-static; runs inside a private network namespace it creates.
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <sstream>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "agent/host/device_programs.hpp"
#include "bench/api_load.hpp"
#include "bench/engine_cycle.hpp"
#include "bench/fixture_writer.hpp"
#include "bench/peers.hpp"
#include "bench/process.hpp"
#include "bench/stats.hpp"
#include "net/http_client.hpp"
#include "tests/host/host.hpp"

namespace berth::bench {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;

struct Options {
  std::string berthd = BERTHD_PATH;
  std::string berthctl = BERTHCTL_PATH;
  int cycles = 50;
  int idle_seconds = 60;
  double load_seconds = 2;
  std::string out = "bench-results.json";
  std::string only;       // "gpu": only the GPU-only cycle by layer (for profiling)
  int held_fds = 0;       // descriptors of /dev/null held by processes in the GPU container
  std::string state_dir;  // empty: a directory next to the fixture (same filesystem as /tmp)
  // Attachment records go to runtime_dir, /run on a real host: a tmpfs. /dev/shm stands in for
  // it where /run is not one (as on this project's CI machines).
  std::string runtime_dir = "/dev/shm/berth-bench-" + std::to_string(::getpid());
};

constexpr int kVfsPerNode = 32;
constexpr const char* kGateway = "10.80.0.1";

// Processes in the container's cgroup holding `fds` descriptors of a character device between
// them (64 each), as a job's processes hold theirs: what a detach reads to name who still holds a
// device open. Killed when this goes.
class HeldDescriptors {
 public:
  HeldDescriptors(const std::string& cgroup, int fds) {
    const std::string procs =
        agent::find_unified_mount("/sys/fs/cgroup") + cgroup + "/cgroup.procs";
    for (int left = fds; left > 0; left -= 64) {
      int ready[2];
      if (::pipe(ready) != 0) return;
      const pid_t pid = ::fork();
      if (pid == 0) {
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        std::ofstream moved(procs);
        const bool in_cgroup = static_cast<bool>(moved << 0 << std::flush);
        for (int i = 0; i < std::min(left, 64); ++i) (void)::open("/dev/null", O_RDONLY);
        (void)::write(ready[1], in_cgroup ? "y" : "n", 1);
        ::pause();
        ::_exit(0);
      }
      char c = 0;
      if (pid > 0) {
        pids_.push_back(pid);
        if (::read(ready[0], &c, 1) != 1 || c != 'y')
          std::fprintf(stderr, "--held-fds: a holder is not in %s\n", procs.c_str());
      }
      ::close(ready[0]);
      ::close(ready[1]);
    }
  }
  ~HeldDescriptors() {
    for (pid_t p : pids_) ::kill(p, SIGKILL);
    for (pid_t p : pids_) ::waitpid(p, nullptr, 0);
  }
  HeldDescriptors(const HeldDescriptors&) = delete;
  HeldDescriptors& operator=(const HeldDescriptors&) = delete;

 private:
  std::vector<pid_t> pids_;
};

std::string address_of(int i) {
  return "10.80." + std::to_string(1 + i / 200) + "." + std::to_string(10 + i % 200) + "/16";
}

class Agent {
 public:
  Agent(const Options& o, const fs::path& dir) : dir_(dir) {
    socket_ = (dir / "berth.sock").string();
    json config = {
        {"sysfs_root", (dir / "fixture/sys").string()},
        {"dev_root", (dir / "fixture/dev").string()},
        {"proc_root", (dir / "fixture/proc").string()},
        {"state_dir", o.state_dir.empty() ? (dir / "state").string() : o.state_dir},
        {"runtime_dir", o.runtime_dir},
        {"control_socket", socket_},
        {"log_level", "warn"},
        {"pools", {{{"name", "bench"}, {"subnet", "10.80.0.0/16"}, {"gateway", kGateway}}}}};
    std::ofstream(dir / "berthd.json") << config.dump(2);
    pid_ = ::fork();
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);  // berthd does not outlive a killed bench
      std::string cfg = (dir / "berthd.json").string();
      ::execl(o.berthd.c_str(), o.berthd.c_str(), "--config", cfg.c_str(), nullptr);
      ::_exit(127);
    }
    for (int i = 0; i < 200 && !net::unix_request(socket_, "GET", "/v1/health"); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  ~Agent() {
    ::kill(pid_, SIGTERM);
    ::waitpid(pid_, nullptr, 0);
  }
  const std::string& socket() const { return socket_; }
  std::string fixture() const { return (dir_ / "fixture").string(); }
  pid_t pid() const { return pid_; }
  unsigned call(const std::string& method, const std::string& target,
                const std::string& body = {}) {
    auto r = net::unix_request(socket_, method, target, body);
    if (!r) return 0;
    if (r->status >= 400)
      std::fprintf(stderr, "berthd: %s %s -> %u %s", method.c_str(), target.c_str(), r->status,
                   r->body.c_str());
    return r->status;
  }

 private:
  fs::path dir_;
  std::string socket_;
  pid_t pid_ = 0;
};

json ratio_row(const char* name, const Summary& s, const Summary& berth) {
  json j = to_json(s);
  j["name"] = name;
  j["p50_ratio_to_berth"] = berth.p50 > 0 ? s.p50 / berth.p50 : 0;
  return j;
}

void print_summary_table(const std::string& title, const json& rows) {
  std::printf("\n%s\n  %-34s %9s %9s %9s %9s %12s\n", title.c_str(), "", "p50 ms", "p90 ms",
              "p99 ms", "max ms", "p50 / berth");
  for (const auto& r : rows)
    std::printf("  %-34s %9.2f %9.2f %9.2f %9.2f %12.2f\n", r["name"].get<std::string>().c_str(),
                r["p50_ms"].get<double>(), r["p90_ms"].get<double>(), r["p99_ms"].get<double>(),
                r["max_ms"].get<double>(), r["p50_ratio_to_berth"].get<double>());
}

// One attach+detach through the API, timed; with `detach_ms`, the detach request alone too.
double berth_cycle(Agent& a, const std::string& owner, int pid,
                   std::vector<double>* detach_ms = nullptr) {
  auto start = Clock::now();
  if (a.call("POST", "/v1/berths/" + owner + "/attach", R"({"pid":)" + std::to_string(pid) + "}") !=
      200)
    return -1;
  auto detach_start = Clock::now();
  if (a.call("POST", "/v1/berths/" + owner + "/detach") != 200) return -1;
  if (detach_ms) detach_ms->push_back(ms_since(detach_start));
  return ms_since(start);
}

std::vector<double> repeat(int n, const std::function<double()>& fn) {
  std::vector<double> out;
  for (int i = 0; i < n; ++i) {
    double ms = fn();
    if (ms >= 0) out.push_back(ms);
  }
  return out;
}

// GPU only (device nodes, device rules, cpuset): in a v1 container, and in a pure-v2 one where
// the rules are berth's program wrapped around runc's.
json gpu_cycle(Agent& agent, itest::RuncContainer& c, const std::string& owner, int cycles) {
  agent.call("PUT", "/v1/berths/" + owner, R"({"gpus":1})");
  berth_cycle(agent, owner, c.pid());  // warm-up
  std::vector<double> detach_ms;
  auto s =
      summarize(repeat(cycles, [&] { return berth_cycle(agent, owner, c.pid(), &detach_ms); }));
  agent.call("DELETE", "/v1/berths/" + owner);
  json out = to_json(s);
  // The detach's own answer: who still holds the devices open is read after it.
  out["detach_alone"] = to_json(summarize(std::move(detach_ms)));
  return out;
}

// The GPU-only cycle by layer: through the API (v1 and pure-v2 containers), the in-process
// engine, the host actuator alone and the kernel floor. Prints its lines, returns its rows.
json gpu_layers(const Options& o, Agent& agent, itest::RuncContainer& c, KernelFloor& floor) {
  json gpu_v1 = gpu_cycle(agent, c, "manual/gpu-v1", o.cycles);
  // The same GPU-only cycle without the API (engine, actuator, worker and records in-process),
  // and its kernel floor (the same mknods, device rules and cpuset writes, issued directly).
  auto engine = engine_gpu_cycles(agent.fixture(), agent.fixture() + "/../engine-state",
                                  o.runtime_dir + "-engine", c.pid(), o.cycles);
  json gpu_engine = to_json(engine.runs);
  json gpu_engine_steps = to_json(engine.one_by_one);
  json gpu_actuator = to_json(actuator_gpu_cycles(agent.fixture(), c.pid(), o.cycles));
  json gpu_floor = to_json(summarize(repeat(o.cycles, [&] { return floor.gpu_cycle_ms(); })));
  json gpu_v2 = json();
  if (itest::missing_for(itest::CgroupMode::v2).empty()) {
    itest::RuncContainer v2("berth-bench-v2", "/berth-bench", itest::CgroupMode::v2);
    if (v2.started()) gpu_v2 = gpu_cycle(agent, v2, "manual/gpu-v2", o.cycles);
  }
  for (auto [name, j] :
       {std::pair<const char*, json*>{"cgroup v1", &gpu_v1}, {"cgroup v2", &gpu_v2}})
    if (!j->is_null())
      std::printf("  GPU only (nodes, device rules, cpuset), %s: p50 %.3f ms p99 %.3f ms\n", name,
                  (*j)["p50_ms"].get<double>(), (*j)["p99_ms"].get<double>());
  if (!gpu_v1.is_null() && gpu_v1.contains("detach_alone"))
    std::printf("  GPU only, cgroup v1, the detach request alone: p50 %.3f ms p99 %.3f ms\n",
                gpu_v1["detach_alone"]["p50_ms"].get<double>(),
                gpu_v1["detach_alone"]["p99_ms"].get<double>());
  for (auto [name, j] : {std::pair<const char*, json*>{"in-process engine, cgroup v1", &gpu_engine},
                         {"in-process engine, steps one by one, cgroup v1", &gpu_engine_steps},
                         {"host actuator alone, cgroup v1", &gpu_actuator},
                         {"kernel floor, cgroup v1", &gpu_floor}})
    if (!j->is_null() && j->contains("p50_ms"))
      std::printf("  GPU only (nodes, device rules, cpuset), %s: p50 %.3f ms p99 %.3f ms\n", name,
                  (*j)["p50_ms"].get<double>(), (*j)["p99_ms"].get<double>());
  json rows = json::array();
  rows.push_back({{"name", "berth (API, GPU only, cgroup v1)"}, {"summary", gpu_v1}});
  rows.push_back(
      {{"name", "berth (in-process engine, GPU only, cgroup v1)"}, {"summary", gpu_engine}});
  rows.push_back({{"name", "berth (in-process engine, steps one by one, GPU only, cgroup v1)"},
                  {"summary", gpu_engine_steps}});
  rows.push_back(
      {{"name", "host actuator alone (GPU only, cgroup v1)"}, {"summary", gpu_actuator}});
  rows.push_back({{"name", "kernel floor (GPU only, cgroup v1)"}, {"summary", gpu_floor}});
  rows.push_back({{"name", "berth (API, GPU only, cgroup v2)"}, {"summary", gpu_v2}});
  return rows;
}

json attach_cycle(const Options& o, Agent& agent, itest::RuncContainer& c) {
  CycleTarget t{c.pid(), c.cgroup(), vf_name(0), address_of(0), kGateway};
  // berth: 1 GPU (2 device nodes), 1 VF with an address from the pool and a default route,
  // cpuset; and network only (1 VF, no GPU): the part CNI also does. Each is created before its
  // cycle and released after it (untimed), so both get the VF the peers use.
  auto berth_way = [&](const std::string& owner, const char* request) {
    agent.call("PUT", "/v1/berths/" + owner, request);
    double ms = berth_cycle(agent, owner, c.pid());
    agent.call("DELETE", "/v1/berths/" + owner);
    return ms;
  };
  KernelFloor floor(t);
  // The five ways take turns, one cycle each per round and each round starting with the next
  // way: moving a link between namespaces costs the kernel 10-20 ms and that cost drifts by
  // tens of percent over a run on a VM, so ways measured one after the other would compare
  // periods of the run rather than the ways.
  std::vector<std::function<double()>> ways = {
      [&] { return berth_way("manual/cycle", R"({"gpus":1,"vfs":1,"network":{"pool":"bench"}})"); },
      [&] { return floor.cycle_ms(); }, [&] { return ip_commands_cycle_ms(t); },
      [&] { return berth_way("manual/net", R"({"vfs":1,"network":{"pool":"bench"}})"); },
      [&] {
        double add = cni_add_ms(t, "bench");
        double del = add < 0 ? -1 : cni_del_ms(t, "bench");
        return add < 0 || del < 0 ? -1 : add + del;
      }};
  for (auto& way : ways) way();  // warm-up
  std::vector<std::vector<double>> ms(ways.size());
  for (int round = 0; round < o.cycles; ++round)
    for (size_t k = 0; k < ways.size(); ++k) {
      const size_t w = (static_cast<size_t>(round) + k) % ways.size();
      if (double m = ways[w](); m >= 0) ms[w].push_back(m);
    }
  auto berth = summarize(ms[0]), kernel = summarize(ms[1]), ip = summarize(ms[2]),
       berth_net = summarize(ms[3]), cni = summarize(ms[4]);
  json rows = json::array({ratio_row("berth (API, GPU+VF+cpuset)", berth, berth),
                           ratio_row("kernel floor (same ops, no agent)", kernel, berth),
                           ratio_row("ip/shell commands (same ops)", ip, berth),
                           ratio_row("berth (API, VF only)", berth_net, berth),
                           ratio_row("CNI host-device+static (VF only)", cni, berth)});
  print_summary_table("attach+detach cycle, " + std::to_string(o.cycles) + " runs", rows);
  for (auto& r : gpu_layers(o, agent, c, floor)) rows.push_back(std::move(r));
  return rows;
}

json burst(Agent& agent, std::vector<std::unique_ptr<itest::RuncContainer>>& containers, int n) {
  for (int i = 0; i < n; ++i)
    agent.call("PUT", "/v1/berths/manual/burst" + std::to_string(i),
               R"({"vfs":1,"shared":true,"numa":"any","network":{"pool":"bench"}})");
  auto fire = [&](const std::function<double(int)>& one) {
    std::vector<std::future<double>> f;
    f.reserve(n);
    auto start = Clock::now();
    for (int i = 0; i < n; ++i) f.push_back(std::async(std::launch::async, one, i));
    std::vector<double> each;
    each.reserve(f.size());
    for (auto& x : f) each.push_back(x.get());
    return std::make_pair(ms_since(start), each);
  };
  auto [attach_total, attach_each] = fire([&](int i) {
    auto s = Clock::now();
    bool ok = agent.call("POST", "/v1/berths/manual/burst" + std::to_string(i) + "/attach",
                         R"({"pid":)" + std::to_string(containers[i]->pid()) + "}") == 200;
    return ok ? ms_since(s) : -1.0;
  });
  auto [detach_total, detach_each] = fire([&](int i) {
    auto s = Clock::now();
    bool ok = agent.call("DELETE", "/v1/berths/manual/burst" + std::to_string(i)) == 200;
    return ok ? ms_since(s) : -1.0;
  });
  // CNI: the same VFs (berth assigned VFs from both nodes; CNI gets the first n) at once.
  auto target = [&](int i) {
    return CycleTarget{containers[i]->pid(), containers[i]->cgroup(), vf_name(i), address_of(i),
                       kGateway};
  };
  auto [cni_add_total, cni_add_each] =
      fire([&](int i) { return cni_add_ms(target(i), "burst" + std::to_string(i)); });
  auto [cni_del_total, cni_del_each] =
      fire([&](int i) { return cni_del_ms(target(i), "burst" + std::to_string(i)); });
  json j = {{"berths", n},
            {"berth_attach_total_ms", attach_total},
            {"berth_attach", to_json(summarize(attach_each))},
            {"berth_release_total_ms", detach_total},
            {"berth_release", to_json(summarize(detach_each))},
            {"cni_add_total_ms", cni_add_total},
            {"cni_add", to_json(summarize(cni_add_each))},
            {"cni_del_total_ms", cni_del_total},
            {"cni_del", to_json(summarize(cni_del_each))}};
  std::printf("\nburst of %d (one container each)      total ms   per-berth p50   p99\n", n);
  std::printf("  berth attach                        %8.1f   %8.2f   %8.2f\n", attach_total,
              summarize(attach_each).p50, summarize(attach_each).p99);
  std::printf("  CNI host-device ADD                 %8.1f   %8.2f   %8.2f   (%.2fx berth total)\n",
              cni_add_total, summarize(cni_add_each).p50, summarize(cni_add_each).p99,
              cni_add_total / attach_total);
  std::printf("  berth release (detach+free)         %8.1f   %8.2f   %8.2f\n", detach_total,
              summarize(detach_each).p50, summarize(detach_each).p99);
  std::printf("  CNI host-device DEL                 %8.1f   %8.2f   %8.2f   (%.2fx berth total)\n",
              cni_del_total, summarize(cni_del_each).p50, summarize(cni_del_each).p99,
              cni_del_total / detach_total);
  return j;
}

json api_load(const Options& o, Agent& agent) {
  // A busy node: 100 live berths to list. Lists run first at every concurrency, then the
  // create/release pairs (whose tombstones would otherwise grow the list between runs).
  for (int i = 0; i < 100; ++i)
    agent.call("PUT", "/v1/berths/manual/live" + std::to_string(i),
               R"({"shared":true,"numa":"any"})");
  json out = json::array();
  std::printf(
      "\ncontrol API over the unix socket (keep-alive)   conc   req/s     p50 ms   p99 ms\n");
  auto report = [&](const char* name, int conc, const LoadResult& r) {
    std::printf("  %-44s %4d %8.0f %9.2f %8.2f%s\n", name, conc, r.per_second(), r.latency.p50,
                r.latency.p99, r.errors ? "  (errors!)" : "");
    out.push_back({{"name", name},
                   {"concurrency", conc},
                   {"per_second", r.per_second()},
                   {"errors", r.errors},
                   {"latency", to_json(r.latency)}});
  };
  for (int conc : {1, 4, 16})
    report("GET /v1/berths (100 berths)", conc,
           run_load(agent.socket(), conc, o.load_seconds, [](KeepAliveClient& c, int, size_t) {
             return c.request("GET", "/v1/berths") == 200;
           }));
  for (int conc : {1, 4, 16})
    report("PUT+DELETE (create/release)", conc,
           run_load(agent.socket(), conc, o.load_seconds, [](KeepAliveClient& c, int w, size_t i) {
             std::string owner =
                 "/v1/berths/manual/load-" + std::to_string(w) + "-" + std::to_string(i);
             return c.request("PUT", owner, R"({"shared":true,"numa":"any"})") == 200 &&
                    c.request("DELETE", owner) == 200;
           }));
  for (int i = 0; i < 100; ++i) agent.call("DELETE", "/v1/berths/manual/live" + std::to_string(i));
  return out;
}

json prolog_path(const Options& o, Agent& agent) {
  const std::vector<std::string> base{o.berthctl, "--socket", agent.socket()};
  auto with = [&](std::vector<std::string> tail) {
    auto v = base;
    v.insert(v.end(), tail.begin(), tail.end());
    return v;
  };
  std::vector<double> pairs;
  std::vector<double> startup;
  for (int i = 0; i < 30; ++i) {
    auto s = Clock::now();
    auto c = run_process(with(
        {"create", "slurm/p" + std::to_string(i), "--gpus", "1", "--shared", "--numa", "any"}));
    auto r = run_process(with({"release", "slurm/p" + std::to_string(i)}));
    if (c.exit_code == 0 && r.exit_code == 0) pairs.push_back(ms_since(s));
    auto h = Clock::now();
    run_process({o.berthctl, "--help"});
    startup.push_back(ms_since(h));
  }
  auto p = summarize(pairs);
  auto st = summarize(startup);
  double share = p.p50 > 0 ? 2 * st.p50 / p.p50 : 0;
  std::printf("\nprolog path: berthctl create + berthctl release as two processes\n");
  std::printf(
      "  p50 %.2f ms, p99 %.2f ms; process start-up (berthctl --help) p50 %.2f ms = %.0f%% of the "
      "pair\n",
      p.p50, p.p99, st.p50, 100 * share);
  return {{"pair", to_json(p)}, {"startup", to_json(st)}, {"startup_share", share}};
}

struct ProcSample {
  double cpu_seconds = 0;
  long rss_kib = 0;
  long ctx_switches = 0;
};

ProcSample sample(pid_t pid) {
  ProcSample s;
  s.cpu_seconds = process_cpu_seconds(pid);
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("VmRSS:", 0) == 0) s.rss_kib = std::stol(line.substr(6));
    if (line.find("ctxt_switches:") != std::string::npos)
      s.ctx_switches += std::stol(line.substr(line.find(':') + 1));
  }
  return s;
}

json footprint(const Options& o, Agent& agent, const fs::path& dir) {
  auto before = sample(agent.pid());
  std::this_thread::sleep_for(std::chrono::seconds(o.idle_seconds));
  auto after = sample(agent.pid());
  KeepAliveClient client(agent.socket());
  std::vector<double> creates;
  for (int i = 0; i < 1000; ++i) {
    auto s = Clock::now();
    client.request("PUT", "/v1/berths/manual/fp" + std::to_string(i),
                   R"({"shared":true,"numa":"any"})");
    creates.push_back(ms_since(s));
  }
  auto full = sample(agent.pid());
  auto list_start = Clock::now();
  client.request("GET", "/v1/berths");
  double list_ms = ms_since(list_start);
  uintmax_t ledger_bytes = 0;
  for (const auto& f : fs::recursive_directory_iterator(
           o.state_dir.empty() ? dir / "state" : fs::path(o.state_dir)))
    if (f.is_regular_file()) ledger_bytes += f.file_size();
  std::vector<double> tail(creates.end() - 100, creates.end());
  auto last100 = summarize(tail);
  std::printf("\nfootprint of berthd\n  idle %d s: %.3f s CPU, %ld context switches, RSS %ld KiB\n",
              o.idle_seconds, after.cpu_seconds - before.cpu_seconds,
              after.ctx_switches - before.ctx_switches, after.rss_kib);
  std::printf(
      "  with 1,000 berths: RSS %ld KiB, state files %zu bytes, create p50 %.2f ms (last 100), "
      "list %.1f ms\n",
      full.rss_kib, static_cast<size_t>(ledger_bytes), last100.p50, list_ms);
  return {{"idle_seconds", o.idle_seconds},
          {"idle_cpu_seconds", after.cpu_seconds - before.cpu_seconds},
          {"idle_context_switches", after.ctx_switches - before.ctx_switches},
          {"idle_rss_kib", after.rss_kib},
          {"rss_kib_1000_berths", full.rss_kib},
          {"ledger_bytes_1000_berths", ledger_bytes},
          {"create_with_1000_live", to_json(last100)},
          {"list_1000_ms", list_ms}};
}

// Ctrl-C or a kill mid-run: the containers, berthd and the directories of this run go too (the
// stand-in links go with the private network namespace). The handler only wakes a thread.
int interrupt_pipe[2] = {-1, -1};

void on_interrupt(int) {
  const char c = 1;
  (void)!::write(interrupt_pipe[1], &c, 1);
}

void clean_up_on_interrupt(const fs::path& dir, const std::string& runtime_dir) {
  if (::pipe2(interrupt_pipe, O_CLOEXEC) != 0) return;
  std::thread([dir, runtime_dir] {
    char c = 0;
    if (::read(interrupt_pipe[0], &c, 1) != 1) return;
    std::fprintf(stderr, "\ninterrupted: removing this run's containers, berthd and files\n");
    // "[.]": the pattern must not match the shell that runs pkill.
    itest::sh("pkill -f '" + dir.string() + "/berthd[.]json'");
    itest::sh(
        "for pass in 1 2; do for c in $(runc list -q 2>/dev/null | grep '^berth-bench'); do "
        "runc delete -f \"$c\" >/dev/null 2>&1; done; sleep 0.5; done; "
        "rmdir /sys/fs/cgroup/*/berth-bench/* /sys/fs/cgroup/*/berth-bench 2>/dev/null");
    std::error_code ec;
    fs::remove_all(dir, ec);
    fs::remove_all(runtime_dir, ec);
    fs::remove_all(runtime_dir + "-engine", ec);
    ::_exit(130);
  }).detach();
  struct sigaction sa {};
  sa.sa_handler = on_interrupt;
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) ::sigaction(sig, &sa, nullptr);
}

int run(const Options& o) {
  if (::geteuid() != 0) return std::fprintf(stderr, "berth_bench_agent: run as root\n"), 1;
  if (::unshare(CLONE_NEWNET) != 0) return std::perror("unshare(CLONE_NEWNET)"), 1;
  itest::sh("ip link set lo up");
  const fs::path dir = fs::temp_directory_path() / ("berth-bench-" + std::to_string(::getpid()));
  clean_up_on_interrupt(dir, o.runtime_dir);
  write_fixture((dir / "fixture").string(), kVfsPerNode);
  std::string script;
  for (int i = 0; i < 2 * kVfsPerNode; ++i)
    script += "ip link add " + vf_name(i) + " type veth peer name " + vf_name(i) +
              "p && ip link set " + vf_name(i) + "p up;";
  itest::sh(script);

  json result = {
      {"machine",
       {{"cpus", std::thread::hardware_concurrency()}, {"kernel", itest::sh("uname -r").out}}}};
  {
    Agent agent(o, dir);
    std::vector<std::unique_ptr<itest::RuncContainer>> containers;
    for (int i = 0; i < (o.only == "gpu" ? 1 : 32); ++i) {
      containers.push_back(std::make_unique<itest::RuncContainer>(
          "berth-bench-" + std::to_string(i), "/berth-bench"));
      if (!containers.back()->started())
        return std::fprintf(stderr, "runc: %s\n", containers.back()->error().c_str()), 1;
    }
    if (o.only == "engine") {
      auto engine = engine_gpu_cycles(agent.fixture(), agent.fixture() + "/../engine-state",
                                      o.runtime_dir + "-engine", containers[0]->pid(), o.cycles);
      result["engine"] = to_json(engine.runs);
      result["engine_one_by_one"] = to_json(engine.one_by_one);
      std::printf("in-process engine: p50 %.3f ms (steps one by one, the same run: %.3f ms)\n",
                  engine.runs.p50, engine.one_by_one.p50);
    } else if (o.only == "gpu") {
      itest::RuncContainer& c = *containers[0];
      KernelFloor floor(CycleTarget{c.pid(), c.cgroup(), vf_name(0), address_of(0), kGateway});
      HeldDescriptors held(c.cgroup(), o.held_fds);
      result["held_fds"] = o.held_fds;
      result["gpu_layers"] = gpu_layers(o, agent, c, floor);
    } else if (o.only == "burst") {
      result["burst"] = json::array({burst(agent, containers, 8), burst(agent, containers, 32)});
    } else {
      result["attach_cycle"] = attach_cycle(o, agent, *containers[0]);
      result["burst"] = json::array({burst(agent, containers, 8), burst(agent, containers, 32)});
      result["api"] = api_load(o, agent);
      result["prolog"] = prolog_path(o, agent);
    }
  }
  if (o.only.empty()) {
    // A fresh agent, so the footprint is not the high-water mark of the phases above.
    fs::remove_all(o.state_dir.empty() ? dir / "state" : fs::path(o.state_dir));
    fs::remove_all(o.runtime_dir);
    Agent agent(o, dir);
    result["footprint"] = footprint(o, agent, dir);
  }
  itest::sh("rmdir /sys/fs/cgroup/*/berth-bench");
  fs::remove_all(dir);
  fs::remove_all(o.runtime_dir);
  fs::remove_all(o.runtime_dir + "-engine");
  std::ofstream(o.out) << result.dump(2) << "\n";
  std::printf("\nresults written to %s\n", o.out.c_str());
  return 0;
}

}  // namespace
}  // namespace berth::bench

int main(int argc, char** argv) {
  berth::bench::Options o;
  for (int i = 1; i < argc; i += 2) {
    std::string a = argv[i];
    if (i + 1 >= argc) a = "";  // an option without its value, or --help: the usage
    if (a == "--cycles")
      o.cycles = std::stoi(argv[i + 1]);
    else if (a == "--idle-seconds")
      o.idle_seconds = std::stoi(argv[i + 1]);
    else if (a == "--load-seconds")
      o.load_seconds = std::stod(argv[i + 1]);
    else if (a == "--held-fds")
      o.held_fds = std::stoi(argv[i + 1]);
    else if (a == "--out")
      o.out = argv[i + 1];
    else if (a == "--berthd")
      o.berthd = argv[i + 1];
    else if (a == "--berthctl")
      o.berthctl = argv[i + 1];
    else if (a == "--state-dir")
      o.state_dir = argv[i + 1];
    else if (a == "--runtime-dir")
      o.runtime_dir = argv[i + 1];
    else if (a == "--only" &&
             (std::string(argv[i + 1]) == "gpu" || std::string(argv[i + 1]) == "engine" ||
              std::string(argv[i + 1]) == "burst"))
      o.only = argv[i + 1];
    else
      return std::fprintf(stderr,
                          "usage: berth_bench_agent [--cycles N] [--idle-seconds S] "
                          "[--load-seconds S] [--state-dir DIR] [--runtime-dir DIR] [--out FILE] "
                          "[--only gpu|engine|burst] [--held-fds N (with --only gpu)]\n"),
             2;
  }
  return berth::bench::run(o);
}
