#pragma once
// What a caller asks for when it creates a berth, and the owner key that names it.
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "core/driver.hpp"
#include "core/expected.hpp"
#include "core/ip.hpp"

namespace berth {

// runc's own rule for container ids (^[\w+-\.]+$, not "." or ".."), so an id cannot smuggle a
// NUL, a slash or an option into the command line.
bool valid_runc_id(std::string_view id);
// LXC and apptainer names: [A-Za-z0-9][A-Za-z0-9_.-]*, at most 128.
bool valid_container_name(std::string_view name);

enum class NumaPolicy { single, prefer, any };
std::string_view to_string(NumaPolicy p);

struct RouteSpec {
  Cidr dst;
  IpAddress via;
  bool operator==(const RouteSpec&) const = default;
};

struct NetworkProfile {
  std::string ifname = "ib0";  // name inside the container; the i-th VF gets ifname with i added
  int mtu = 0;                 // 0: leave as is
  std::optional<std::string> pool;
  std::optional<Cidr> address;
  std::optional<IpAddress> gateway;  // a default route via this address
  std::vector<RouteSpec> routes;
  // The VF's RDMA device: "auto" moves it into the container's namespace when the host's RDMA
  // subsystem is in exclusive netns mode and leaves it shared otherwise; "isolated" requires
  // the move (refused on a shared-mode host); "shared" never moves it.
  std::string rdma = "auto";
  // InfiniBand VFs' GUIDs in VF order ("xx:xx:xx:xx:xx:xx:xx:xx"); VFs beyond the list get
  // GUIDs derived from the node, PF and VF.
  struct Guids {
    std::string node;
    std::string port;
    bool operator==(const Guids&) const = default;
  };
  std::vector<Guids> guids;
  bool operator==(const NetworkProfile&) const = default;
};

// A standing berth's container: berthd attaches the berth whenever this container runs.
struct StandingTarget {
  std::string lxc;        // an LXC container name
  std::string lxcpath;    // with its lxcpath, empty for LXC's default
  std::string runc;       // or a runc container id
  std::string apptainer;  // or an apptainer instance
  bool operator==(const StandingTarget&) const = default;
};

struct BerthRequest {
  int gpu_count = 0;
  std::vector<std::string> gpu_ids;  // GPU index ("3") or PCI address; exclusive with gpu_count
  int vf_count = 0;
  NumaPolicy numa = NumaPolicy::single;
  int cpu_count = 0;  // 0: every CPU of the berth's NUMA node(s)
  bool shared = false;
  bool release_on_exit = false;  // manual/ berths: release when the attached container exits
  std::optional<DriverPolicy> driver_check;  // overrides the config's driver_check
  std::optional<StandingTarget> standing;    // attach whenever this container runs
  NetworkProfile network;
  bool operator==(const BerthRequest&) const = default;
};

// "slurm/<jobid>", "github/<job id>", "manual/<name>" or "lab/<name>" (standing berths).
Status validate_owner(std::string_view owner);

// Strict: unknown keys, wrong types and inconsistent combinations are errors naming the field.
Expected<BerthRequest> parse_request(const nlohmann::json& j);
void to_json(nlohmann::json& j, const BerthRequest& r);

}  // namespace berth
