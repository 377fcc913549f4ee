// Webhook verification + enqueue over loopback, driven from C++ so that the load generator is not
// the bottleneck: a Node client spends about as much CPU per request as either server, which hides
// the servers' own difference. Every request is built and signed (HMAC-SHA256 of the exact body,
// as GitHub and octokit's sign() do) before the clock starts; each carries a new workflow_job id,
// so every one is a real verify + enqueue. Targets are measured in interleaved rounds, one run.
//   berth_bench_webhook_load TEMPLATE SECRET REQUESTS CONCURRENCY FIRST_ID NAME=HOST:PORT:PID...
// Prints one JSON line per target: the medians over the rounds of requests/s, p50/p99 latency,
// the target's CPU per request (utime+stime from /proc/PID/stat) and the client's own.
#include <sys/resource.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

#include "bench/process.hpp"
#include "bench/stats.hpp"
#include "net/webhook_signature.hpp"

namespace {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::ip::tcp;
using berth::bench::Clock;

struct Target {
  std::string name, host;
  unsigned short port = 0;
  pid_t pid = 0;
  std::vector<nlohmann::json> rounds;
};

std::vector<std::string> build_requests(const nlohmann::ordered_json& queued,
                                        const std::string& secret, size_t n, long long first_id,
                                        const std::string& host) {
  std::vector<std::string> out;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    auto payload = queued;
    const long long id = first_id + static_cast<long long>(i);
    payload["workflow_job"]["id"] = id;
    const std::string body = payload.dump();
    std::ostringstream req;
    req << "POST /v1/webhooks/github HTTP/1.1\r\nHost: " << host
        << "\r\nContent-Type: application/json\r\nUser-Agent: GitHub-Hookshot/bench"
        << "\r\nX-GitHub-Event: workflow_job\r\nX-GitHub-Delivery: bench-" << id
        << "\r\nX-Hub-Signature-256: sha256=" << berth::net::hmac_sha256_hex(secret, body)
        << "\r\nContent-Length: " << body.size() << "\r\n\r\n"
        << body;
    out.push_back(req.str());
  }
  return out;
}

double own_cpu_ms() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  auto ms = [](timeval t) {
    return static_cast<double>(t.tv_sec) * 1000.0 + static_cast<double>(t.tv_usec) / 1000.0;
  };
  return ms(u.ru_utime) + ms(u.ru_stime);
}

struct Round {
  size_t failed = 0;
  std::vector<double> latency_ms;
};

// `concurrency` keep-alive connections, each sending the next unsent request as soon as its last
// answer is in; one thread.
Round run_round(const Target& t, const std::vector<std::string>& requests, int concurrency) {
  asio::io_context io;
  Round round;
  round.latency_ms.reserve(requests.size());
  size_t next = 0;
  const tcp::endpoint to(asio::ip::make_address(t.host), t.port);
  for (int c = 0; c < concurrency; ++c) {
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
          tcp::socket socket(io);
          auto [cec] = co_await socket.async_connect(to, asio::as_tuple(asio::use_awaitable));
          if (cec) co_return;
          socket.set_option(tcp::no_delay(true));
          beast::flat_buffer buffer;
          while (next < requests.size()) {
            const std::string& req = requests[next++];
            const auto t0 = Clock::now();
            auto [wec, wn] = co_await asio::async_write(socket, asio::buffer(req),
                                                        asio::as_tuple(asio::use_awaitable));
            http::response<http::string_body> res;
            beast::error_code rec = wec;
            if (!rec)
              std::tie(rec, std::ignore) = co_await http::async_read(
                  socket, buffer, res, asio::as_tuple(asio::use_awaitable));
            round.latency_ms.push_back(berth::bench::ms_since(t0));
            if (rec || res.result_int() >= 300) ++round.failed;
            if (rec) co_return;
          }
        },
        asio::detached);
  }
  io.run();
  round.failed += requests.size() - round.latency_ms.size();
  return round;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 7) {
    std::cerr << "usage: " << argv[0]
              << " TEMPLATE SECRET REQUESTS CONCURRENCY FIRST_ID NAME=HOST:PORT:PID...\n"
                 "  TEMPLATE: a workflow_job payload (JSON); each request gets its own job id\n";
    return 2;
  }
  std::ifstream in(argv[1]);
  const auto queued = nlohmann::ordered_json::parse(in);
  const std::string secret = argv[2];
  const size_t n = std::stoul(argv[3]);
  const int concurrency = std::stoi(argv[4]);
  long long first_id = std::stoll(argv[5]);
  std::vector<Target> targets;
  for (int i = 6; i < argc; ++i) {
    std::string spec = argv[i];
    Target t;
    auto eq = spec.find('='), c1 = spec.find(':', eq), c2 = spec.rfind(':');
    t.name = spec.substr(0, eq);
    t.host = spec.substr(eq + 1, c1 - eq - 1);
    t.port = static_cast<unsigned short>(std::stoi(spec.substr(c1 + 1, c2 - c1 - 1)));
    t.pid = std::stoi(spec.substr(c2 + 1));
    targets.push_back(t);
  }
  constexpr int kRounds = 3;
  // A warm-up of 200 per target, then interleaved rounds so each sees the same machine state.
  for (int r = -1; r < kRounds; ++r) {
    for (auto& t : targets) {
      const size_t count = r < 0 ? 200 : n;
      auto requests = build_requests(queued, secret, count, first_id, t.host);
      first_id += static_cast<long long>(count);
      const double cpu0 = berth::bench::process_cpu_seconds(t.pid) * 1000.0, own0 = own_cpu_ms();
      const auto t0 = Clock::now();
      Round round = run_round(t, requests, concurrency);
      const double secs = berth::bench::ms_since(t0) / 1000.0;
      const double cpu = berth::bench::process_cpu_seconds(t.pid) * 1000.0 - cpu0,
                   own = own_cpu_ms() - own0;
      if (r < 0) continue;
      auto s = berth::bench::summarize(round.latency_ms);
      t.rounds.push_back(
          {{"rps", static_cast<double>(count) / secs},
           {"p50_ms", s.p50},
           {"p99_ms", s.p99},
           {"failed", round.failed},
           {"cpu_us_per_request", cpu * 1000.0 / static_cast<double>(count)},
           {"client_cpu_us_per_request", own * 1000.0 / static_cast<double>(count)}});
    }
  }
  for (auto& t : targets) {
    auto median = [&](const char* key) {
      std::vector<double> v;
      for (auto& r : t.rounds) v.push_back(r[key].get<double>());
      std::sort(v.begin(), v.end());
      return v[v.size() / 2];
    };
    size_t failed = 0;
    for (auto& r : t.rounds) failed += r["failed"].get<size_t>();
    nlohmann::ordered_json line = {
        {"server", t.name},
        {"client", "c++"},
        {"requests", n},
        {"concurrency", concurrency},
        {"failed", failed},
        {"rps", std::llround(median("rps"))},
        {"p50_ms", std::round(median("p50_ms") * 1000) / 1000},
        {"p99_ms", std::round(median("p99_ms") * 1000) / 1000},
        {"cpu_us_per_request", std::llround(median("cpu_us_per_request"))},
        {"client_cpu_us_per_request", std::llround(median("client_cpu_us_per_request"))}};
    std::cout << line.dump() << std::endl;
  }
  return 0;
}
