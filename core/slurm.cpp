#include "core/slurm.hpp"

#include <algorithm>
#include <set>
#include <vector>

#include <nlohmann/json.hpp>

namespace berth {
namespace {

Error slurm_field(const std::string& field, const std::string& why) {
  return make_error(ErrorCode::bad_request, "slurm." + field + ": " + why);
}

Expected<BerthRequest> parse_profile(const nlohmann::json& j, const std::string& field) {
  if (!j.is_object()) return slurm_field(field, "must be a create request object");
  if (j.contains("gpus") || j.contains("gpu_ids"))
    return slurm_field(field, "Slurm chooses the GPUs: a profile has no 'gpus' or 'gpu_ids'");
  auto r = parse_request(j);
  if (!r) return slurm_field(field, r.error().message);
  // Slurm's GPUs may span NUMA nodes; refusing them would drain the node. Unless the profile
  // says otherwise, VFs and CPUs go to the GPUs' nodes where they can.
  if (!j.contains("numa")) r->numa = NumaPolicy::prefer;
  return r;
}

bool all_digits(const std::string& s) {
  return !s.empty() && s.size() < 9 &&
         std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : s + ",") {
    if (c == ',') {
      if (!cur.empty()) out.push_back(cur);
      cur.clear();
    } else if (c != ' ') {
      cur += c;
    }
  }
  return out;
}

}  // namespace

Expected<SlurmConfig> parse_slurm_config(const nlohmann::json& j) {
  if (!j.is_object()) return make_error(ErrorCode::bad_request, "slurm: must be an object");
  static const std::set<std::string> known{"gpu_map", "default", "partitions", "prolog_timeout_s",
                                           "$comment"};
  for (const auto& [k, v] : j.items())
    if (!known.count(k)) return slurm_field(k, "unknown field");
  SlurmConfig c;
  if (j.contains("gpu_map")) {
    const auto& m = j["gpu_map"];
    if (!m.is_object())
      return slurm_field("gpu_map",
                         "must be an object from Slurm GPU index to PCI address, "
                         "e.g. {\"0\": \"0000:17:00.0\"}");
    std::set<std::string> seen;
    for (const auto& [k, v] : m.items()) {
      if (!all_digits(k)) return slurm_field("gpu_map", "key '" + k + "' is not a GPU index");
      if (!v.is_string() || v.get<std::string>().empty())
        return slurm_field("gpu_map." + k, "must be a PCI address");
      if (!seen.insert(v.get<std::string>()).second)
        return slurm_field("gpu_map." + k, v.get<std::string>() + " is mapped twice");
      c.gpu_map[std::stoi(k)] = v.get<std::string>();
    }
  }
  if (j.contains("default")) {
    auto p = parse_profile(j["default"], "default");
    if (!p) return p.error();
    c.default_profile = *p;
  }
  if (j.contains("partitions")) {
    if (!j["partitions"].is_object())
      return slurm_field("partitions", "must be an object from partition name to profile");
    for (const auto& [name, v] : j["partitions"].items()) {
      auto p = parse_profile(v, "partitions." + name);
      if (!p) return p.error();
      c.partitions[name] = *p;
    }
  }
  if (j.contains("prolog_timeout_s")) {
    const auto& t = j["prolog_timeout_s"];
    if (!t.is_number_integer() || t.get<int64_t>() < 1 || t.get<int64_t>() > 3600)
      return slurm_field("prolog_timeout_s", "must be an integer in 1..3600");
    c.prolog_timeout_s = t.get<unsigned>();
  }
  return c;
}

Expected<SlurmJob> parse_slurm_job(const nlohmann::json& env) {
  if (!env.is_object())
    return make_error(ErrorCode::bad_request, "the job's variables must be a JSON object");
  auto get = [&](const char* key) -> Expected<std::string> {
    if (!env.contains(key)) return std::string();
    if (!env[key].is_string())
      return make_error(ErrorCode::bad_request, std::string(key) + ": must be a string");
    return env[key].get<std::string>();
  };
  SlurmJob job;
  for (auto [key, field] :
       {std::pair{"SLURM_JOB_ID", &job.job_id}, std::pair{"SLURM_JOB_USER", &job.user},
        std::pair{"SLURM_JOB_PARTITION", &job.partition},
        std::pair{"SLURM_JOB_GPUS", &job.job_gpus},
        std::pair{"CUDA_VISIBLE_DEVICES", &job.cuda_visible}}) {
    auto v = get(key);
    if (!v) return v.error();
    *field = *v;
  }
  if (job.job_id.empty())
    return make_error(ErrorCode::bad_request,
                      "SLURM_JOB_ID is not set: run this from Slurm's Prolog/Epilog");
  if (auto v = validate_owner("slurm/" + job.job_id); !v)
    return make_error(ErrorCode::bad_request, "SLURM_JOB_ID '" + job.job_id + "' is not a job id");
  auto uid = get("SLURM_JOB_UID");
  if (!uid) return uid.error();
  if (!uid->empty()) {
    if (!all_digits(*uid))
      return make_error(ErrorCode::bad_request, "SLURM_JOB_UID '" + *uid + "' is not a uid");
    job.uid = static_cast<unsigned>(std::stoul(*uid));
  }
  return job;
}

std::string slurm_owner(const SlurmJob& job) {
  return "slurm/" + job.job_id;
}

Expected<std::optional<BerthRequest>> slurm_request(const SlurmConfig& config,
                                                    const Inventory& inventory,
                                                    const SlurmJob& job) {
  const std::string& list = !job.job_gpus.empty() ? job.job_gpus : job.cuda_visible;
  const char* source = !job.job_gpus.empty() ? "SLURM_JOB_GPUS" : "CUDA_VISIBLE_DEVICES";
  std::vector<std::string> by_bus;
  for (const auto& g : inventory.gpus) by_bus.push_back(g.id());  // MIG instances by parent
  std::sort(by_bus.begin(), by_bus.end());

  std::vector<std::string> gpus;
  for (const auto& id : split_list(list)) {
    std::string pci;
    if (id.rfind("GPU-", 0) == 0 || id.rfind("MIG-", 0) == 0) {
      for (const auto& g : inventory.gpus)
        if (!g.uuid.empty() && g.uuid == id) pci = g.id();
      if (pci.empty())
        return make_error(ErrorCode::bad_request,
                          std::string(source) + ": no GPU with UUID " + id + " on this node" +
                              (id[0] == 'M' ? " (MIG instances: give Slurm the parent GPUs)" : ""));
    } else if (all_digits(id)) {
      const int index = std::stoi(id);
      if (!config.gpu_map.empty()) {
        auto it = config.gpu_map.find(index);
        if (it == config.gpu_map.end())
          return make_error(ErrorCode::bad_request,
                            std::string(source) + ": GPU index " + id + " is not in slurm.gpu_map");
        pci = it->second;
      } else {
        if (static_cast<size_t>(index) >= by_bus.size())
          return make_error(ErrorCode::bad_request, std::string(source) + ": GPU index " + id +
                                                        " but this node has " +
                                                        std::to_string(by_bus.size()) + " GPUs");
        pci = by_bus[static_cast<size_t>(index)];
      }
    } else {
      return make_error(ErrorCode::bad_request,
                        std::string(source) + ": '" + id + "' is neither a GPU index nor a UUID");
    }
    if (std::find(gpus.begin(), gpus.end(), pci) != gpus.end())
      return make_error(ErrorCode::bad_request,
                        std::string(source) + " names GPU " + pci + " twice");
    gpus.push_back(pci);
  }

  const BerthRequest* profile = nullptr;
  if (auto it = config.partitions.find(job.partition);
      !job.partition.empty() && it != config.partitions.end())
    profile = &it->second;
  else if (config.default_profile)
    profile = &*config.default_profile;
  if (gpus.empty() && !profile) return std::optional<BerthRequest>();
  BerthRequest r = profile ? *profile : BerthRequest{};
  if (!profile) r.numa = NumaPolicy::prefer;
  r.gpu_ids = gpus;
  r.gpu_count = 0;
  return std::optional<BerthRequest>(r);
}

}  // namespace berth
