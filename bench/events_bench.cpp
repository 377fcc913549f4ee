// The event-driven agent, measured on this machine's kernel (run as root, in a private network
// namespace so only the benchmark's links move):
//   - event-to-berthd latency of a link event, side by side with the kernel floor: the time a
//     plain rtnetlink listener in this process sees RTM_NEWLINK vs the time berthd's event stream
//     delivers the same link (p50/p99 over N links);
//   - convergence after a burst of 4,096 link creations and deletions with a 4 KiB receive buffer
//     (overrun, ENOBUFS): from the end of the burst until berthd's /v1/links equals `ip -j link`;
//   - idle wake-ups of berthd over D seconds (context switches of all its threads);
//   - RSS of berthd with 1,000 berths and 4,096 links.
// Usage: berth_bench_events [links=200] [idle_seconds=60]
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench/fixture_berthd.hpp"
#include "bench/process.hpp"
#include "net/http_client.hpp"

namespace {
using Clock = std::chrono::steady_clock;
using nlohmann::json;
namespace fs = std::filesystem;

std::string sh(const std::string& cmd) {
  return berth::bench::run_process({"/bin/sh", "-c", cmd}).output;
}

double ms(Clock::duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

double pct(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

// The kernel floor: when a plain rtnetlink listener sees each new link, by name.
void listen_kernel(std::map<std::string, Clock::time_point>& seen, std::mutex& mu,
                   std::atomic<bool>& stop) {
  int fd = ::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  int size = 8 << 20;
  ::setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size);
  sockaddr_nl addr{};
  addr.nl_family = AF_NETLINK;
  addr.nl_groups = RTMGRP_LINK;
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  timeval tv{0, 100000};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  alignas(nlmsghdr) static char buf[1 << 16];
  while (!stop) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) continue;
    const auto now = Clock::now();
    int len = static_cast<int>(n);
    for (auto* h = reinterpret_cast<nlmsghdr*>(buf); NLMSG_OK(h, static_cast<unsigned>(len));
         h = NLMSG_NEXT(h, len)) {
      if (h->nlmsg_type != RTM_NEWLINK) continue;
      auto* ifi = static_cast<ifinfomsg*>(NLMSG_DATA(h));
      int alen = static_cast<int>(IFLA_PAYLOAD(h));
      for (auto* a = IFLA_RTA(ifi); RTA_OK(a, alen); a = RTA_NEXT(a, alen))
        if (a->rta_type == IFLA_IFNAME) {
          std::lock_guard lock(mu);
          seen.emplace(static_cast<const char*>(RTA_DATA(a)), now);
        }
    }
  }
  ::close(fd);
}

long context_switches(pid_t pid) {
  long total = 0;
  for (const auto& t : fs::directory_iterator("/proc/" + std::to_string(pid) + "/task")) {
    std::ifstream in(t.path() / "status");
    for (std::string line; std::getline(in, line);)
      if (line.rfind("voluntary_ctxt_switches", 0) == 0 ||
          line.rfind("nonvoluntary_ctxt_switches", 0) == 0)
        total += std::stol(line.substr(line.find(':') + 1));
  }
  return total;
}

long rss_kib(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const int links = argc > 1 ? std::atoi(argv[1]) : 200;
  const int idle_s = argc > 2 ? std::atoi(argv[2]) : 60;
  if (::unshare(CLONE_NEWNET) != 0) {
    std::perror("unshare(CLONE_NEWNET) (run as root)");
    return 1;
  }
  sh("ip link set lo up");
  berth::bench::FixtureBerthd berthd("events",
                                     {{"netlink_resync_s", 3600}, {"netlink_rcvbuf", 4096}});
  const fs::path& dir = berthd.dir;
  const std::string& socket = berthd.socket;
  const pid_t pid = berthd.pid;

  // 1. Latency, link event to berthd's event stream, beside the kernel floor.
  std::map<std::string, Clock::time_point> kernel_seen, berthd_seen;
  std::mutex mu;
  std::atomic<bool> stop{false};
  std::thread kernel([&] { listen_kernel(kernel_seen, mu, stop); });
  std::thread stream([&] {
    auto r = berth::net::unix_event_stream(socket, "/v1/events", [&](const std::string& data) {
      const auto now = Clock::now();
      auto ev = json::parse(data, nullptr, false);
      if (ev.is_object() && ev.value("type", "") == "link" && ev.value("change", "") == "added") {
        std::lock_guard lock(mu);
        berthd_seen.emplace(ev.value("name", ""), now);
      }
      return !stop;
    });
    (void)r;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  for (int i = 0; i < links; ++i) {
    sh("ip link add blat" + std::to_string(i) + " type veth peer name blat" + std::to_string(i) +
       "p");
    std::this_thread::sleep_for(std::chrono::milliseconds(5));  // one at a time, not a burst
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  std::vector<double> latency;
  {
    std::lock_guard lock(mu);
    for (const auto& [name, t] : berthd_seen)
      if (auto k = kernel_seen.find(name); k != kernel_seen.end() && name.rfind("blat", 0) == 0)
        latency.push_back(ms(t - k->second));
  }
  std::printf(
      "link event -> berthd event stream, beyond the kernel floor: p50 %.3f ms, p99 %.3f ms "
      "(%zu of %d links)\n",
      pct(latency, 0.5), pct(latency, 0.99), latency.size(), 2 * links);
  std::string del;
  for (int i = 0; i < links; ++i) del += "link del blat" + std::to_string(i) + "\n";
  std::ofstream(dir / "del") << del;
  sh("ip -batch " + (dir / "del").string());

  // 2. Convergence after a 4,096-link burst that overruns a 4 KiB buffer.
  std::string burst;
  for (int i = 0; i < 1024; ++i)
    burst += "link add bbst" + std::to_string(i) + " type veth peer name bbst" + std::to_string(i) +
             "p\n";
  for (int i = 0; i < 1024; ++i) burst += "link del bbst" + std::to_string(i) + "\n";
  std::ofstream(dir / "burst") << burst;
  // berthd is stopped during the burst (as a busy agent would be), so its socket overruns for
  // certain; the clock runs from the moment it continues.
  ::kill(pid, SIGSTOP);
  sh("ip -batch " + (dir / "burst").string());
  ::kill(pid, SIGCONT);
  const auto burst_end = Clock::now();
  auto names_kernel = [&] {
    std::set<std::string> s;
    const json doc = json::parse(sh("ip -j link show"));
    for (const auto& l : doc) s.insert(l["ifname"].get<std::string>());
    return s;
  };
  auto names_berthd = [&] {
    std::set<std::string> s;
    auto r = berth::net::unix_request(socket, "GET", "/v1/links");
    if (!r) {
      std::fprintf(stderr, "GET /v1/links: %s\n", r.error().message.c_str());
      return s;
    }
    const json doc = json::parse(r->body);
    for (const auto& l : doc["links"]) s.insert(l["name"].get<std::string>());
    return s;
  };
  const auto target = names_kernel();
  while (names_berthd() != target && Clock::now() - burst_end < std::chrono::seconds(30))
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  auto health = json::parse(berth::net::unix_request(socket, "GET", "/v1/health")->body);
  std::printf(
      "4,096-link burst (2,048 creations, 2,048 deletions), 4 KiB buffer: converged %.1f ms after "
      "berthd continued "
      "(stopped during the burst); overruns %d, resyncs %d\n",
      ms(Clock::now() - burst_end), health.value("netlink_overruns", 0),
      health.value("netlink_resyncs", 0));

  // 3. Idle wake-ups.
  stop = true;
  kernel.join();
  sh("ip link add bstop type veth peer name bstopp");  // ends the stream reader
  stream.join();
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  const long before = context_switches(pid);
  std::this_thread::sleep_for(std::chrono::seconds(idle_s));
  std::printf("idle for %d s: %ld context switches of berthd's threads\n", idle_s,
              context_switches(pid) - before);

  // 4. RSS with 1,000 berths and 4,096 links.
  std::string many;
  for (int i = 0; i < 2048; ++i)
    many += "link add bmany" + std::to_string(i) + " type veth peer name bmany" +
            std::to_string(i) + "p\n";
  std::ofstream(dir / "many") << many;
  sh("ip -batch " + (dir / "many").string());
  for (int i = 0; i < 1000; ++i) {
    auto r = berth::net::unix_request(socket, "PUT", "/v1/berths/manual/b" + std::to_string(i),
                                      R"({"cpus": 1, "shared": true, "numa": "any"})");
    if (!r || r->status != 200) {
      std::printf("create %d failed: %s\n", i, r ? r->body.c_str() : r.error().message.c_str());
      break;
    }
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  std::printf("RSS with 1,000 berths and %zu links: %ld KiB\n", names_berthd().size(),
              rss_kib(pid));
  return 0;
}
