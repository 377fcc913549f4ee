// The CDI spec of the reserved berths, checked against the specification's rules.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "core/cdi.hpp"
#include "tests/fakes/inventories.hpp"

namespace berth {
namespace {
using nlohmann::json;

Ledger two_berths(Context& ctx) {
  Ledger ledger;
  BerthRequest two;
  two.gpu_count = 2;
  apply(ledger, ctx, event::Create{1, "slurm/42", two});
  apply(ledger, ctx, event::Create{2, "manual/lab-a.1", two});
  apply(ledger, ctx, event::Create{3, "github/7", two});
  apply(ledger, ctx, event::Release{4, "github/7"});
  return ledger;
}

TEST(Cdi, OneDevicePerReservedBerthWithItsNodesAndTheHook) {
  Context ctx{testing::two_socket(), {}, 256};
  auto ledger = two_berths(ctx);
  auto spec = cdi_spec(ledger, ctx.inventory, {"/usr/bin/berthctl", "/run/berth/berth.sock"});
  EXPECT_EQ(cdi_check(spec), "");
  EXPECT_EQ(spec["kind"], "berth.dev/berth");
  EXPECT_EQ(spec["cdiVersion"], "0.6.0");
  ASSERT_EQ(spec["devices"].size(), 2u) << spec.dump(1);  // the released berth is not there
  std::set<std::string> names;
  for (const auto& d : spec["devices"]) names.insert(d["name"]);
  EXPECT_EQ(names, (std::set<std::string>{"manual-lab-a.1", "slurm-42"}));
  const auto& edits = spec["devices"][1]["containerEdits"];
  // Two GPU nodes and the control node once.
  ASSERT_EQ(edits["deviceNodes"].size(), 3u) << edits.dump(1);
  EXPECT_EQ(edits["deviceNodes"][0]["type"], "c");
  EXPECT_EQ(edits["deviceNodes"][0]["major"], 195);
  EXPECT_EQ(edits["env"][0], "BERTH_OWNER=slurm/42");
  EXPECT_EQ(edits["hooks"][0]["hookName"], "createRuntime");
  EXPECT_EQ(edits["hooks"][0]["args"],
            json::array({"berthctl", "--socket", "/run/berth/berth.sock", "oci-hook"}));
}

TEST(Cdi, TheCheckCatchesWhatTheSpecificationForbids) {
  Context ctx{testing::two_socket(), {}, 256};
  auto ledger = two_berths(ctx);
  const json good = cdi_spec(ledger, ctx.inventory, {});
  ASSERT_EQ(cdi_check(good), "");
  auto broken = [&](auto change) {
    json s = good;
    change(s);
    return cdi_check(s);
  };
  EXPECT_NE(broken([](json& s) { s.erase("cdiVersion"); }), "");
  EXPECT_NE(broken([](json& s) { s["kind"] = "berth"; }), "");
  EXPECT_NE(broken([](json& s) { s["extra"] = 1; }), "");
  EXPECT_NE(broken([](json& s) { s["devices"][0]["name"] = "-bad"; }), "");
  EXPECT_NE(broken([](json& s) { s["devices"][0]["name"] = "a/b"; }), "");
  EXPECT_NE(broken([](json& s) { s["devices"][1]["name"] = s["devices"][0]["name"]; }), "");
  EXPECT_NE(broken([](json& s) {
              s["devices"][0]["containerEdits"]["deviceNodes"][0]["path"] = "dev/x";
            }),
            "");
  EXPECT_NE(
      broken([](json& s) { s["devices"][0]["containerEdits"]["hooks"][0]["path"] = "berthctl"; }),
      "");
  EXPECT_NE(
      broken([](json& s) { s["devices"][0]["containerEdits"]["hooks"][0]["hookName"] = "later"; }),
      "");
  EXPECT_NE(broken([](json& s) { s["devices"][0]["containerEdits"]["foo"] = 1; }), "");
  EXPECT_NE(broken([](json& s) { s["devices"][0]["containerEdits"]["env"][0] = "NOEQUALS"; }), "");
}

}  // namespace
}  // namespace berth
