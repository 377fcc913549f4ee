#pragma once
// berthd's configuration file (JSON). Every key is optional; a bad key names itself and why.
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "agent/app/github_config.hpp"
#include "core/expected.hpp"
#include "core/pool.hpp"
#include "core/slurm.hpp"

namespace berth::agent {

// A standing berth from the config: created at start (idempotent) and attached whenever its
// container runs.
struct StandingEntry {
  std::string owner;
  BerthRequest request;  // with request.standing set from the entry's target
};

// GPUs of vendors other than NVIDIA: PCI devices whose vendor and class match are GPUs, and
// `nodes` says what a berth of one gets. "drm:render" and "drm:card" are the device's own DRM
// nodes (its sysfs drm/ entries, /dev/dri/renderD128, /dev/dri/card0), "accel" its accel/
// entries (/dev/accel/accel0); anything else is a node under /dev shared by all of the
// vendor's GPUs ("kfd" for AMD's compute node).
struct GpuVendorRule {
  std::string vendor;                // "0x1002"
  std::vector<std::string> classes;  // "0x0300", "0x0380", ...: the class's first 4 digits
  std::vector<std::string> nodes;
};

struct Config {
  std::string sysfs_root = "/sys";
  std::string dev_root = "/dev";
  std::string proc_root = "/proc";
  std::string cgroup_root = "/sys/fs/cgroup";
  std::string state_dir = "/var/lib/berth";  // reservations, fsynced
  std::string runtime_dir = "/run/berth";    // attachment state; a tmpfs that a reboot clears
  std::string control_socket = "/run/berth/berth.sock";
  unsigned control_socket_mode = 0660;       // "0600", "0660" or "0666"
  std::optional<std::string> control_group;  // members (and root) may mutate; others only read
  std::string runc = "runc";                 // runc binary used to resolve container ids
  std::string runc_root;                     // runc --root, empty for runc's default
  std::string lxc_info = "lxc-info";         // resolves --lxc NAME to its init's pid
  std::string lxc_cgroup = "lxc-cgroup";     // changes an LXC container's device rules (v2)
  // InfiniBand VF drivers that apply GUIDs only when they probe the VF: such a VF is unbound and
  // bound again after berth sets its GUIDs (and on detach after it puts the old ones back).
  std::vector<std::string> vf_rebind_drivers = {"mlx5_core"};
  std::string apptainer = "apptainer";  // resolves --apptainer NAME (instance list --json)
  DriverPolicy driver_check = DriverPolicy::warn;  // host vs container NVIDIA driver at attach
  std::string log_level = "info";
  std::vector<int> passthrough_iommu_groups;
  std::vector<GpuVendorRule> gpu_vendors;  // NVIDIA's GPUs (0x10de) are built in
  std::map<std::string, PoolConfig> pools;
  // Events from the machine. The netlink link view is dumped again after an overrun and on this
  // slow timer; the receive buffer is raised to netlink_rcvbuf bytes.
  unsigned netlink_resync_s = 600;
  unsigned netlink_rcvbuf = 4 << 20;
  std::string udev_source = "auto";  // auto (udev when udevd runs, else kernel), udev, kernel, off
  std::optional<SlurmConfig> slurm;
  std::optional<GithubConfig> github;  // the CI webhook front door
  std::vector<StandingEntry> standing;
  // Where berthd keeps its CDI spec (e.g. /var/run/cdi/berth.json); empty: none is written.
  std::string cdi_spec;
  // A read-only TCP listener ("http": {"listen": "127.0.0.1:9180", "status_page": false}):
  // /metrics and /v1/health, and the status page when status_page is true.
  std::string http_listen;
  bool http_status_page = false;
  std::string cdi_hook = "/usr/bin/berthctl";  // the createRuntime hook the spec names  // the
                                               // Slurm prolog/epilog front door's profiles
  std::vector<std::string> udev_subsystems{"pci", "net", "infiniband", "infiniband_verbs",
                                           "drm", "misc"};
};

// Relative paths are taken from `base_dir`; with no base_dir they are an error.
Expected<Config> parse_config(const std::string& text, const std::string& base_dir = {});
// Relative paths in the file are relative to the file's own directory.
Expected<Config> load_config(const std::string& path);

}  // namespace berth::agent
