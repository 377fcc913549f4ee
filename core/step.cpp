#include "core/step.hpp"

#include <sstream>

#include <nlohmann/json.hpp>

#include "core/overloaded.hpp"
#include "core/pool.hpp"

namespace berth {
namespace {

std::string devnum(unsigned major, unsigned minor) {
  return std::to_string(major) + ":" + std::to_string(minor);
}

}  // namespace

std::string describe(const Step& s) {
  return std::visit(
      overloaded{
          [](const step::MakeNode& x) {
            return "create device node " + x.dev.path + " (" + devnum(x.dev.major, x.dev.minor) +
                   ")";
          },
          [](const step::RemoveNode& x) {
            return (x.bind ? "unmount the bind-mounted device node " : "remove device node ") +
                   x.dev.path;
          },
          [](const step::AllowDevice& x) {
            return "allow device c " + devnum(x.major, x.minor) + " in the devices cgroup";
          },
          [](const step::DenyDevice& x) {
            if (x.via == "lxc") return "deny device c " + devnum(x.major, x.minor) + " through LXC";
            return "deny device c " + devnum(x.major, x.minor) + " in the devices cgroup" +
                   (x.skip.empty() ? "" : " (not in " + x.skip + ": allowed there before)") +
                   (x.unit.empty() ? "" : " and take it out of " + x.unit + "'s DeviceAllow=");
          },
          [](const step::SetCpuset& x) { return "set cpuset cpus=" + x.cpus + " mems=" + x.mems; },
          [](const step::MoveLinkIn& x) {
            return "move link " + x.host_name + " into the container as " + x.ifname;
          },
          [](const step::MoveLinkOut& x) {
            return "move link " + x.ifname + " back to the host as " + x.host_name;
          },
          [](const step::SetVfGuid& x) {
            return "set node GUID " + x.node_guid + " and port GUID " + x.port_guid + " of VF " +
                   std::to_string(x.vf_index) + " on " + x.pf_pci +
                   (x.rebind.empty() ? "" : ", then rebind " + x.vf_pci + " to " + x.rebind);
          },
          [](const step::MoveRdmaIn& x) {
            return "move RDMA device " + x.device + " into the container's network namespace";
          },
          [](const step::MoveRdmaOut& x) {
            return "move RDMA device " + x.device + " back to the host's network namespace";
          },
          [](const step::SetMtu& x) {
            return "set MTU of " + x.ifname + " to " + std::to_string(x.mtu);
          },
          [](const step::AddAddress& x) { return "add address " + x.cidr + " to " + x.ifname; },
          [](const step::DelAddress& x) {
            return "remove address " + x.cidr + " from " + x.ifname;
          },
          [](const step::AddRoute& x) {
            return "add route " + x.dst + " via " + x.via + " dev " + x.ifname;
          },
          [](const step::DelRoute& x) {
            return "remove route " + x.dst + " via " + x.via + " dev " + x.ifname;
          },
          [](const step::LinkUp& x) { return "set link " + x.ifname + " up"; },
          [](const step::LinkDown& x) { return "set link " + x.ifname + " down"; },
          [](const step::AddPkeyLink& x) {
            return "add IPoIB child " + x.name + " of " + x.parent + " on partition 0x" +
                   format_pkey(x.pkey);
          },
          [](const step::DelPkeyLink& x) {
            return "delete IPoIB child " + x.name + " of " + x.parent + " (partition 0x" +
                   format_pkey(x.pkey) + ")";
          },
      },
      s);
}

std::optional<Step> inverse(const Step& s, const std::string& undo) {
  return std::visit(
      overloaded{
          [&](const step::MakeNode& x) -> std::optional<Step> {
            if (undo == "existed") return std::nullopt;
            step::RemoveNode out{x.dev};
            std::istringstream words(undo);
            for (std::string w; words >> w;) {
              if (w == "bind") out.bind = true;
              if (w.rfind("dirs=", 0) == 0 && w.size() == 6 && w[5] >= '1' && w[5] <= '9')
                out.dirs = w[5] - '0';
            }
            return out;
          },
          [&](const step::AllowDevice& x) -> std::optional<Step> {
            // Denying a device the container was already allowed would take away what it had.
            if (undo == "already-allowed") return std::nullopt;
            if (undo == "lxc") return step::DenyDevice{x.major, x.minor, "", "lxc"};
            const bool v1 = undo.find("v1-already") != std::string::npos;
            const bool v2 = undo.find("v2-already") != std::string::npos;
            std::string unit;
            if (auto at = undo.find("systemd="); at != std::string::npos)
              unit = undo.substr(at + 8, undo.find(';', at) - (at + 8));
            if (v1 && v2 && unit.empty()) return std::nullopt;
            return step::DenyDevice{x.major, x.minor, v1 ? "v1" : v2 ? "v2" : "", "", unit};
          },
          [&](const step::SetCpuset&) -> std::optional<Step> {
            auto bar = undo.find('|');
            if (bar == std::string::npos) return std::nullopt;
            return step::SetCpuset{undo.substr(0, bar), undo.substr(bar + 1)};
          },
          [&](const step::MoveLinkIn& x) -> std::optional<Step> {
            return step::MoveLinkOut{x.ifname, x.host_name, x.pci, undo};
          },
          [](const step::MoveRdmaIn& x) -> std::optional<Step> {
            return step::MoveRdmaOut{x.device};
          },
          [&](const step::SetVfGuid& x) -> std::optional<Step> {
            auto bar = undo.find('|');
            if (bar == std::string::npos) return std::nullopt;
            return step::SetVfGuid{
                x.pf_pci, x.vf_pci, x.vf_index, undo.substr(0, bar), undo.substr(bar + 1),
                0,        x.rebind};
          },
          [&](const step::SetMtu& x) -> std::optional<Step> {
            if (undo.empty()) return std::nullopt;
            return step::SetMtu{x.ifname, std::stoi(undo)};
          },
          [](const step::AddAddress& x) -> std::optional<Step> {
            return step::DelAddress{x.ifname, x.cidr};
          },
          [](const step::AddRoute& x) -> std::optional<Step> {
            return step::DelRoute{x.ifname, x.dst, x.via};
          },
          [](const step::LinkUp& x) -> std::optional<Step> { return step::LinkDown{x.ifname}; },
          [&](const step::AddPkeyLink& x) -> std::optional<Step> {
            return step::DelPkeyLink{x.parent, x.name, x.pkey, undo};
          },
          // Inverse steps are never planned forward, so they have no inverse of their own.
          [](const auto&) -> std::optional<Step> { return std::nullopt; },
      },
      s);
}

nlohmann::json step_to_json(const Step& s) {
  return std::visit(
      overloaded{
          [](const step::MakeNode& x) -> nlohmann::json {
            return {{"op", "make_node"}, {"dev", nlohmann::json(x.dev)}};
          },
          [](const step::RemoveNode& x) -> nlohmann::json {
            nlohmann::json j = {{"op", "remove_node"}, {"dev", nlohmann::json(x.dev)}};
            if (x.dirs) j["dirs"] = x.dirs;
            if (x.bind) j["bind"] = true;
            return j;
          },
          [](const step::AllowDevice& x) -> nlohmann::json {
            return {{"op", "allow_device"}, {"major", x.major}, {"minor", x.minor}};
          },
          [](const step::DenyDevice& x) -> nlohmann::json {
            nlohmann::json j{{"op", "deny_device"}, {"major", x.major}, {"minor", x.minor}};
            if (!x.skip.empty()) j["skip"] = x.skip;
            if (!x.via.empty()) j["via"] = x.via;
            if (!x.unit.empty()) j["unit"] = x.unit;
            return j;
          },
          [](const step::SetCpuset& x) -> nlohmann::json {
            return {{"op", "set_cpuset"}, {"cpus", x.cpus}, {"mems", x.mems}};
          },
          [](const step::MoveLinkIn& x) -> nlohmann::json {
            return {{"op", "move_link_in"},
                    {"host_name", x.host_name},
                    {"ifname", x.ifname},
                    {"pci", x.pci}};
          },
          [](const step::MoveLinkOut& x) -> nlohmann::json {
            nlohmann::json j{{"op", "move_link_out"},
                             {"host_name", x.host_name},
                             {"ifname", x.ifname},
                             {"pci", x.pci}};
            if (!x.identity.empty()) j["identity"] = x.identity;
            return j;
          },
          [](const step::SetVfGuid& x) -> nlohmann::json {
            nlohmann::json j = {{"op", "set_vf_guid"},       {"pf_pci", x.pf_pci},
                                {"vf_pci", x.vf_pci},        {"vf_index", x.vf_index},
                                {"node_guid", x.node_guid},  {"port_guid", x.port_guid},
                                {"link_state", x.link_state}};
            if (!x.rebind.empty()) j["rebind"] = x.rebind;
            return j;
          },
          [](const step::MoveRdmaIn& x) -> nlohmann::json {
            return {{"op", "move_rdma_in"}, {"device", x.device}};
          },
          [](const step::MoveRdmaOut& x) -> nlohmann::json {
            return {{"op", "move_rdma_out"}, {"device", x.device}};
          },
          [](const step::SetMtu& x) -> nlohmann::json {
            return {{"op", "set_mtu"}, {"ifname", x.ifname}, {"mtu", x.mtu}};
          },
          [](const step::AddAddress& x) -> nlohmann::json {
            return {{"op", "add_address"}, {"ifname", x.ifname}, {"cidr", x.cidr}};
          },
          [](const step::DelAddress& x) -> nlohmann::json {
            return {{"op", "del_address"}, {"ifname", x.ifname}, {"cidr", x.cidr}};
          },
          [](const step::AddRoute& x) -> nlohmann::json {
            return {{"op", "add_route"}, {"ifname", x.ifname}, {"dst", x.dst}, {"via", x.via}};
          },
          [](const step::DelRoute& x) -> nlohmann::json {
            return {{"op", "del_route"}, {"ifname", x.ifname}, {"dst", x.dst}, {"via", x.via}};
          },
          [](const step::LinkUp& x) -> nlohmann::json {
            return {{"op", "link_up"}, {"ifname", x.ifname}};
          },
          [](const step::LinkDown& x) -> nlohmann::json {
            return {{"op", "link_down"}, {"ifname", x.ifname}};
          },
          [](const step::AddPkeyLink& x) -> nlohmann::json {
            return {{"op", "add_pkey_link"},
                    {"parent", x.parent},
                    {"name", x.name},
                    {"pkey", "0x" + format_pkey(x.pkey)}};
          },
          [](const step::DelPkeyLink& x) -> nlohmann::json {
            return {{"op", "del_pkey_link"},
                    {"parent", x.parent},
                    {"name", x.name},
                    {"pkey", "0x" + format_pkey(x.pkey)},
                    {"identity", x.identity}};
          },
      },
      s);
}

// Throws nlohmann::json::exception on a missing or mistyped field; the caller converts.
static Step step_from_json_unchecked(const nlohmann::json& j) {
  const auto op = j.at("op").get<std::string>();
  auto dev = [&] {
    const auto& d = j.at("dev");
    return CharDevice{d.at("path").get<std::string>(), d.at("major").get<unsigned>(),
                      d.at("minor").get<unsigned>()};
  };
  auto str = [&](const char* k) { return j.at(k).get<std::string>(); };
  if (op == "make_node") return step::MakeNode{dev()};
  if (op == "remove_node")
    return step::RemoveNode{dev(), j.value("dirs", 0), j.value("bind", false)};
  if (op == "allow_device")
    return step::AllowDevice{j.at("major").get<unsigned>(), j.at("minor").get<unsigned>()};
  if (op == "deny_device")
    return step::DenyDevice{j.at("major").get<unsigned>(), j.at("minor").get<unsigned>(),
                            j.value("skip", ""), j.value("via", ""), j.value("unit", "")};
  if (op == "set_cpuset") return step::SetCpuset{str("cpus"), str("mems")};
  const std::string pci = j.value("pci", "");
  if (op == "move_link_in") return step::MoveLinkIn{str("host_name"), str("ifname"), pci};
  if (op == "move_link_out")
    return step::MoveLinkOut{str("ifname"), str("host_name"), pci, j.value("identity", "")};
  if (op == "set_vf_guid")
    return step::SetVfGuid{str("pf_pci"),        str("vf_pci"),    j.at("vf_index").get<int>(),
                           str("node_guid"),     str("port_guid"), j.value("link_state", 1),
                           j.value("rebind", "")};
  if (op == "move_rdma_in") return step::MoveRdmaIn{str("device")};
  if (op == "move_rdma_out") return step::MoveRdmaOut{str("device")};
  if (op == "set_mtu") return step::SetMtu{str("ifname"), j.at("mtu").get<int>()};
  if (op == "add_address") return step::AddAddress{str("ifname"), str("cidr")};
  if (op == "del_address") return step::DelAddress{str("ifname"), str("cidr")};
  if (op == "add_route") return step::AddRoute{str("ifname"), str("dst"), str("via")};
  if (op == "del_route") return step::DelRoute{str("ifname"), str("dst"), str("via")};
  if (op == "link_up") return step::LinkUp{str("ifname")};
  if (op == "link_down") return step::LinkDown{str("ifname")};
  if (op == "add_pkey_link" || op == "del_pkey_link") {
    auto pkey = parse_pkey(str("pkey"));
    if (!pkey) throw std::invalid_argument(pkey.error().message);
    if (op == "add_pkey_link") return step::AddPkeyLink{str("parent"), str("name"), *pkey};
    return step::DelPkeyLink{str("parent"), str("name"), *pkey, j.value("identity", "")};
  }
  throw std::invalid_argument("unknown step op '" + op + "'");
}

Expected<Step> step_from_json(const nlohmann::json& j) {
  try {
    return step_from_json_unchecked(j);
  } catch (const std::exception& e) {
    return make_error(ErrorCode::bad_request, std::string("bad step: ") + e.what());
  }
}

}  // namespace berth
