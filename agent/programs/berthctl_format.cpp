#include "agent/programs/berthctl_format.hpp"

#include <algorithm>
#include <sstream>
#include <vector>

namespace berth::ctl {
namespace {

using Row = std::vector<std::string>;

std::string table(const std::vector<Row>& rows) {
  std::vector<size_t> width;
  for (const auto& r : rows)
    for (size_t i = 0; i < r.size(); ++i) {
      if (width.size() <= i) width.push_back(0);
      width[i] = std::max(width[i], r[i].size());
    }
  std::ostringstream out;
  for (const auto& r : rows) {
    std::string line;
    for (size_t i = 0; i < r.size(); ++i) {
      line += r[i];
      if (i + 1 < r.size()) line += std::string(width[i] - r[i].size() + 2, ' ');
    }
    out << line << "\n";
  }
  return out.str();
}

std::string str(const nlohmann::json& j) {
  if (j.is_null()) return "-";
  if (j.is_string()) return j.get<std::string>().empty() ? "-" : j.get<std::string>();
  return j.dump();
}

std::string join(const nlohmann::json& arr, const char* key = nullptr) {
  std::string out;
  for (const auto& x : arr) {
    if (!out.empty()) out += ",";
    out += key ? str(x.value(key, nlohmann::json())) : str(x);
  }
  return out.empty() ? "-" : out;
}

std::string holders(const nlohmann::json& h) {
  if (h.is_array()) return h.empty() ? "free" : join(h);
  return h.is_null() ? "free" : str(h);
}

}  // namespace

std::string format_inventory(const nlohmann::json& inv) {
  std::ostringstream out;
  for (const auto& n : inv.value("numa_nodes", nlohmann::json::array())) {
    int id = n.value("id", 0);
    const std::string free = n.value("free_cpus", "");
    out << "NUMA node " << id << ": cpus " << str(n["cpus"])
        << " (free: " << (free.empty() ? "none" : free) << "), memory node "
        << n.value("memory_node", 0)
        << (n.value("has_memory", true) ? "" : " (this node has no memory)") << "\n";
    std::vector<Row> rows{{"  KIND", "INDEX", "PCI", "DETAIL", "IOMMU", "HELD BY"}};
    for (const auto& g : inv.value("gpus", nlohmann::json::array()))
      if (g.value("numa", -1) == id)
        rows.push_back({"  gpu", std::to_string(g.value("index", 0)), str(g["pci"]),
                        join(g["devices"], "path"),
                        std::to_string(g.value("iommu_group", -1)) +
                            (g.value("passthrough", false) ? " (passthrough)" : ""),
                        holders(g["held_by"])});
    for (const auto& v : inv.value("vfs", nlohmann::json::array()))
      if (v.value("numa", -1) == id)
        rows.push_back({"  vf", std::to_string(v.value("vf_index", 0)), str(v["pci"]),
                        str(v["netdev"]) + " " + str(v["rdma"]),
                        std::to_string(v.value("iommu_group", -1)), holders(v["held_by"])});
    if (rows.size() > 1) out << table(rows);
  }
  for (const auto& w : inv.value("warnings", nlohmann::json::array()))
    out << "warning: " << str(w) << "\n";
  return out.str();
}

std::string format_berth_list(const nlohmann::json& berths) {
  std::vector<Row> rows{{"OWNER", "STATE", "NUMA", "GPUS", "VFS", "CPUS", "MEMS", "PID"}};
  for (const auto& b : berths) {
    std::string vfs;
    for (const auto& v : b["vfs"])
      vfs += (vfs.empty() ? "" : ",") + str(v["netdev"]) + ">" + str(v["ifname"]);
    rows.push_back({str(b["owner"]), str(b["state"]), join(b["numa"]), join(b["gpus"], "index"),
                    vfs.empty() ? "-" : vfs, str(b["cpus"]), str(b["mems"]),
                    b["target"].is_null() ? "-" : str(b["target"]["pid"])});
  }
  return table(rows);
}

std::string format_runners(const nlohmann::json& doc) {
  auto when = [&](const nlohmann::json& r, const char* k) {
    const int64_t t = r.value(k, int64_t{0});
    return t ? std::to_string(t) : std::string("-");
  };
  std::vector<Row> rows{{"JOB", "STATE", "FLAVOR", "RUNNER", "BERTH", "REPO", "QUEUED", "STARTED",
                         "FINISHED", "OUTCOME"}};
  for (const auto& r : doc["runners"])
    rows.push_back({str(r["job_id"]), str(r["state"]), str(r["flavor"]), str(r["runner_name"]),
                    r.value("backend", "local") == "slurm"
                        ? "slurm:" + str(r.value("backend_id", nlohmann::json()))
                        : str(r["berth"]),
                    str(r["repo"]), when(r, "queued_at"), when(r, "started_at"),
                    when(r, "finished_at"), str(r.value("outcome", nlohmann::json()))});
  std::string out = table(rows);
  out += std::to_string(doc.value("active", 0)) + " active, " +
         std::to_string(doc.value("queued", 0)) + " queued, max_runners " +
         std::to_string(doc.value("max_runners", 0)) + " (times: seconds since the epoch)\n";
  return out;
}

std::string format_berth(const nlohmann::json& b) {
  std::ostringstream out;
  out << "owner:   " << str(b["owner"]) << "\n"
      << "state:   " << str(b["state"]) << "\n"
      << "numa:    " << join(b["numa"]) << "\n"
      << "cpus:    " << str(b["cpus"]) << "\n"
      << "mems:    " << str(b["mems"]) << "\n";
  for (const auto& g : b["gpus"])
    out << "gpu:     " << str(g.value("index", nlohmann::json())) << " " << str(g["pci"]) << " "
        << join(g.value("devices", nlohmann::json::array())) << "\n";
  for (const auto& v : b["vfs"])
    out << "vf:      " << str(v["pci"]) << " " << str(v["netdev"]) << " -> " << str(v["ifname"])
        << " " << join(v["addresses"])
        << (v["pool"].get<std::string>().empty() ? "" : " (pool " + str(v["pool"]) + ")") << "\n";
  for (const auto& r : b["routes"])
    out << "route:   " << str(r["dst"]) << " via " << str(r["via"]) << "\n";
  std::string target = "-";
  if (!b["target"].is_null()) {
    const auto& t = b["target"];
    target = "pid " + str(t["pid"]);
    for (auto [key, label] : {std::pair{"runc_id", "runc"}, std::pair{"lxc", "lxc"},
                              std::pair{"apptainer", "apptainer"}})
      if (str(t.value(key, nlohmann::json())) != "-")
        target += std::string(" (") + label + " " + str(t[key]) + ")";
  }
  out << "target:  " << target << "\n";
  if (!b["target"].is_null() && str(b["target"].value("driver", nlohmann::json())) != "-")
    out << "driver:  " << str(b["target"]["driver"]) << "\n";
  if (b.contains("reason")) out << "reason:  " << str(b["reason"]) << "\n";
  if (b.contains("error")) out << "error:   " << str(b["error"]) << "\n";
  if (b.contains("leftovers"))
    out << "left on the host (devices held until cleared; release again to retry): "
        << b["leftovers"].size() << " step(s)\n";
  return out.str();
}

std::string format_event(const nlohmann::json& ev) {
  const std::string type = ev.value("type", "event");
  std::string line = "[" + std::to_string(ev.value("seq", 0)) + "] " + type;
  auto field = [&](const char* k) {
    return ev.contains(k) && ev[k].is_string() ? ev[k].get<std::string>() : std::string();
  };
  if (type == "berth") {
    line += " " + field("owner") + " " + field("state");
    if (!field("message").empty()) line += ": " + field("message");
  } else if (type == "link") {
    line += " " + field("name") + " " + field("change");
    if (ev.contains("after") && ev["after"].is_object()) {
      const auto& a = ev["after"];
      line += a.value("up", false) ? " up" : " down";
      line += " mtu " + std::to_string(a.value("mtu", 0));
      for (const auto& addr : a.value("addresses", nlohmann::json::array()))
        line += " " + addr.get<std::string>();
    }
    if (!field("message").empty()) line += ": " + field("message");
  } else if (type == "udev") {
    line += " " + field("action") + " " + field("subsystem") + " " + field("sysname");
  } else if (type == "inventory") {
    line += " " + std::to_string(ev.value("gpus", 0)) + " GPUs, " +
            std::to_string(ev.value("vfs", 0)) + " VFs";
  } else {
    if (!field("owner").empty()) line += " " + field("owner") + ":";
    line += " " + field("message");
  }
  return line + "\n";
}

}  // namespace berth::ctl
