// MIG instances and other vendors' GPUs: discovery from a fixture (proc_root, sysfs, dev), the
// config map, placement by instance and what an attach plan gives the container.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "agent/app/config.hpp"
#include "agent/host/discovery.hpp"
#include "core/ledger.hpp"
#include "core/plan.hpp"
#include "core/view.hpp"
#include "tests/fakes/gpu_kinds_fixture.hpp"
#include "tests/fakes/ledger_driver.hpp"

namespace berth::agent {
namespace {

namespace fs = std::filesystem;

class GpuKinds : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("berth-gpu-kinds-" + std::to_string(::getpid()));
    config_ = berth::testing::gpu_kinds_fixture(root_);
  }
  void TearDown() override { fs::remove_all(root_); }
  fs::path root_;
  Config config_;
};

std::vector<std::string> paths(const Gpu& g) {
  std::vector<std::string> out;
  for (const auto& d : g.devices) out.push_back(d.path);
  return out;
}

TEST_F(GpuKinds, AGpuInMigModeIsHandedOutByItsInstancesWithTheirCapabilityNodes) {
  auto d = discover(config_);
  ASSERT_TRUE(d) << d.error().message;
  const auto& inv = d->inventory;
  EXPECT_FALSE(inv.gpu_by_id("0000:17:00.0")) << "a GPU in MIG mode is not placeable whole";
  EXPECT_FALSE(inv.gpu_by_index(0));
  const Gpu* a = inv.gpu_by_id("0000:17:00.0/gi1/ci0");
  const Gpu* b = inv.gpu_by_id("0000:17:00.0/gi2/ci0");
  ASSERT_TRUE(a && b);
  EXPECT_EQ(paths(*a),
            (std::vector<std::string>{"/dev/nvidia0", "/dev/nvidia-caps/nvidia-cap30",
                                      "/dev/nvidia-caps/nvidia-cap31", "/dev/nvidiactl"}));
  // The major is nvidia-caps' from /proc/devices, the minor the access file's.
  EXPECT_EQ(a->devices[1].major, 4u);
  EXPECT_EQ(a->devices[1].minor, 30u);
  EXPECT_EQ(b->devices[2].minor, 33u);
  EXPECT_EQ(a->index, 0);
  EXPECT_EQ(a->numa, 0);
  // The other NVIDIA GPUs are whole as before.
  ASSERT_TRUE(inv.gpu_by_id("0000:31:00.0"));
  EXPECT_EQ(inv.gpu_by_id("0000:31:00.0")->mig, "");
}

TEST_F(GpuKinds, AnotherVendorsGpuGetsTheNodesItsRuleNames) {
  auto d = discover(config_);
  ASSERT_TRUE(d) << d.error().message;
  const Gpu* amd = d->inventory.gpu_by_id(std::string(berth::testing::kAmdGpu));
  ASSERT_TRUE(amd);
  EXPECT_EQ(paths(*amd), (std::vector<std::string>{"/dev/dri/renderD128", "/dev/kfd"}));
  EXPECT_EQ(amd->vendor, "0x1002");
  EXPECT_EQ(amd->numa, 1);
  EXPECT_EQ(amd->index, 8) << "numbered after NVIDIA's minors 0..7";
  // Its card node is not given: the rule asks for the render node only.
  EXPECT_TRUE(d->warnings.empty()) << d->warnings.front();
}

TEST_F(GpuKinds, WithoutARuleAnotherVendorsDeviceIsNotAGpu) {
  config_.gpu_vendors.clear();
  auto d = discover(config_);
  ASSERT_TRUE(d);
  EXPECT_FALSE(d->inventory.gpu_by_id(std::string(berth::testing::kAmdGpu)));
}

TEST_F(GpuKinds, ACapabilityNodeWithOtherNumbersThanTheDriversIsNotTrusted) {
  fs::remove(root_ / "dev/nvidia-caps/nvidia-cap31");
  fs::create_symlink("/dev/tty39", root_ / "dev/nvidia-caps/nvidia-cap31");
  auto d = discover(config_);
  ASSERT_TRUE(d);
  EXPECT_FALSE(d->inventory.gpu_by_id("0000:17:00.0/gi1/ci0"));
  EXPECT_TRUE(d->inventory.gpu_by_id("0000:17:00.0/gi2/ci0"));
  ASSERT_FALSE(d->warnings.empty());
  EXPECT_NE(d->warnings.front().find("the driver says 4:31"), std::string::npos)
      << d->warnings.front();
}

TEST_F(GpuKinds, MigInstancesWithoutANvidiaCapsDriverAreAWarning) {
  std::ofstream(root_ / "proc/devices") << "Character devices:\n  1 mem\n";
  auto d = discover(config_);
  ASSERT_TRUE(d);
  EXPECT_FALSE(d->inventory.gpu_by_id("0000:17:00.0/gi1/ci0"));
  ASSERT_FALSE(d->warnings.empty());
  EXPECT_NE(d->warnings.front().find("no nvidia-caps driver"), std::string::npos);
}

TEST_F(GpuKinds, PlacementNamesInstancesAndAPlanGivesTheirNodes) {
  auto d = discover(config_);
  ASSERT_TRUE(d);
  Context ctx;
  ctx.inventory = d->inventory;
  berth::testing::LedgerDriver driver(ctx);
  BerthRequest r;
  r.gpu_ids = {"0000:17:00.0/gi2/ci0", std::string(berth::testing::kAmdGpu)};
  r.numa = NumaPolicy::any;
  ASSERT_FALSE(driver.one(event::Create{1, "manual/a", r}));
  std::vector<std::string> steps;
  for (const auto& s : attach_plan(driver.ledger.berths.at("manual/a"), ctx.inventory))
    steps.push_back(describe(s));
  const auto& ctl_node = ctx.inventory.gpu_by_id("0000:31:00.0")->devices.back();
  const std::string ctl = std::to_string(ctl_node.major) + ":" + std::to_string(ctl_node.minor);
  const std::vector<std::string> expected{
      "create device node /dev/nvidia0 (10:229)",
      "allow device c 10:229 in the devices cgroup",
      "create device node /dev/nvidia-caps/nvidia-cap32 (4:32)",
      "allow device c 4:32 in the devices cgroup",
      "create device node /dev/nvidia-caps/nvidia-cap33 (4:33)",
      "allow device c 4:33 in the devices cgroup",
      "create device node /dev/nvidiactl (" + ctl + ")",
      "allow device c " + ctl + " in the devices cgroup",
      "create device node /dev/dri/renderD128 (4:34)",
      "allow device c 4:34 in the devices cgroup",
      "create device node /dev/kfd (4:35)",
      "allow device c 4:35 in the devices cgroup",
  };
  EXPECT_EQ(std::vector<std::string>(steps.begin(), steps.begin() + expected.size()), expected);
  // The ledger keeps the instance; a second berth may take the other instance of the same GPU
  // but not this one.
  const auto view = berth_view(driver.ledger.berths.at("manual/a"), ctx.inventory);
  EXPECT_EQ(view["gpus"][0]["id"], "0000:17:00.0/gi2/ci0");
  EXPECT_EQ(view["gpus"][0]["pci"], "0000:17:00.0");
  EXPECT_EQ(view["gpus"][0]["mig"], "gi2/ci0");
  BerthRequest same;
  same.gpu_ids = {"0000:17:00.0/gi2/ci0"};
  auto held = driver.one(event::Create{2, "manual/b", same});
  ASSERT_TRUE(held);
  EXPECT_NE(held->message.find("held by manual/a"), std::string::npos) << held->message;
  BerthRequest other;
  other.gpu_ids = {"0000:17:00.0/gi1/ci0"};
  other.shared = true;  // manual/a holds every CPU of this one-CPU-per-node fixture
  auto taken = driver.one(event::Create{3, "manual/c", other});
  EXPECT_FALSE(taken) << taken->message;
  // The whole GPU by index or address: refused with its instances named.
  BerthRequest whole;
  whole.gpu_ids = {"0"};
  auto refused = driver.one(event::Create{4, "manual/d", whole});
  ASSERT_TRUE(refused);
  EXPECT_NE(refused->message.find("in MIG mode; name its instances: 0000:17:00.0/gi1/ci0, "
                                  "0000:17:00.0/gi2/ci0"),
            std::string::npos)
      << refused->message;
  // The ledger round-trips the instance id.
  nlohmann::json j = driver.ledger.berths.at("manual/a");
  auto back = berth_from_json(j);
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(back->placement.gpus, driver.ledger.berths.at("manual/a").placement.gpus);
}

TEST(GpuVendorConfig, RulesAreCheckedAndNormalized) {
  auto c = parse_config(
      R"({"gpu_vendors": [{"vendor": "0x1002", "classes": ["0x0300", "0x0380"],
                           "nodes": ["drm:render", "kfd"]},
                          {"vendor": "0x8086", "classes": ["0x0B40"], "nodes": ["accel"]}]})");
  ASSERT_TRUE(c) << c.error().message;
  ASSERT_EQ(c->gpu_vendors.size(), 2u);
  EXPECT_EQ(c->gpu_vendors[1].classes, std::vector<std::string>{"0x0b40"});
  for (const auto& [text, why] : std::vector<std::pair<std::string, std::string>>{
           {R"([{"vendor": "0x10de", "classes": ["0x0300"], "nodes": ["kfd"]}])", "built in"},
           {R"([{"vendor": "1002", "classes": ["0x0300"], "nodes": ["kfd"]}])", "vendor must"},
           {R"([{"vendor": "0x1002", "classes": [], "nodes": ["kfd"]}])", "classes must"},
           {R"([{"vendor": "0x1002", "classes": ["0x0300"], "nodes": ["../sda"]}])",
            "not drm:render"},
           {R"([{"vendor": "0x1002", "classes": ["0x0300"], "nodes": ["/dev/kfd"]}])",
            "not drm:render"},
           {R"([{"vendor": "0x1002", "classes": ["0x0300"], "nodes": ["kfd"], "x": 1}])",
            "unknown field 'x'"},
           {R"([{"vendor": "0x1002", "classes": ["0x0300"], "nodes": ["kfd"]},
                {"vendor": "0x1002", "classes": ["0x0300"], "nodes": ["drm:card"]}])",
            "appears in two rules"},
       }) {
    auto bad = parse_config(R"({"gpu_vendors": )" + text + "}");
    ASSERT_FALSE(bad) << text;
    EXPECT_NE(bad.error().message.find(why), std::string::npos) << bad.error().message;
  }
}

}  // namespace
}  // namespace berth::agent
