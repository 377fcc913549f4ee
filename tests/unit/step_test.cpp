#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "core/step.hpp"

namespace berth {

TEST(Step, EveryForwardStepHasAnInverseThatRoundTrips) {
  std::vector<Step> forward{step::MakeNode{{"/dev/nvidia0", 195, 0}},
                            step::AllowDevice{195, 0},
                            step::SetCpuset{"0-3", "0"},
                            step::MoveLinkIn{"vf0", "ib0", "0000:01:00.2"},
                            step::SetMtu{"ib0", 4092},
                            step::AddAddress{"ib0", "10.0.0.2/24"},
                            step::AddRoute{"ib0", "0.0.0.0/0", "10.0.0.1"},
                            step::LinkUp{"ib0"}};
  for (const auto& s : forward) {
    std::string undo = std::holds_alternative<step::SetCpuset>(s) ? "0-7|0-1"
                       : std::holds_alternative<step::SetMtu>(s)  ? "1500"
                                                                  : "";
    auto inv = inverse(s, undo);
    ASSERT_TRUE(inv) << describe(s);
    for (const Step& x : {s, *inv}) {
      auto back = step_from_json(step_to_json(x));
      ASSERT_TRUE(back) << describe(x);
      EXPECT_EQ(describe(*back), describe(x));
    }
  }
  EXPECT_EQ(describe(*inverse(step::SetCpuset{"0", "0"}, "0-7|0-1")),
            "set cpuset cpus=0-7 mems=0-1");
  EXPECT_EQ(describe(*inverse(step::SetMtu{"ib0", 9000}, "1500")), "set MTU of ib0 to 1500");
}

TEST(Step, NothingToUndoWhenTheHostAlreadyHadIt) {
  EXPECT_FALSE(inverse(step::MakeNode{{"/dev/null", 1, 3}}, "existed"));
  EXPECT_FALSE(inverse(step::AllowDevice{1, 3}, "already-allowed"));
  EXPECT_FALSE(step_from_json(nlohmann::json::parse(R"({"op":"format_disk"})")));
  EXPECT_FALSE(step_from_json(nlohmann::json::parse(R"({"op":"set_mtu"})")));
}

}  // namespace berth
