#include "net/webhook_payload.hpp"

#include <simdjson.h>

namespace berth::net {
namespace {

using nlohmann::json;
namespace dom = simdjson::dom;

// Copies `key` of `from` into `to` when it is a string (or null), an unsigned integer, or an
// array of strings; a value of another type is an error.
enum class Kind { string, uint, strings };
bool copy(dom::object from, const char* key, Kind kind, json& to) {
  dom::element v;
  if (from[key].get(v)) return true;  // absent
  switch (kind) {
    case Kind::string: {
      if (v.is_null()) {
        to[key] = nullptr;
        return true;
      }
      std::string_view s;
      if (v.get_string().get(s)) return false;
      to[key] = std::string(s);
      return true;
    }
    case Kind::uint: {
      uint64_t n = 0;
      if (v.get_uint64().get(n)) return false;
      to[key] = n;
      return true;
    }
    case Kind::strings: {
      dom::array a;
      if (v.get_array().get(a)) return false;
      json out = json::array();
      for (dom::element e : a) {
        std::string_view s;
        if (e.get_string().get(s)) return false;
        out.push_back(std::string(s));
      }
      to[key] = out;
      return true;
    }
  }
  return false;
}

}  // namespace

json parse_webhook_payload(std::string_view body) {
  // The DOM parser validates the whole body, with the fastest kernel this CPU has (chosen at
  // run time); only the fields berth reads are copied out.
  thread_local dom::parser parser;
  const json discarded(json::value_t::discarded);
  dom::element doc;
  if (parser.parse(body.data(), body.size(), true).get(doc)) return discarded;
  dom::object top;
  if (doc.get_object().get(top)) return discarded;
  json out = json::object();
  if (!copy(top, "action", Kind::string, out)) return discarded;
  dom::object o;
  if (!top["workflow_job"].get_object().get(o)) {
    json job = json::object();
    if (!copy(o, "id", Kind::uint, job) || !copy(o, "run_id", Kind::uint, job) ||
        !copy(o, "labels", Kind::strings, job) || !copy(o, "runner_name", Kind::string, job))
      return discarded;
    out["workflow_job"] = job;
  }
  if (!top["repository"].get_object().get(o)) {
    json repo = json::object();
    if (!copy(o, "full_name", Kind::string, repo)) return discarded;
    dom::object owner;
    if (!o["owner"].get_object().get(owner)) {
      json login = json::object();
      if (!copy(owner, "login", Kind::string, login)) return discarded;
      repo["owner"] = login;
    }
    out["repository"] = repo;
  }
  if (!top["installation"].get_object().get(o)) {
    json inst = json::object();
    if (!copy(o, "id", Kind::uint, inst)) return discarded;
    out["installation"] = inst;
  }
  return out;
}

}  // namespace berth::net
