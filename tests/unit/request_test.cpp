#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "core/request.hpp"

namespace berth {
namespace {

Expected<BerthRequest> parse(const char* text) {
  return parse_request(nlohmann::json::parse(text));
}

}  // namespace

TEST(Request, ParsesAFullRequest) {
  auto r = parse(R"({"gpus":2,"vfs":1,"numa":"prefer","cpus":4,"shared":true,
    "network":{"ifname":"ib0","mtu":4092,"pool":"grid","gateway":"10.0.0.1","routes":[{"dst":"10.9.0.0/16","via":"10.0.0.2"}]}})");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->gpu_count, 2);
  EXPECT_EQ(r->numa, NumaPolicy::prefer);
  EXPECT_EQ(r->cpu_count, 4);
  EXPECT_TRUE(r->shared);
  EXPECT_EQ(r->network.mtu, 4092);
  ASSERT_EQ(r->network.routes.size(), 1u);
  // The JSON form parses back to the same request.
  auto again = parse_request(nlohmann::json(*r));
  ASSERT_TRUE(again);
  EXPECT_EQ(*again, *r);
}

TEST(Request, ErrorsNameTheField) {
  struct Case {
    const char* body;
    const char* field;
  };
  for (auto [body, field] : std::initializer_list<Case>{
           {R"({"gpus":-1})", "gpus"},
           {R"({"gpus":1,"gpu_ids":["0"]})", "gpu_ids"},
           {R"({"gpu_ids":["0","0"]})", "gpu_ids"},
           {R"({"numa":"both"})", "numa"},
           {R"({"cpus":"half"})", "cpus"},
           {R"({"colour":"red"})", "colour"},
           {R"({"vfs":1,"network":{"address":"10.0.0.1"}})", "network.address"},
           {R"({"vfs":1,"network":{"pool":"a","address":"10.0.0.1/24"}})", "network"},
           {R"({"network":{"pool":"a"}})", "network"},
           {R"({"vfs":1,"network":{"ifname":"much-too-long-name"}})", "network.ifname"},
           {R"({"vfs":1,"network":{"ifname":"../x"}})", "network.ifname"},
           {R"({"vfs":1,"network":{"mtu":10}})", "network.mtu"},
           {R"({"vfs":1,"network":{"address":"10.0.0.2/24","gateway":"::1"}})", "network.gateway"},
           {R"({"vfs":1,"network":{"gateway":"10.0.0.1"}})", "network"},
           {R"({"vfs":2,"network":{"address":"10.0.0.2/24"}})", "network.address"},
       }) {
    auto r = parse(body);
    ASSERT_FALSE(r) << body;
    EXPECT_NE(r.error().message.find(std::string("'") + field + "'"), std::string::npos)
        << body << " -> " << r.error().message;
  }
}

TEST(Request, BadAddressHasItsOwnCode) {
  auto r = parse(R"({"vfs":1,"network":{"address":"10.0.0.300/24"}})");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::bad_address);
}

TEST(Owner, AcceptsTheThreeKinds) {
  EXPECT_TRUE(validate_owner("slurm/12345"));
  EXPECT_TRUE(validate_owner("github/987654321"));
  EXPECT_TRUE(validate_owner("manual/alice-dev.1"));
  for (const char* bad :
       {"slurm", "slurm/", "k8s/x", "manual/a/b", "manual/..", "manual/a b", "/x"})
    EXPECT_FALSE(validate_owner(bad)) << bad;
}

}  // namespace berth

namespace berth {
namespace {

TEST(Request, AStandingBerthNamesExactlyOneContainer) {
  auto r = parse_request(nlohmann::json::parse(
      R"({"gpus": 1, "standing": {"lxc": "alice", "lxcpath": "/var/lib/lxc"}})"));
  ASSERT_TRUE(r) << r.error().message;
  ASSERT_TRUE(r->standing);
  EXPECT_EQ(r->standing->lxc, "alice");
  nlohmann::json back = *r;
  EXPECT_EQ(back["standing"],
            nlohmann::json::parse(R"({"lxc": "alice", "lxcpath": "/var/lib/lxc"})"));
  EXPECT_EQ(*parse_request(back), *r);
  for (const char* bad :
       {R"({"standing": {}})", R"({"standing": {"lxc": "a", "runc": "b"}})",
        R"({"standing": {"lxcpath": "/x"}})", R"({"standing": {"lxc": "a", "lxcpath": "x"}})",
        R"({"standing": {"pid": "7"}})", R"({"standing": "alice"})",
        // A NUL byte would cut the id short on runc's command line; a slash or a leading dash
        // would name another container or an option.
        R"({"standing": {"runc": "c1\u0000other"}})", R"({"standing": {"runc": "../c1"}})",
        R"({"standing": {"runc": "--root=/tmp"}})", R"({"standing": {"runc": ".."}})",
        R"({"standing": {"lxc": "a\u0000b"}})", R"({"standing": {"apptainer": "-x"}})"}) {
    auto e = parse_request(nlohmann::json::parse(bad));
    EXPECT_FALSE(e) << bad;
    if (!e) {
      EXPECT_NE(e.error().message.find("standing"), std::string::npos) << e.error().message;
    }
  }
  EXPECT_TRUE(validate_owner("lab/alice"));
}

}  // namespace
}  // namespace berth

namespace berth {

TEST(Request, RdmaIsolationIsAutoIsolatedOrShared) {
  auto r = parse_request(nlohmann::json::parse(R"({"vfs": 1, "network": {"rdma": "isolated"}})"));
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->network.rdma, "isolated");
  EXPECT_EQ(*parse_request(nlohmann::json(*r)), *r);
  EXPECT_EQ(parse_request(nlohmann::json::parse(R"({"vfs": 1})"))->network.rdma, "auto");
  for (const char* bad :
       {R"({"vfs": 1, "network": {"rdma": "yes"}})", R"({"vfs": 1, "network": {"rdma": true}})"}) {
    auto e = parse_request(nlohmann::json::parse(bad));
    ASSERT_FALSE(e) << bad;
    EXPECT_NE(e.error().message.find("network.rdma"), std::string::npos);
  }
}

}  // namespace berth
