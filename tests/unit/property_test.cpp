// Random sequences of requests and step failures never double-book a device, a CPU or an address.
#include <gtest/gtest.h>

#include <map>
#include <random>
#include <set>

#include <nlohmann/json.hpp>

#include "core/ledger.hpp"
#include "tests/fakes/inventories.hpp"
#include "tests/fakes/ledger_driver.hpp"

namespace berth {
namespace {

void check_no_double_booking(const Ledger& l) {
  std::map<std::string, std::string> gpu_exclusive;
  std::map<std::string, std::string> gpu_shared;
  std::map<std::string, std::string> vfs;
  std::map<int, std::string> cpus;
  std::map<std::string, std::string> addresses;
  for (const auto& [owner, b] : l.berths) {
    if (b.state == BerthState::released) continue;
    for (const auto& g : b.placement.gpus) {
      if (b.request.shared) {
        ASSERT_FALSE(gpu_exclusive.count(g))
            << g << " shared by " << owner << ", exclusive to " << gpu_exclusive[g];
        gpu_shared[g] = owner;
      } else {
        ASSERT_FALSE(gpu_exclusive.count(g) || gpu_shared.count(g))
            << g << " double-booked by " << owner;
        gpu_exclusive[g] = owner;
      }
    }
    for (const auto& v : b.placement.vfs)
      ASSERT_TRUE(vfs.emplace(v, owner).second) << v << " double-booked";
    if (!b.request.shared) {
      for (int c : b.placement.cpus)
        ASSERT_TRUE(cpus.emplace(c, owner).second) << "CPU " << c << " double-booked";
    }
    for (const auto& v : b.vfs)
      for (const auto& a : v.addresses)
        ASSERT_TRUE(addresses.emplace(a.address.to_string(), owner).second)
            << a.to_string() << " double-booked";
    if (b.state == BerthState::reserved || b.state == BerthState::released) {
      ASSERT_TRUE(b.done.empty()) << owner;
    }
  }
}

}  // namespace

TEST(Property, RandomSequencesNeverDoubleBook) {
  Context ctx;
  ctx.inventory = testing::two_socket(8);
  ctx.pools["p"] =
      *parse_pool_config(nlohmann::json::parse(R"({"name":"p","subnet":"10.0.0.0/28"})"));
  ctx.pools["q"] =
      *parse_pool_config(nlohmann::json::parse(R"({"name":"q","subnet":"fd00::/120"})"));
  for (unsigned seed = 1; seed <= 20; ++seed) {
    std::mt19937 rng(seed);
    auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<unsigned>(n)); };
    testing::LedgerDriver d(ctx);
    d.set_outcome([&](const action::RunStep& r) {
      bool fail = pick(25) == 0;
      return event::StepFinished{r.owner, !fail, "", fail ? "random failure" : ""};
    });
    for (int i = 0; i < 400; ++i) {
      std::string owner = "manual/o" + std::to_string(pick(12));
      switch (pick(4)) {
        case 0: {
          BerthRequest r;
          if (pick(3) == 0)
            r.gpu_ids = {std::to_string(pick(8))};
          else
            r.gpu_count = pick(5);
          r.vf_count = pick(3);
          r.numa = static_cast<NumaPolicy>(pick(3));
          r.cpu_count = pick(3) == 0 ? 0 : 1 + pick(6);
          r.shared = pick(4) == 0;
          if (r.vf_count > 0 && pick(2)) r.network.pool = pick(2) ? "p" : "q";
          d.run(event::Create{1, owner, r});
          break;
        }
        case 1:
          d.run(event::Attach{2, owner, Target{100 + pick(5), 1, ""}});
          break;
        case 2:
          d.run(event::Detach{3, owner});
          break;
        case 3:
          d.run(event::Release{4, owner});
          break;
      }
      check_no_double_booking(d.ledger);
      if (::testing::Test::HasFatalFailure()) return;
      for (const auto& [o, b] : d.ledger.berths)
        ASSERT_EQ(b.op, Operation::none) << "operation left open on " << o;
    }
  }
}

}  // namespace berth
