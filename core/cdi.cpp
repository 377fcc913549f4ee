#include "core/cdi.hpp"

#include <set>

#include <nlohmann/json.hpp>

namespace berth {
namespace {
using nlohmann::json;

bool name_char(char c, bool first) {
  bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
  return alnum || (!first && (c == '_' || c == '.' || c == ':' || c == '-'));
}

std::string unknown_key(const json& j, const std::set<std::string>& known,
                        const std::string& where) {
  if (!j.is_object()) return where + " must be an object";
  for (const auto& [k, v] : j.items())
    if (!known.count(k)) return where + ": unknown field '" + k + "'";
  return {};
}

bool absolute(const json& j, const char* key) {
  return j.contains(key) && j[key].is_string() && !j[key].get<std::string>().empty() &&
         j[key].get<std::string>()[0] == '/';
}

std::string check_edits(const json& e, const std::string& where) {
  if (auto u = unknown_key(
          e, {"env", "deviceNodes", "hooks", "mounts", "intelRdt", "additionalGids"}, where);
      !u.empty())
    return u;
  if (e.contains("env")) {
    if (!e["env"].is_array()) return where + ".env must be an array";
    for (const auto& v : e["env"])
      if (!v.is_string() || v.get<std::string>().find('=') == std::string::npos)
        return where + ".env entries are KEY=VALUE strings";
  }
  if (e.contains("deviceNodes")) {
    for (const auto& d : e["deviceNodes"]) {
      if (auto u = unknown_key(d,
                               {"path", "hostPath", "type", "major", "minor", "fileMode",
                                "permissions", "uid", "gid"},
                               where + ".deviceNodes[]");
          !u.empty())
        return u;
      if (!absolute(d, "path")) return where + ".deviceNodes[].path must be an absolute path";
      if (d.contains("hostPath") && !absolute(d, "hostPath"))
        return where + ".deviceNodes[].hostPath must be an absolute path";
      if (d.contains("type") && d["type"] != "c" && d["type"] != "b" && d["type"] != "u" &&
          d["type"] != "p")
        return where + ".deviceNodes[].type must be c, b, u or p";
      if (d.contains("permissions")) {
        auto p = d["permissions"].get<std::string>();
        if (p.empty() || p.find_first_not_of("rwm") != std::string::npos)
          return where + ".deviceNodes[].permissions is a combination of r, w, m";
      }
    }
  }
  if (e.contains("hooks")) {
    static const std::set<std::string> stages{"prestart",       "createRuntime", "createContainer",
                                              "startContainer", "poststart",     "poststop"};
    for (const auto& h : e["hooks"]) {
      if (auto u =
              unknown_key(h, {"hookName", "path", "args", "env", "timeout"}, where + ".hooks[]");
          !u.empty())
        return u;
      if (!h.contains("hookName") || !stages.count(h["hookName"].get<std::string>()))
        return where + ".hooks[].hookName must be an OCI hook stage";
      if (!absolute(h, "path")) return where + ".hooks[].path must be an absolute path";
    }
  }
  return {};
}

}  // namespace

std::string cdi_device_name(const std::string& owner) {
  std::string out = owner;
  for (auto& c : out)
    if (c == '/') c = '-';
  return out;
}

json cdi_spec(const Ledger& ledger, const Inventory& inventory, const CdiOptions& opt) {
  json devices = json::array();
  for (const auto& [owner, b] : ledger.berths) {
    if (b.state == BerthState::released) continue;
    json nodes = json::array();
    std::set<std::string> seen;
    for (const auto& pci : b.placement.gpus) {
      const Gpu* g = inventory.gpu_by_id(pci);
      if (!g) continue;
      for (const auto& d : g->devices) {
        if (!seen.insert(d.path).second) continue;
        nodes.push_back({{"path", d.path},
                         {"type", "c"},
                         {"major", d.major},
                         {"minor", d.minor},
                         {"permissions", "rw"}});
      }
    }
    json args = json::array({"berthctl"});
    if (!opt.socket.empty()) args.insert(args.end(), {"--socket", opt.socket});
    args.push_back("oci-hook");
    json edits = {
        {"env", json::array({"BERTH_OWNER=" + owner})},
        {"hooks",
         json::array({{{"hookName", "createRuntime"}, {"path", opt.hook_path}, {"args", args}}})}};
    if (!nodes.empty()) edits["deviceNodes"] = nodes;
    devices.push_back({{"name", cdi_device_name(owner)}, {"containerEdits", edits}});
  }
  return {{"cdiVersion", kCdiVersion}, {"kind", kCdiKind}, {"devices", devices}};
}

std::string cdi_check(const json& spec) {
  if (auto u = unknown_key(spec, {"cdiVersion", "kind", "annotations", "devices", "containerEdits"},
                           "spec");
      !u.empty())
    return u;
  if (!spec.contains("cdiVersion") || !spec["cdiVersion"].is_string())
    return "spec.cdiVersion is required";
  if (!spec.contains("kind") || !spec["kind"].is_string()) return "spec.kind is required";
  auto kind = spec["kind"].get<std::string>();
  auto slash = kind.find('/');
  if (slash == std::string::npos || slash == 0 || slash + 1 == kind.size() ||
      kind.find('/', slash + 1) != std::string::npos)
    return "spec.kind must be vendor/class";
  if (!spec.contains("devices") || !spec["devices"].is_array()) return "spec.devices is required";
  std::set<std::string> names;
  for (const auto& d : spec["devices"]) {
    if (auto u = unknown_key(d, {"name", "annotations", "containerEdits"}, "device"); !u.empty())
      return u;
    if (!d.contains("name") || !d["name"].is_string() || d["name"].get<std::string>().empty())
      return "device.name is required";
    auto name = d["name"].get<std::string>();
    for (size_t i = 0; i < name.size(); ++i)
      if (!name_char(name[i], i == 0)) return "device name '" + name + "' breaks the CDI syntax";
    if (!names.insert(name).second) return "device name '" + name + "' appears twice";
    if (!d.contains("containerEdits")) return "device " + name + ": containerEdits is required";
    if (auto e = check_edits(d["containerEdits"], "device " + name + ".containerEdits"); !e.empty())
      return e;
  }
  if (spec.contains("containerEdits"))
    if (auto e = check_edits(spec["containerEdits"], "spec.containerEdits"); !e.empty()) return e;
  return {};
}

}  // namespace berth
