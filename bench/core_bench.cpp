// Core benchmarks: placement and ledger operations on a large node with 1,000 live berths, and the
// JSON codecs. Pure CPU: no system calls inside the timed loops.
#include <benchmark/benchmark.h>

#include <nlohmann/json.hpp>

#include "bench/large_node.hpp"
#include "core/ledger.hpp"
#include "core/placement.hpp"
#include "core/view.hpp"

namespace berth::bench {
namespace {

Context large_context() {
  Context ctx;
  ctx.inventory = large_node();
  ctx.pools["p"] =
      *parse_pool_config(nlohmann::json::parse(R"({"name":"p","subnet":"10.64.0.0/16"})"));
  ctx.max_tombstones = 256;
  return ctx;
}

// 1,000 live berths: shared GPU berths with one VF (and an address) each where VFs last, others
// with 1 CPU, as a busy node would hold.
Ledger live_ledger(Context& ctx, int n) {
  Ledger l;
  for (int i = 0; i < n; ++i) {
    BerthRequest r;
    r.shared = true;
    r.gpu_count = 1;
    r.cpu_count = 1;
    r.numa = NumaPolicy::any;
    if (i < 500) {
      r.vf_count = 1;
      r.network.pool = "p";
    }
    auto actions = apply(l, ctx, event::Create{1, "slurm/" + std::to_string(i), r});
    (void)actions;
  }
  return l;
}

void BM_PlaceOnLargeNode(benchmark::State& state) {
  auto ctx = large_context();
  auto ledger = live_ledger(ctx, static_cast<int>(state.range(0)));
  Usage u;
  for (const auto& [o, b] : ledger.berths) u.add(b);
  BerthRequest r;
  r.gpu_count = 2;
  r.vf_count = 1;
  r.cpu_count = 4;
  r.numa = NumaPolicy::single;
  r.shared = true;
  for (auto _ : state) benchmark::DoNotOptimize(place(ctx.inventory, u, r));
}
BENCHMARK(BM_PlaceOnLargeNode)->Arg(0)->Arg(1000);

// A shared berth with `gpus` GPUs and one VF addressed from pool "p".
BerthRequest shared_vf_request(int gpus, NumaPolicy numa) {
  BerthRequest r;
  r.shared = true;
  r.gpu_count = gpus;
  r.vf_count = 1;
  r.network.pool = "p";
  r.numa = numa;
  return r;
}

void BM_CreateReleaseWith1000Live(benchmark::State& state) {
  auto ctx = large_context();
  auto ledger = live_ledger(ctx, 1000);
  const BerthRequest r = shared_vf_request(1, NumaPolicy::any);
  for (auto _ : state) {
    auto a = apply(ledger, ctx, event::Create{1, "manual/bench", r});
    auto b = apply(ledger, ctx, event::Release{2, "manual/bench"});
    ledger.berths.erase("manual/bench");
    benchmark::DoNotOptimize(a);
    benchmark::DoNotOptimize(b);
  }
}
BENCHMARK(BM_CreateReleaseWith1000Live);

void BM_AttachDetachStateMachine(benchmark::State& state) {
  auto ctx = large_context();
  auto ledger = live_ledger(ctx, 1000);
  apply(ledger, ctx, event::Create{1, "manual/bench", shared_vf_request(2, NumaPolicy::single)});
  for (auto _ : state) {
    apply(ledger, ctx, event::Attach{2, "manual/bench", Target{42, 1, ""}});
    while (ledger.berths.at("manual/bench").state == BerthState::attaching)
      apply(ledger, ctx, event::StepFinished{"manual/bench", true, "", ""});
    apply(ledger, ctx, event::Detach{3, "manual/bench"});
    while (ledger.berths.at("manual/bench").state == BerthState::detaching)
      apply(ledger, ctx, event::StepFinished{"manual/bench", true, "", ""});
  }
}
BENCHMARK(BM_AttachDetachStateMachine);

// What one persist writes: the record of the berth that changed.
void BM_BerthRecordEncode(benchmark::State& state) {
  auto ctx = large_context();
  auto ledger = live_ledger(ctx, 1000);
  apply(ledger, ctx, event::Attach{2, "slurm/0", Target{42, 1, ""}});
  const Berth& b = ledger.berths.at("slurm/0");
  size_t bytes = 0;
  for (auto _ : state) {
    auto text = nlohmann::json(b).dump();
    bytes = text.size();
    benchmark::DoNotOptimize(text);
  }
  state.counters["bytes"] = static_cast<double>(bytes);
}
BENCHMARK(BM_BerthRecordEncode);

// What start-up reads: every record of a 1,000-berth ledger.
void BM_LedgerDecode(benchmark::State& state) {
  auto ctx = large_context();
  auto ledger = live_ledger(ctx, static_cast<int>(state.range(0)));
  std::vector<std::string> records;
  for (const auto& [o, b] : ledger.berths) records.push_back(nlohmann::json(b).dump());
  for (auto _ : state)
    for (const auto& r : records)
      benchmark::DoNotOptimize(berth_from_json(nlohmann::json::parse(r)));
}
BENCHMARK(BM_LedgerDecode)->Arg(1000);

void BM_BerthViewList(benchmark::State& state) {
  auto ctx = large_context();
  auto ledger = live_ledger(ctx, 1000);
  for (auto _ : state) {
    nlohmann::json list = nlohmann::json::array();
    for (const auto& [o, b] : ledger.berths) list.push_back(berth_view(b, ctx.inventory));
    benchmark::DoNotOptimize(list.dump());
  }
}
BENCHMARK(BM_BerthViewList);

void BM_ParseRequest(benchmark::State& state) {
  const auto body = nlohmann::json::parse(
      R"({"gpus":2,"vfs":1,"numa":"single","cpus":"numa","network":{"ifname":"ib0","pool":"p","gateway":"10.64.0.1","routes":[{"dst":"10.9.0.0/16","via":"10.64.0.1"}]}})");
  for (auto _ : state) benchmark::DoNotOptimize(parse_request(body));
}
BENCHMARK(BM_ParseRequest);

}  // namespace
}  // namespace berth::bench

BENCHMARK_MAIN();
