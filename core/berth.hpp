#pragma once
// A berth: what one owner holds on this node, and where it stands in its lifecycle.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "core/expected.hpp"
#include "core/ip.hpp"
#include "core/request.hpp"
#include "core/step.hpp"

namespace berth {

// degraded: attached, but a held device or link was lost or changed behind the agent's back; the
// reason says what. It returns to attached only by being attached again.
enum class BerthState { reserved, attaching, attached, degraded, detaching, released, failed };
std::string_view to_string(BerthState s);
std::optional<BerthState> berth_state_from_string(std::string_view s);
// The lifecycle graph; every state change in core goes through this check.
bool can_transition(BerthState from, BerthState to);

// The operation in flight, so its caller gets one answer when it ends.
// reattach: a degraded berth detached and attached again to the same target, as one operation.
enum class Operation { none, attach, detach, release, reattach };
std::string_view to_string(Operation op);
// "none" for a name it does not know: a record of a newer version starts no operation.
Operation operation_from_string(std::string_view s);

struct Placement {
  std::vector<int> numa;
  std::vector<std::string> gpus;  // PCI addresses
  std::vector<std::string> vfs;   // PCI addresses
  std::vector<int> cpus;
  std::vector<int> mems;
  bool operator==(const Placement&) const = default;
};

struct VfBinding {
  std::string pci;
  std::string netdev;  // host name, restored on detach
  std::string ifname;  // name inside the container
  std::vector<Cidr> addresses;
  std::string pool;       // the pool the addresses came from, empty when given
  std::string rdma = {};  // the RDMA device that moves with the VF, empty when it stays shared
  // An InfiniBand VF's node and port GUIDs ("xx:...:xx"), set on its PF at attach and put back
  // on detach; empty for other VFs.
  std::string node_guid = {};
  std::string port_guid = {};
  // The VF's driver, unbound and bound again after its GUIDs are set (config vf_rebind_drivers:
  // mlx5_core applies GUIDs only when it probes the VF); empty when the VF is not rebound.
  std::string rebind = {};
  // The InfiniBand partition (full-membership pkey) of its pool, 0 for none: the container gets
  // an IPoIB child of the VF on it, named pkey_link_name(), which carries the addresses.
  uint16_t pkey = 0;
  bool operator==(const VfBinding&) const = default;
};

// "<ifname>.<pkey>" ("ib0.8001"), the name IPoIB children go by; empty without a pkey.
std::string pkey_link_name(const VfBinding& v);

struct Target {
  int pid = 0;
  uint64_t start_time = 0;  // /proc/<pid>/stat field 22: tells a reused pid apart
  std::string runc_id;
  // Where the container's root is mounted inside its own mount namespace while the runtime has
  // not switched to it yet (an OCI createRuntime hook); empty once it has.
  std::string rootfs = {};
  // The container's cgroups (v1 devices and cpuset, relative to the controller's mount), as the
  // agent read them at attach: a container that exited leaves its cgroup (and the rules berth
  // wrote there) until its runtime deletes it, and that cleanup must not need the process.
  std::string devices_cgroup = {};
  std::string cpuset_cgroup = {};
  std::string lxc = {};             // LXC container name, re-resolved on every attach
  std::string lxcpath = {};         // its lxcpath, empty for LXC's default
  std::string apptainer = {};       // apptainer instance name
  std::string driver = {};          // the driver check at attach ("mismatch: ...")
  std::string unified_cgroup = {};  // its cgroup v2 path ("0::" line), relative to the mount
  // Its network and mount namespaces (nsfs inodes) at attach: when the attached process exits
  // while its container lives on (a `runc exec` process, a job step), detach finds another
  // process of the container by these and undoes everything through it.
  uint64_t netns = 0;
  uint64_t mntns = 0;
  bool operator==(const Target&) const = default;
};

struct Berth {
  std::string owner;
  uint64_t seq = 0;  // creation order; tombstone pruning keeps the newest
  BerthState state = BerthState::reserved;
  BerthRequest request;
  std::optional<unsigned> owner_uid;  // the workload's user, who may attach it (event::Create)
  Placement placement;
  std::vector<VfBinding> vfs;
  std::vector<RouteSpec> routes;  // resolved: request routes plus the default gateway
  std::optional<Target> target;
  std::vector<Step> plan;      // the attach plan in force
  std::vector<DoneStep> done;  // steps applied to the host, in order
  // The forward step being run, saved before it runs: after a crash it may or may not have been
  // applied, so recovery undoes it as if it had been.
  std::optional<Step> in_flight;
  // Inverse steps that failed: what this berth may have left on the host. Its devices stay held
  // (even once released) until a retry or reconciliation clears them.
  std::vector<DoneStep> leftovers;
  std::string reason;  // why the berth is degraded
  std::string error;
  Operation op = Operation::none;
  uint64_t op_request = 0;  // request id to answer when `op` ends
  std::string op_error;     // first failure seen during the operation
};

// By owner kind: what happens to the reservation when the attached container exits.
// github/ is released, slurm/ stays reserved until its epilog, a standing berth (lab/) stays
// reserved for its container's next start, manual/ as its request says.
bool releases_on_exit(const Berth& b);
// True while a berth holds its devices: every state but released, and released with leftovers.
bool holds_devices(const Berth& b);

void to_json(nlohmann::json& j, const Berth& b);
Expected<Berth> berth_from_json(const nlohmann::json& j);

}  // namespace berth
