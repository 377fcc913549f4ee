#include "core/request.hpp"

#include "core/guid.hpp"

#include <algorithm>
#include <set>

#include <nlohmann/json.hpp>

namespace berth {
bool valid_runc_id(std::string_view id) {
  // runc's own rule (libcontainer validateID): ^[\w+.-]+$ and a clean path element.
  return !id.empty() && id.size() <= 1024 && id.front() != '-' && id != "." && id != ".." &&
         std::all_of(id.begin(), id.end(), [](char c) {
           return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '+' || c == '-' || c == '.';
         });
}

bool valid_container_name(std::string_view name) {
  if (name.empty() || name.size() > 128) return false;
  auto alnum = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
  };
  return alnum(name.front()) && std::all_of(name.begin(), name.end(), [&](char c) {
           return alnum(c) || c == '_' || c == '.' || c == '-';
         });
}

namespace {

Error field_error(const std::string& field, const std::string& why) {
  return make_error(ErrorCode::bad_request, "field '" + field + "': " + why);
}

bool valid_ifname(const std::string& name) {
  if (name.empty() || name.size() > 15 || name == "." || name == "..") return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.';
  });
}

Expected<NetworkProfile> parse_network(const nlohmann::json& j) {
  NetworkProfile n;
  if (!j.is_object()) return field_error("network", "must be an object");
  static const std::set<std::string> known{"ifname",  "mtu",    "pool", "address",
                                           "gateway", "routes", "rdma", "guids"};
  for (const auto& [k, v] : j.items())
    if (!known.count(k)) return field_error("network." + k, "unknown field");
  if (j.contains("ifname")) {
    if (!j["ifname"].is_string() || !valid_ifname(j["ifname"].get<std::string>()))
      return field_error("network.ifname", "must be 1-15 characters of [A-Za-z0-9._-]");
    n.ifname = j["ifname"];
  }
  if (j.contains("guids")) {
    if (!j["guids"].is_array())
      return field_error("network.guids", "must be an array of {\"node\": GUID, \"port\": GUID}");
    for (const auto& g : j["guids"]) {
      auto one = [&](const char* key) -> std::optional<std::string> {
        if (!g.is_object() || !g.contains(key) || !g[key].is_string()) return std::nullopt;
        auto v = parse_guid(g[key].get<std::string>());
        if (!v || *v == 0 || *v == ~uint64_t{0}) return std::nullopt;
        return format_guid(*v);
      };
      auto node = one("node");
      auto port = one("port");
      if (!node || !port || g.size() != 2)
        return field_error("network.guids",
                           "each entry is {\"node\": GUID, \"port\": GUID}, GUIDs as "
                           "xx:xx:xx:xx:xx:xx:xx:xx, neither all zeros nor all ones");
      n.guids.push_back({*node, *port});
    }
  }
  if (j.contains("rdma")) {
    const auto& v = j["rdma"];
    if (!v.is_string() || (v != "auto" && v != "isolated" && v != "shared"))
      return field_error("network.rdma", "must be \"auto\", \"isolated\" or \"shared\"");
    n.rdma = v.get<std::string>();
  }
  if (j.contains("mtu")) {
    if (!j["mtu"].is_number_integer() || j["mtu"].get<int64_t>() < 68 ||
        j["mtu"].get<int64_t>() > 65520)
      return field_error("network.mtu", "must be an integer in 68..65520");
    n.mtu = j["mtu"].get<int>();
  }
  if (j.contains("pool")) {
    if (!j["pool"].is_string() || j["pool"].get<std::string>().empty())
      return field_error("network.pool", "must be a pool name");
    n.pool = j["pool"].get<std::string>();
  }
  if (j.contains("address")) {
    if (!j["address"].is_string()) return field_error("network.address", "must be a CIDR string");
    auto c = parse_cidr(j["address"].get<std::string>());
    if (!c) return make_error(c.error().code, "field 'network.address': " + c.error().message);
    n.address = *c;
  }
  if (n.pool && n.address)
    return field_error("network", "give either 'pool' or 'address', not both");
  if (j.contains("gateway")) {
    if (!j["gateway"].is_string())
      return field_error("network.gateway", "must be an IP address string");
    auto g = parse_ip(j["gateway"].get<std::string>());
    if (!g) return make_error(g.error().code, "field 'network.gateway': " + g.error().message);
    if (n.address && n.address->address.family != g->family)
      return field_error("network.gateway", "address family differs from network.address");
    n.gateway = *g;
  }
  if (j.contains("routes")) {
    if (!j["routes"].is_array()) return field_error("network.routes", "must be an array");
    for (const auto& r : j["routes"]) {
      if (!r.is_object() || !r.contains("dst") || !r.contains("via") || !r["dst"].is_string() ||
          !r["via"].is_string() || r.size() != 2)
        return field_error("network.routes", "each route is {\"dst\": CIDR, \"via\": IP}");
      auto dst = parse_cidr(r["dst"].get<std::string>());
      if (!dst)
        return make_error(dst.error().code, "field 'network.routes': " + dst.error().message);
      auto via = parse_ip(r["via"].get<std::string>());
      if (!via)
        return make_error(via.error().code, "field 'network.routes': " + via.error().message);
      if (dst->address.family != via->family)
        return field_error("network.routes", "dst and via differ in address family");
      n.routes.push_back({*dst, *via});
    }
  }
  return n;
}

}  // namespace

std::string_view to_string(NumaPolicy p) {
  switch (p) {
    case NumaPolicy::single:
      return "single";
    case NumaPolicy::prefer:
      return "prefer";
    case NumaPolicy::any:
      return "any";
  }
  return "single";
}

Status validate_owner(std::string_view owner) {
  auto slash = owner.find('/');
  auto kind = owner.substr(0, slash);
  auto id = slash == std::string_view::npos ? std::string_view{} : owner.substr(slash + 1);
  bool kind_ok = kind == "slurm" || kind == "github" || kind == "manual" || kind == "lab";
  bool id_ok = !id.empty() && id.size() <= 128 && id != "." && id != ".." &&
               std::all_of(id.begin(), id.end(), [](char c) {
                 return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                        (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.';
               });
  if (!kind_ok || !id_ok)
    return make_error(
        ErrorCode::bad_request,
        "owner '" + std::string(owner) +
            "' must be slurm/<id>, github/<id>, manual/<name> or lab/<name> (1-128 of "
            "[A-Za-z0-9._-])");
  return ok_status();
}

Expected<BerthRequest> parse_request(const nlohmann::json& j) {
  if (!j.is_object())
    return make_error(ErrorCode::bad_request, "request body must be a JSON object");
  static const std::set<std::string> known{"gpus",         "gpu_ids", "vfs",     "numa",
                                           "cpus",         "shared",  "network", "release_on_exit",
                                           "driver_check", "standing"};
  for (const auto& [k, v] : j.items())
    if (!known.count(k)) return field_error(k, "unknown field");
  BerthRequest r;
  if (j.contains("gpus")) {
    if (!j["gpus"].is_number_integer() || j["gpus"].get<int64_t>() < 0 ||
        j["gpus"].get<int64_t>() > 1024)
      return field_error("gpus", "must be an integer in 0..1024");
    r.gpu_count = j["gpus"].get<int>();
  }
  if (j.contains("gpu_ids")) {
    if (j.contains("gpus"))
      return field_error("gpu_ids", "give either 'gpus' or 'gpu_ids', not both");
    if (!j["gpu_ids"].is_array() || j["gpu_ids"].empty())
      return field_error("gpu_ids", "must be a non-empty array of GPU indexes or PCI addresses");
    for (const auto& id : j["gpu_ids"]) {
      if (id.is_number_unsigned())
        r.gpu_ids.push_back(std::to_string(id.get<uint64_t>()));
      else if (id.is_string() && !id.get<std::string>().empty())
        r.gpu_ids.push_back(id.get<std::string>());
      else
        return field_error("gpu_ids", "each id is an index or a PCI address");
    }
    std::set<std::string> unique(r.gpu_ids.begin(), r.gpu_ids.end());
    if (unique.size() != r.gpu_ids.size()) return field_error("gpu_ids", "lists a GPU twice");
  }
  if (j.contains("vfs")) {
    if (!j["vfs"].is_number_integer() || j["vfs"].get<int64_t>() < 0 ||
        j["vfs"].get<int64_t>() > 64)
      return field_error("vfs", "must be an integer in 0..64");
    r.vf_count = j["vfs"].get<int>();
  }
  if (j.contains("numa")) {
    auto p = j["numa"].is_string() ? j["numa"].get<std::string>() : "";
    if (p == "single")
      r.numa = NumaPolicy::single;
    else if (p == "prefer")
      r.numa = NumaPolicy::prefer;
    else if (p == "any")
      r.numa = NumaPolicy::any;
    else
      return field_error("numa", "must be one of single, prefer, any");
  }
  if (j.contains("cpus")) {
    const auto& c = j["cpus"];
    if (c.is_string() && c.get<std::string>() == "numa")
      r.cpu_count = 0;
    else if (c.is_number_integer() && c.get<int64_t>() >= 1 && c.get<int64_t>() <= 65536)
      r.cpu_count = c.get<int>();
    else
      return field_error("cpus", "must be \"numa\" or a positive integer");
  }
  if (j.contains("release_on_exit")) {
    if (!j["release_on_exit"].is_boolean())
      return field_error("release_on_exit", "must be true or false");
    r.release_on_exit = j["release_on_exit"];
  }
  if (j.contains("driver_check")) {
    auto p = j["driver_check"].is_string()
                 ? driver_policy_from_string(j["driver_check"].get<std::string>())
                 : std::nullopt;
    if (!p) return field_error("driver_check", "must be one of off, warn, refuse");
    r.driver_check = p;
  }
  if (j.contains("standing")) {
    const auto& t = j["standing"];
    if (!t.is_object())
      return field_error("standing", "must be {\"lxc\": NAME} (or runc, apptainer)");
    StandingTarget st;
    for (const auto& [k, v] : t.items()) {
      if (!v.is_string() || v.get<std::string>().empty())
        return field_error("standing." + k, "must be a non-empty string");
      const std::string value = v.get<std::string>();
      if ((k == "lxc" || k == "apptainer") && !valid_container_name(value))
        return field_error("standing." + k, "must be a container name ([A-Za-z0-9_.-]+)");
      if (k == "runc" && !valid_runc_id(value))
        return field_error("standing.runc", "must be a runc container id ([A-Za-z0-9_+.-]+)");
      if (k == "lxcpath" && (value[0] != '/' || value.find('\0') != std::string::npos))
        return field_error("standing.lxcpath", "must be an absolute path");
      if (k == "lxc")
        st.lxc = v.get<std::string>();
      else if (k == "lxcpath")
        st.lxcpath = v.get<std::string>();
      else if (k == "runc")
        st.runc = v.get<std::string>();
      else if (k == "apptainer")
        st.apptainer = v.get<std::string>();
      else
        return field_error("standing." + k, "unknown field (lxc, lxcpath, runc, apptainer)");
    }
    const int kinds = !st.lxc.empty() + !st.runc.empty() + !st.apptainer.empty();
    if (kinds != 1 || (!st.lxcpath.empty() && st.lxc.empty()))
      return field_error("standing",
                         "names exactly one container: lxc (with lxcpath), runc or apptainer");
    if (!st.lxcpath.empty() && st.lxcpath[0] != '/')
      return field_error("standing.lxcpath", "must be an absolute path");
    r.standing = st;
  }
  if (j.contains("shared")) {
    if (!j["shared"].is_boolean()) return field_error("shared", "must be true or false");
    r.shared = j["shared"];
  }
  if (j.contains("network")) {
    auto n = parse_network(j["network"]);
    if (!n) return n.error();
    r.network = *n;
  }
  const auto& net = r.network;
  bool has_net = net.pool || net.address || net.gateway || !net.routes.empty() || net.mtu != 0;
  if (has_net && r.vf_count == 0) return field_error("network", "needs at least one VF (vfs >= 1)");
  if (r.network.guids.size() > static_cast<size_t>(r.vf_count))
    return field_error("network.guids", "has more entries than the berth has VFs");
  if (net.address && r.vf_count > 1)
    return field_error("network.address", "a fixed address fits one VF; use a pool for several");
  if ((net.gateway || !net.routes.empty()) && !net.pool && !net.address)
    return field_error("network", "routes need an address (give 'address' or 'pool')");
  return r;
}

void to_json(nlohmann::json& j, const BerthRequest& r) {
  j = nlohmann::json::object();
  if (r.gpu_ids.empty())
    j["gpus"] = r.gpu_count;
  else
    j["gpu_ids"] = r.gpu_ids;
  j["vfs"] = r.vf_count;
  j["numa"] = to_string(r.numa);
  if (r.cpu_count == 0)
    j["cpus"] = "numa";
  else
    j["cpus"] = r.cpu_count;
  j["shared"] = r.shared;
  if (r.release_on_exit) j["release_on_exit"] = true;
  if (r.driver_check) j["driver_check"] = to_string(*r.driver_check);
  if (r.standing) {
    auto& t = j["standing"] = nlohmann::json::object();
    if (!r.standing->lxc.empty()) t["lxc"] = r.standing->lxc;
    if (!r.standing->lxcpath.empty()) t["lxcpath"] = r.standing->lxcpath;
    if (!r.standing->runc.empty()) t["runc"] = r.standing->runc;
    if (!r.standing->apptainer.empty()) t["apptainer"] = r.standing->apptainer;
  }
  if (r.vf_count > 0) {
    const auto& n = r.network;
    auto& net = j["network"] = {{"ifname", n.ifname}};
    if (n.mtu) net["mtu"] = n.mtu;
    if (n.rdma != "auto") net["rdma"] = n.rdma;
    if (!n.guids.empty()) {
      net["guids"] = nlohmann::json::array();
      for (const auto& g : n.guids) net["guids"].push_back({{"node", g.node}, {"port", g.port}});
    }
    if (n.pool) net["pool"] = *n.pool;
    if (n.address) net["address"] = n.address->to_string();
    if (n.gateway) net["gateway"] = n.gateway->to_string();
    if (!n.routes.empty()) {
      net["routes"] = nlohmann::json::array();
      for (const auto& rt : n.routes)
        net["routes"].push_back({{"dst", rt.dst.to_string()}, {"via", rt.via.to_string()}});
    }
  }
}

}  // namespace berth
