// Control API throughput beside the limit of its transport, in one run: berthd answering
// GET of one berth and of a 100-berth list, and a minimal responder on the same transport
// (berth's own Beast server on a unix socket, one reactor thread, no engine, no JSON encoding)
// returning a body of the same size, driven by the same keep-alive client.
// Usage: berth_bench_api_floor [seconds=3] [concurrency=2]
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include <boost/asio/io_context.hpp>
#include <nlohmann/json.hpp>

#include "bench/api_load.hpp"
#include "bench/fixture_berthd.hpp"
#include "net/http_client.hpp"
#include "net/http_server.hpp"

namespace {
namespace fs = std::filesystem;
using nlohmann::json;

berth::bench::LoadResult load(const std::string& socket, const std::string& target, double seconds,
                              int concurrency) {
  return berth::bench::run_load(socket, concurrency, seconds,
                                [&](berth::bench::KeepAliveClient& c, int, size_t) {
                                  return c.request("GET", target) == 200;
                                });
}

// The transport alone: the same server code answering a fixed body.
double floor_rate(const std::string& socket, const std::string& body, double seconds,
                  int concurrency) {
  boost::asio::io_context io(1);
  auto server = berth::net::UnixHttpServer::listen(
      io, {socket, 0600, std::nullopt},
      [&body](berth::net::Request req,
              berth::net::Peer) -> boost::asio::awaitable<berth::net::Reply> {
        co_return berth::net::json_response(200, body, req.version(), req.keep_alive());
      });
  if (!server) {
    std::fprintf(stderr, "%s\n", server.error().message.c_str());
    return 0;
  }
  std::thread t([&] { io.run(); });
  auto r = load(socket, "/", seconds, concurrency);
  io.stop();
  t.join();
  return r.per_second();
}

}  // namespace

int main(int argc, char** argv) {
  const double seconds = argc > 1 ? std::atof(argv[1]) : 3;
  const int concurrency = argc > 2 ? std::atoi(argv[2]) : 2;
  berth::bench::FixtureBerthd berthd("api", nlohmann::json::object());
  const fs::path& dir = berthd.dir;
  const std::string& socket = berthd.socket;
  for (int i = 0; i < 100; ++i)
    (void)berth::net::unix_request(socket, "PUT", "/v1/berths/manual/b" + std::to_string(i),
                                   R"({"cpus": 1, "shared": true, "numa": "any"})");
  std::printf("%-28s %12s %12s %8s\n", "call", "berthd req/s", "floor req/s", "ratio");
  for (const std::string target : {"/v1/berths/manual/b0", "/v1/berths"}) {
    const std::string body = berth::net::unix_request(socket, "GET", target)->body;
    auto b = load(socket, target, seconds, concurrency);
    const double f = floor_rate((dir / "floor.sock").string(), body, seconds, concurrency);
    std::printf("GET %-24s %12.0f %12.0f %8.2f   (%zu-byte body, %d connections)\n",
                target == "/v1/berths" ? "/v1/berths (100)" : target.c_str(), b.per_second(), f,
                f > 0 ? b.per_second() / f : 0, body.size(), concurrency);
  }
  return 0;
}
