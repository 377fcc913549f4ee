#pragma once
// Slurm's front door: a job's environment (as slurmd gives it to the prolog) and the node's Slurm
// profile turned into a berth request. Slurm chooses the GPUs; berth takes exactly those and
// places VFs and CPUs on their NUMA node(s).
#include <map>
#include <optional>
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "core/expected.hpp"
#include "core/inventory.hpp"
#include "core/request.hpp"

namespace berth {

struct SlurmConfig {
  // Slurm GPU index -> PCI address. Empty: the i-th GPU in PCI bus order, as Slurm numbers them.
  std::map<int, std::string> gpu_map;
  // Create requests without GPUs: what a job of a partition gets besides Slurm's GPUs.
  std::optional<BerthRequest> default_profile;
  std::map<std::string, BerthRequest> partitions;
  unsigned prolog_timeout_s = 30;
};

// The "slurm" object of berthd's config. Errors name the field.
Expected<SlurmConfig> parse_slurm_config(const nlohmann::json& j);

struct SlurmJob {
  std::string job_id;
  std::optional<unsigned> uid;
  std::string user;
  std::string partition;     // empty when absent
  std::string job_gpus;      // SLURM_JOB_GPUS, empty when absent
  std::string cuda_visible;  // CUDA_VISIBLE_DEVICES, the fallback
};

// The job's variables as a JSON object of strings (the prolog's environment, or the body of
// POST /v1/slurm/prolog). SLURM_JOB_ID is required; the rest may be absent.
Expected<SlurmJob> parse_slurm_job(const nlohmann::json& env);

// "slurm/<SLURM_JOB_ID>".
std::string slurm_owner(const SlurmJob& job);

// The request for this job: the partition's profile (else the default one) with the GPUs Slurm
// gave as PCI addresses. Nothing to reserve (no GPUs and no profile): std::nullopt.
Expected<std::optional<BerthRequest>> slurm_request(const SlurmConfig& config,
                                                    const Inventory& inventory,
                                                    const SlurmJob& job);

}  // namespace berth
