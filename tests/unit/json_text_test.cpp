#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "core/github.hpp"
#include "core/json_text.hpp"

using namespace berth;
using nlohmann::json;

namespace {

// What nlohmann's own dump() writes for the same string, replacing bytes that are not UTF-8.
std::string dumped(const std::string& s) {
  return json(s).dump(-1, ' ', false, json::error_handler_t::replace);
}
std::string written(const std::string& s) {
  std::string out;
  append_json_string(out, s);
  return out;
}

TEST(JsonText, StringsAreEscapedAsNlohmannEscapesThem) {
  for (const std::string& s :
       {std::string(""), std::string("plain"), std::string("quote \" backslash \\ slash /"),
        std::string("\b\f\n\r\t"), std::string("\x01\x1f\x7f", 3), std::string("nul \0 inside", 12),
        std::string("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80"),  // 2, 3 and 4 byte sequences
        std::string("bad \xFF lead, \xC3 cut, \xE0\x80\x80 overlong, \xED\xA0\x80 surrogate"),
        std::string("\xF4\x90\x80\x80 above U+10FFFF, \xC0\xAF overlong slash")})
    EXPECT_EQ(written(s), dumped(s)) << json(s).dump(-1, ' ', true, json::error_handler_t::replace);
}

TEST(JsonText, ObjectsParseBackToTheirFields) {
  std::string out;
  JsonObjectText(out)
      .string("s", "x\"y")
      .number("u", uint64_t{18446744073709551615u})
      .number("i", int64_t{-5})
      .boolean("b", false)
      .strings("a", std::vector<std::string>{"p", "q"})
      .close();
  EXPECT_EQ(json::parse(out), json::parse(R"({"s":"x\"y","u":18446744073709551615,"i":-5,
                                              "b":false,"a":["p","q"]})"));
}

TEST(JsonText, ARunnersJournalLineIsItsJson) {
  github::Runner full;
  full.job = {42, 7, "octo/repo \"q\"", "octo", 99, {"gpu", "linux\n"}, "runner-1"};
  full.flavor = "gpu";
  full.state = github::State::stopping;
  full.seq = 12;
  full.name = "berth-42";
  full.took_job = 43;
  full.taken_by = "someone \xFF else";
  full.seen = {"queued", "in_progress"};
  full.queued_at = 1;
  full.started_at = 2;
  full.running_at = -3;
  full.finished_at = 4;
  full.outcome = "completed";
  full.backend_id = "1234";
  full.retry_at = 5;
  full.tombstone = true;
  for (const github::Runner& r : {github::Runner{}, full}) {
    std::string line;
    github::append_runner_line(line, r);
    ASSERT_EQ(line.back(), '\n');
    const json want = json::parse(json{{"runner", github::runner_to_json(r)}}.dump(
        -1, ' ', false, json::error_handler_t::replace));
    EXPECT_EQ(json::parse(line), want) << line;
  }
}

}  // namespace
