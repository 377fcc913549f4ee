#include "agent/app/config.hpp"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <tuple>

#include <nlohmann/json.hpp>

namespace berth::agent {
namespace {

Error config_error(const std::string& field, const std::string& why) {
  return make_error(ErrorCode::bad_request, "config field '" + field + "': " + why);
}

bool pci_hex(const std::string& s) {
  if (s.size() != 6 || s[0] != '0' || s[1] != 'x') return false;
  return std::all_of(s.begin() + 2, s.end(),
                     [](char ch) { return std::isxdigit(static_cast<unsigned char>(ch)); });
}

std::string lower(std::string s) {
  for (auto& ch : s) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return s;
}

// A node under /dev named by the config: plain components only, so a rule cannot point a
// berth at something outside /dev.
bool dev_relative(const std::string& p) {
  if (p.empty() || p.front() == '/' || p.back() == '/') return false;
  std::istringstream in(p);
  for (std::string part; std::getline(in, part, '/');) {
    if (part.empty() || part == "." || part == "..") return false;
    for (char ch : part)
      if (!std::isalnum(static_cast<unsigned char>(ch)) && ch != '-' && ch != '_' && ch != '.')
        return false;
  }
  return true;
}

Expected<std::vector<GpuVendorRule>> parse_gpu_vendors(const nlohmann::json& v) {
  const std::string field = "gpu_vendors";
  if (!v.is_array()) return config_error(field, "must be an array of {vendor, classes, nodes}");
  std::vector<GpuVendorRule> rules;
  std::set<std::string> seen;
  for (const auto& r : v) {
    if (!r.is_object()) return config_error(field, "must be an array of {vendor, classes, nodes}");
    for (const auto& [key, value] : r.items())
      if (key != "vendor" && key != "classes" && key != "nodes")
        return config_error(field, "unknown field '" + key + "'");
    GpuVendorRule rule;
    if (!r.contains("vendor") || !r["vendor"].is_string() ||
        !pci_hex(r["vendor"].get<std::string>()))
      return config_error(field, "vendor must be a PCI vendor id like \"0x1002\"");
    rule.vendor = lower(r["vendor"].get<std::string>());
    if (rule.vendor == "0x10de")
      return config_error(field, "NVIDIA (0x10de) is built in and cannot be remapped");
    if (!r.contains("classes") || !r["classes"].is_array() || r["classes"].empty())
      return config_error(field, rule.vendor +
                                     ": classes must be a non-empty array like "
                                     "[\"0x0300\", \"0x0380\"]");
    for (const auto& c : r["classes"]) {
      if (!c.is_string() || !pci_hex(c.get<std::string>()))
        return config_error(field, rule.vendor + ": a class must be 4 hex digits like \"0x0380\"");
      rule.classes.push_back(lower(c.get<std::string>()));
      if (!seen.insert(rule.vendor + "/" + rule.classes.back()).second)
        return config_error(
            field, rule.vendor + " class " + rule.classes.back() + " appears in two rules");
    }
    if (!r.contains("nodes") || !r["nodes"].is_array() || r["nodes"].empty())
      return config_error(field, rule.vendor + ": nodes must be a non-empty array");
    for (const auto& n : r["nodes"]) {
      const std::string node = n.is_string() ? n.get<std::string>() : "";
      if (node != "drm:render" && node != "drm:card" && node != "accel" && !dev_relative(node))
        return config_error(field, rule.vendor + ": node '" + node +
                                       "' is not drm:render, drm:card, accel or a path under "
                                       "/dev like \"kfd\"");
      rule.nodes.push_back(node);
    }
    rules.push_back(std::move(rule));
  }
  return rules;
}

}  // namespace

Expected<Config> parse_config(const std::string& text, const std::string& base_dir) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    return make_error(ErrorCode::bad_json, std::string("config is not valid JSON: ") + e.what());
  }
  if (!j.is_object()) return make_error(ErrorCode::bad_request, "config must be a JSON object");
  Config c;
  const std::map<std::string, std::string*> paths{{"sysfs_root", &c.sysfs_root},
                                                  {"dev_root", &c.dev_root},
                                                  {"proc_root", &c.proc_root},
                                                  {"cgroup_root", &c.cgroup_root},
                                                  {"state_dir", &c.state_dir},
                                                  {"runtime_dir", &c.runtime_dir},
                                                  {"control_socket", &c.control_socket},
                                                  {"runc", &c.runc},
                                                  {"runc_root", &c.runc_root},
                                                  {"log_level", &c.log_level},
                                                  {"cdi_spec", &c.cdi_spec},
                                                  {"cdi_hook", &c.cdi_hook},
                                                  {"lxc_info", &c.lxc_info},
                                                  {"lxc_cgroup", &c.lxc_cgroup},
                                                  {"apptainer", &c.apptainer}};
  static const std::set<std::string> others{"control_socket_mode",
                                            "control_group",
                                            "pools",
                                            "passthrough_iommu_groups",
                                            "gpu_vendors",
                                            "$comment",
                                            "netlink_resync_s",
                                            "netlink_rcvbuf",
                                            "udev_source",
                                            "udev_subsystems",
                                            "slurm",
                                            "github",
                                            "http",
                                            "driver_check",
                                            "vf_rebind_drivers",
                                            "standing"};
  for (const auto& [key, value] : j.items()) {
    if (auto it = paths.find(key); it != paths.end()) {
      if (!value.is_string() || value.get<std::string>().empty())
        return config_error(key, "must be a non-empty string");
      *it->second = value.get<std::string>();
      bool is_path = key != "runc" && key != "log_level" && key != "runc_root" &&
                     key != "lxc_info" && key != "lxc_cgroup" && key != "apptainer";
      if (is_path && it->second->front() != '/') {
        if (base_dir.empty()) return config_error(key, "must be an absolute path");
        *it->second =
            std::filesystem::weakly_canonical(std::filesystem::path(base_dir) / *it->second)
                .string();
      }
    } else if (!others.count(key)) {
      return config_error(key, "unknown field");
    }
  }
  static const std::set<std::string> levels{"trace", "debug",    "info", "warn",
                                            "error", "critical", "off"};
  if (!levels.count(c.log_level))
    return config_error("log_level", "must be one of trace, debug, info, warn, error, off");
  if (j.contains("control_socket_mode")) {
    const auto& m = j["control_socket_mode"];
    static const std::map<std::string, unsigned> modes{
        {"0600", 0600}, {"0660", 0660}, {"0666", 0666}};
    if (!m.is_string() || !modes.count(m.get<std::string>()))
      return config_error("control_socket_mode", "must be \"0600\", \"0660\" or \"0666\"");
    c.control_socket_mode = modes.at(m.get<std::string>());
  }
  if (j.contains("control_group")) {
    if (!j["control_group"].is_string() || j["control_group"].get<std::string>().empty())
      return config_error("control_group", "must be a group name");
    c.control_group = j["control_group"].get<std::string>();
  }
  if (j.contains("passthrough_iommu_groups")) {
    const auto& g = j["passthrough_iommu_groups"];
    if (!g.is_array())
      return config_error("passthrough_iommu_groups", "must be an array of group numbers");
    for (const auto& n : g) {
      if (!n.is_number_unsigned())
        return config_error("passthrough_iommu_groups", "must be an array of group numbers");
      c.passthrough_iommu_groups.push_back(n.get<int>());
    }
  }
  if (j.contains("vf_rebind_drivers")) {
    const auto& v = j["vf_rebind_drivers"];
    auto driver_name = [](const nlohmann::json& d) {
      if (!d.is_string()) return false;
      const auto name = d.get<std::string>();
      return !name.empty() && name.size() < 64 &&
             name.find_first_not_of(
                 "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                 "0123456789_-") == std::string::npos;
    };
    if (!v.is_array() || !std::all_of(v.begin(), v.end(), driver_name))
      return config_error("vf_rebind_drivers",
                          "must be an array of kernel driver names like [\"mlx5_core\"] "
                          "([] never rebinds a VF)");
    c.vf_rebind_drivers = v.get<std::vector<std::string>>();
  }
  if (j.contains("gpu_vendors")) {
    auto rules = parse_gpu_vendors(j["gpu_vendors"]);
    if (!rules) return rules.error();
    c.gpu_vendors = std::move(*rules);
  }
  for (auto [key, field, min, max] :
       {std::tuple{"netlink_resync_s", &c.netlink_resync_s, 1u, 86400u},
        std::tuple{"netlink_rcvbuf", &c.netlink_rcvbuf, 4096u, 1u << 30}}) {
    if (!j.contains(key)) continue;
    const auto& v = j[key];
    if (!v.is_number_unsigned() || v.get<uint64_t>() < min || v.get<uint64_t>() > max)
      return config_error(
          key, "must be an integer in " + std::to_string(min) + ".." + std::to_string(max));
    *field = v.get<unsigned>();
  }
  if (j.contains("udev_source")) {
    static const std::set<std::string> sources{"auto", "udev", "kernel", "off"};
    const auto& v = j["udev_source"];
    if (!v.is_string() || !sources.count(v.get<std::string>()))
      return config_error("udev_source", "must be \"auto\", \"udev\", \"kernel\" or \"off\"");
    c.udev_source = v.get<std::string>();
  }
  if (j.contains("udev_subsystems")) {
    const auto& v = j["udev_subsystems"];
    if (!v.is_array())
      return config_error("udev_subsystems", "must be an array of subsystem names");
    c.udev_subsystems.clear();
    for (const auto& n : v) {
      if (!n.is_string() || n.get<std::string>().empty())
        return config_error("udev_subsystems", "must be an array of subsystem names");
      c.udev_subsystems.push_back(n.get<std::string>());
    }
  }
  {
    // Saving a durable record removes the runtime record of the same berth: if both live in one
    // directory, every reservation would delete itself.
    auto inside = [](const std::string& a, const std::string& b) {
      auto pa = std::filesystem::path(a).lexically_normal().string();
      auto pb = std::filesystem::path(b).lexically_normal().string();
      if (!pa.ends_with('/')) pa += '/';
      if (!pb.ends_with('/')) pb += '/';
      return pa.starts_with(pb);
    };
    if (inside(c.state_dir, c.runtime_dir) || inside(c.runtime_dir, c.state_dir))
      return config_error("runtime_dir", "must be apart from state_dir (" + c.state_dir +
                                             "): neither may be the other or inside it");
  }
  if (j.contains("standing")) {
    if (!j["standing"].is_array())
      return config_error("standing", "must be an array of {owner, target, request}");
    std::set<std::string> owners;
    for (const auto& e : j["standing"]) {
      if (!e.is_object() || !e.contains("owner") || !e["owner"].is_string() ||
          !e.contains("target") || !e.contains("request") || e.size() != 3)
        return config_error("standing", "each entry is {\"owner\", \"target\", \"request\"}");
      const std::string owner = e["owner"].get<std::string>();
      if (auto v = validate_owner(owner); !v) return config_error("standing", v.error().message);
      if (!owners.insert(owner).second)
        return config_error("standing", "owner " + owner + " appears twice");
      nlohmann::json request = e["request"];
      if (!request.is_object())
        return config_error("standing." + owner, "request must be an object");
      request["standing"] = e["target"];
      auto r = parse_request(request);
      if (!r) return config_error("standing." + owner, r.error().message);
      c.standing.push_back({owner, *r});
    }
  }
  if (j.contains("driver_check")) {
    auto p = j["driver_check"].is_string()
                 ? driver_policy_from_string(j["driver_check"].get<std::string>())
                 : std::nullopt;
    if (!p) return config_error("driver_check", "must be \"off\", \"warn\" or \"refuse\"");
    c.driver_check = *p;
  }
  if (j.contains("http")) {
    const auto& h = j["http"];
    if (!h.is_object()) return config_error("http", "must be an object");
    for (const auto& [k, v] : h.items()) {
      if (k == "listen") {
        auto text = v.is_string() ? v.get<std::string>() : "";
        auto colon = text.rfind(':');
        if (colon == std::string::npos || colon == 0 || colon + 1 == text.size() ||
            text.find_first_not_of("0123456789", colon + 1) != std::string::npos ||
            std::stoul(text.substr(colon + 1)) > 65535)
          return config_error("http.listen", "must be \"ADDRESS:PORT\", e.g. \"127.0.0.1:9180\"");
        c.http_listen = text;
      } else if (k == "status_page") {
        if (!v.is_boolean()) return config_error("http.status_page", "must be true or false");
        c.http_status_page = v.get<bool>();
      } else {
        return config_error("http." + k, "unknown field");
      }
    }
  }
  if (j.contains("slurm")) {
    auto s = parse_slurm_config(j["slurm"]);
    if (!s) return make_error(s.error().code, "config field " + s.error().message);
    c.slurm = *s;
  }
  if (j.contains("github")) {
    auto g = parse_github_config(j["github"], base_dir);
    if (!g) return g.error();
    c.github = std::move(*g);
  }
  if (j.contains("pools")) {
    if (!j["pools"].is_array()) return config_error("pools", "must be an array of pools");
    for (const auto& p : j["pools"]) {
      auto pool = parse_pool_config(p);
      if (!pool) return config_error("pools", pool.error().message);
      if (c.pools.count(pool->name))
        return config_error("pools", "pool '" + pool->name + "' is defined twice");
      c.pools[pool->name] = *pool;
    }
  }
  return c;
}

Expected<Config> load_config(const std::string& path) {
  std::ifstream in(path);
  if (!in) return make_error(ErrorCode::bad_request, "cannot read config file " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  auto dir = std::filesystem::absolute(path).parent_path().string();
  auto c = parse_config(ss.str(), dir);
  if (!c) return make_error(c.error().code, path + ": " + c.error().message);
  return c;
}

}  // namespace berth::agent
