// Container targets named by their runtime: the runtimes' documented output parsed into a pid.
#include <gtest/gtest.h>

#include "agent/host/runtime_targets.hpp"

namespace berth::agent {
namespace {

TEST(RuntimeTargets, ApptainerInstanceListAsDocumented) {
  // `apptainer instance list --json`, as apptainer 1.x prints it.
  const std::string out = R"({
    "instances": [
        {
            "instance": "lab-alice",
            "pid": 41234,
            "img": "/home/alice/cuda.sif",
            "ip": "",
            "logErrPath": "/home/alice/.apptainer/instances/logs/gpu01/alice/lab-alice.err",
            "logOutPath": "/home/alice/.apptainer/instances/logs/gpu01/alice/lab-alice.out"
        },
        {"instance": "other", "pid": 500, "img": "/x.sif", "ip": ""}
    ]
})";
  auto pid = pid_from_apptainer_list(out, "lab-alice");
  ASSERT_TRUE(pid) << pid.error().message;
  EXPECT_EQ(*pid, 41234);
  auto none = pid_from_apptainer_list(out, "lab-bob");
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code, ErrorCode::target_not_found);
  EXPECT_FALSE(pid_from_apptainer_list(R"({"instances": []})", "x"));
  EXPECT_EQ(pid_from_apptainer_list("not json", "x").error().code, ErrorCode::internal);
  EXPECT_FALSE(pid_from_apptainer_list(R"({"instances":[{"instance":"x","pid":1}]})", "x"));
}

TEST(RuntimeTargets, LxcInfoAndRuncState) {
  EXPECT_EQ(*pid_from_lxc_info("3411\n", "alice"), 3411);
  auto stopped = pid_from_lxc_info("", "alice");
  ASSERT_FALSE(stopped);
  EXPECT_NE(stopped.error().message.find("not running"), std::string::npos);
  EXPECT_FALSE(pid_from_lxc_info("State: RUNNING\n", "alice"));
  EXPECT_EQ(*pid_from_runc_state(R"({"id":"c1","pid":77,"status":"running"})", "c1"), 77);
  EXPECT_EQ(pid_from_runc_state(R"({"id":"c1","pid":0,"status":"stopped"})", "c1").error().code,
            ErrorCode::target_not_found);
  EXPECT_EQ(
      lxc_info_argv("lxc-info", "/var/lib/lxc2", "alice"),
      (std::vector<std::string>{"lxc-info", "-P", "/var/lib/lxc2", "-n", "alice", "-H", "-p"}));
}

TEST(RuntimeTargets, IdsAreCheckedWithTheRuntimesOwnRules) {
  for (const char* ok : {"c1", "job-42", "a.b_c+d"}) EXPECT_TRUE(valid_runc_id(ok)) << ok;
  for (std::string bad : {std::string(""), std::string("-c"), std::string("a/b"),
                          std::string("a b"), std::string("a\0b", 3)})
    EXPECT_FALSE(valid_runc_id(bad)) << bad;
  EXPECT_TRUE(valid_container_name("alice"));
  EXPECT_FALSE(valid_container_name("-alice"));
  EXPECT_FALSE(valid_container_name("../alice"));
  EXPECT_FALSE(valid_container_name(std::string(129, 'a')));
}

}  // namespace
}  // namespace berth::agent
