#include <gtest/gtest.h>

#include "core/cpulist.hpp"
#include "core/ip.hpp"

namespace berth {

TEST(CpuList, ParsesRangesAndSingles) {
  auto c = parse_cpulist("0-3,8,10-11\n");
  ASSERT_TRUE(c);
  EXPECT_EQ(*c, (std::vector<int>{0, 1, 2, 3, 8, 10, 11}));
  EXPECT_TRUE(parse_cpulist("")->empty());
}

TEST(CpuList, RejectsGarbage) {
  for (const char* bad : {"a", "3-1", "1,,2", "-1", "1-", "99999999"})
    EXPECT_FALSE(parse_cpulist(bad)) << bad;
}

TEST(CpuList, FormatsCompactly) {
  EXPECT_EQ(format_cpulist({3, 0, 1, 2, 8, 10, 11, 11}), "0-3,8,10-11");
  EXPECT_EQ(format_cpulist({}), "");
}

TEST(Ip, ParsesV4AndV6) {
  auto a = parse_ip("10.0.0.5");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->family, 4);
  EXPECT_EQ(a->to_string(), "10.0.0.5");
  auto b = parse_ip("2001:db8::1");
  ASSERT_TRUE(b);
  EXPECT_EQ(b->family, 6);
  EXPECT_EQ(b->to_string(), "2001:db8::1");
  EXPECT_FALSE(parse_ip("10.0.0.256"));
  EXPECT_EQ(parse_ip("nope").error().code, ErrorCode::bad_address);
}

TEST(Ip, CidrNeedsPrefixUnlessBareAllowed) {
  EXPECT_FALSE(parse_cidr("10.0.0.1"));
  EXPECT_TRUE(parse_cidr("10.0.0.1", true));
  EXPECT_FALSE(parse_cidr("10.0.0.1/33"));
  EXPECT_FALSE(parse_cidr("10.0.0.1/"));
  EXPECT_FALSE(parse_cidr("10.0.0.1/x"));
  auto c = parse_cidr("10.1.2.3/16");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->network().to_string(), "10.1.0.0");
  EXPECT_TRUE(c->contains(*parse_ip("10.1.255.1")));
  EXPECT_FALSE(c->contains(*parse_ip("10.2.0.1")));
  EXPECT_FALSE(c->contains(*parse_ip("::1")));
}

TEST(Ip, AdvanceCarriesAndDetectsOverflow) {
  auto a = *parse_ip("10.0.0.255");
  ASSERT_TRUE(a.advance(1));
  EXPECT_EQ(a.to_string(), "10.0.1.0");
  auto b = *parse_ip("255.255.255.255");
  EXPECT_FALSE(b.advance(1));
  auto c = *parse_ip("2001:db8::ffff");
  ASSERT_TRUE(c.advance(1));
  EXPECT_EQ(c.to_string(), "2001:db8::1:0");
}

}  // namespace berth
