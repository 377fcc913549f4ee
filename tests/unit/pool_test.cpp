#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "core/pool.hpp"

namespace berth {

TEST(Pool, HandsOutRangeInOrderSkippingExclusionsAndGateway) {
  auto p = parse_pool_config(nlohmann::json::parse(
      R"({"name":"g","subnet":"10.0.0.0/24","ranges":["10.0.0.1-10.0.0.4"],"exclude":["10.0.0.2"],"gateway":"10.0.0.1"})"));
  ASSERT_TRUE(p) << p.error().message;
  std::set<IpAddress> used;
  std::vector<std::string> got;
  for (int i = 0; i < 2; ++i) {
    auto a = next_free_address(*p, used);
    ASSERT_TRUE(a);
    used.insert(a->address);
    got.push_back(a->to_string());
  }
  EXPECT_EQ(got, (std::vector<std::string>{"10.0.0.3/24", "10.0.0.4/24"}));
  auto none = next_free_address(*p, used);
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code, ErrorCode::pool_exhausted);
  used.erase(*parse_ip("10.0.0.3"));
  EXPECT_EQ(next_free_address(*p, used)->to_string(), "10.0.0.3/24");
}

TEST(Pool, WholeSubnetSkipsNetworkAndBroadcast) {
  auto p = parse_pool_config(nlohmann::json::parse(R"({"name":"s","subnet":"192.168.5.0/30"})"));
  ASSERT_TRUE(p);
  std::set<IpAddress> used;
  auto a = next_free_address(*p, used);
  used.insert(a->address);
  auto b = next_free_address(*p, used);
  used.insert(b->address);
  EXPECT_EQ(a->to_string(), "192.168.5.1/30");
  EXPECT_EQ(b->to_string(), "192.168.5.2/30");
  EXPECT_FALSE(next_free_address(*p, used));
}

TEST(Pool, Ipv6Range) {
  auto p = parse_pool_config(nlohmann::json::parse(
      R"({"name":"v6","subnet":"2001:db8::/64","ranges":["2001:db8::ffff-2001:db8::1:1"]})"));
  ASSERT_TRUE(p);
  std::set<IpAddress> used{*parse_ip("2001:db8::ffff")};
  EXPECT_EQ(next_free_address(*p, used)->to_string(), "2001:db8::1:0/64");
}

TEST(Pool, RejectsBadConfigNamingTheField) {
  for (const char* bad : {R"({"subnet":"10.0.0.0/24"})", R"({"name":"x","subnet":"10.0.0.0"})",
                          R"({"name":"x","subnet":"10.0.0.0/24","ranges":["10.0.1.1-10.0.1.5"]})",
                          R"({"name":"x","subnet":"10.0.0.0/24","ranges":["10.0.0.9-10.0.0.5"]})",
                          R"({"name":"x","subnet":"10.0.0.0/24","gateway":"10.9.0.1"})"}) {
    auto p = parse_pool_config(nlohmann::json::parse(bad));
    EXPECT_FALSE(p) << bad;
  }
}

}  // namespace berth
