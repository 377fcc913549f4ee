#pragma once
// JSON text written directly, for the lines written on hot paths (the runner journal): no DOM,
// so no map node and no string copy per field. Strings are escaped as nlohmann::json's dump()
// with error_handler_t::replace escapes them: bytes that are not UTF-8 become U+FFFD, so what
// is written always parses back.
#include <cstdint>
#include <string>
#include <string_view>

namespace berth {

// Appends `s` to `out` as a JSON string, quotes included.
void append_json_string(std::string& out, std::string_view s);

// One JSON object, its fields appended in the order given.
class JsonObjectText {
 public:
  explicit JsonObjectText(std::string& out) : out_(out) { out_ += '{'; }
  JsonObjectText& string(std::string_view key, std::string_view value);
  JsonObjectText& number(std::string_view key, uint64_t value);
  JsonObjectText& number(std::string_view key, int64_t value);
  JsonObjectText& boolean(std::string_view key, bool value);
  // A field whose value the caller appends to out() next (an object or array of its own).
  std::string& raw(std::string_view key);
  template <typename Strings>
  JsonObjectText& strings(std::string_view key, const Strings& values) {
    std::string& o = raw(key);
    o += '[';
    bool first = true;
    for (const auto& v : values) {
      if (!first) o += ',';
      first = false;
      append_json_string(o, v);
    }
    o += ']';
    return *this;
  }
  void close() { out_ += '}'; }

 private:
  void key(std::string_view k);
  std::string& out_;
  bool first_ = true;
};

}  // namespace berth
