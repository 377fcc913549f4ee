#pragma once
// The CDI spec (Container Device Interface, cdiVersion 0.6.0) of the node's berths: one device
// per reserved berth, kind "berth.dev/berth", named after its owner ("slurm/42" -> "slurm-42").
// Its device nodes are the berth's GPU nodes; a createRuntime hook (berthctl oci-hook) attaches
// the rest (VF netdevs, cpuset, device rules), so `--device berth.dev/berth=slurm-42` gives a
// container its whole berth.
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "core/ledger.hpp"

namespace berth {

inline constexpr const char* kCdiKind = "berth.dev/berth";
inline constexpr const char* kCdiVersion = "0.6.0";

struct CdiOptions {
  std::string hook_path = "/usr/bin/berthctl";  // absolute
  std::string socket;                           // berthctl --socket, empty for its default
};

// "slurm/42" -> "slurm-42": CDI device names are [A-Za-z0-9][A-Za-z0-9_.:-]*.
std::string cdi_device_name(const std::string& owner);

nlohmann::json cdi_spec(const Ledger& ledger, const Inventory& inventory, const CdiOptions& opt);

// The specification's rules that a spec must meet (required fields, name syntax, absolute paths,
// known fields only); empty when it meets them, else what is wrong.
std::string cdi_check(const nlohmann::json& spec);

}  // namespace berth
