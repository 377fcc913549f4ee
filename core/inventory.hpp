#pragma once
// What a node has: NUMA nodes, GPUs, HCAs and their SR-IOV VFs. Built by discovery (agent/),
// consumed by placement and attach planning. Plain values only.
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace berth {

struct CharDevice {
  std::string path;  // path inside a container, e.g. "/dev/nvidia0"
  unsigned major = 0;
  unsigned minor = 0;
  bool operator==(const CharDevice&) const = default;
};

struct NumaNode {
  int id = 0;
  std::vector<int> cpus;
  bool has_memory = true;
  int memory_node = 0;  // itself, or the nearest node with memory
};

// One allocatable GPU: a whole device, or one MIG compute instance of an NVIDIA GPU in MIG
// mode (then `mig` names it and `devices` holds the parent's node plus its capability nodes).
struct Gpu {
  std::string pci;  // "0000:17:00.0" (a MIG instance: its parent's)
  int index = 0;    // driver minor, e.g. /dev/nvidia<index>
  std::string vendor;
  std::string device;
  int numa = 0;
  int iommu_group = -1;
  std::vector<CharDevice> devices;  // own node first, then control nodes
  std::string uuid = {};            // "GPU-..." from the driver, empty when unknown
  std::string mig = {};             // "gi1/ci0" for a MIG instance, empty for a whole GPU

  // What placement, ledgers and requests name it by: the PCI address, and for a MIG instance
  // the PCI address with its instance ("0000:17:00.0/gi1/ci0").
  std::string id() const { return mig.empty() ? pci : pci + "/" + mig; }
};

struct Vf {
  std::string pci;
  std::string pf_pci;
  int vf_index = 0;
  std::string netdev;
  std::string rdma;         // RDMA device name, empty when none
  bool infiniband = false;  // an InfiniBand VF (its netdev is IPoIB): it takes node/port GUIDs
  int numa = 0;
  int iommu_group = -1;
  int mtu = 1500;  // the host's MTU, restored on detach
  std::vector<CharDevice> devices;
  std::string driver = {};  // the kernel driver bound to it (sysfs driver link), empty when none
};

struct Hca {
  std::string pci;
  std::string netdev;
  std::string rdma;
  int numa = 0;
  std::vector<std::string> vfs;  // VF PCI addresses
};

// An RDMA device as libibverbs reports it (ibv_query_device, ibv_query_port, GID 0), joined
// with sysfs discovery by PCI address. GUIDs are "xxxx:xxxx:xxxx:xxxx" as ibv_devinfo shows them.
struct RdmaPort {
  int port = 1;
  std::string link_layer;  // "InfiniBand", "Ethernet", "unspecified"
  std::string state;       // "down", "init", "armed", "active", ...
  unsigned lid = 0;
  std::string guid;  // the port GUID (GID 0's interface id); empty when unreadable
  bool operator==(const RdmaPort&) const = default;
};

struct RdmaDevice {
  std::string name;  // "mlx5_2"
  std::string pci;   // empty for a device with no PCI parent (rxe, siw)
  std::string node_guid;
  std::string sys_image_guid;
  std::vector<RdmaPort> ports;
  std::string role = "other";  // "vf", "pf" or "other": what sysfs discovery knows it as
  bool operator==(const RdmaDevice&) const = default;
};

struct Inventory {
  std::vector<NumaNode> numa_nodes;
  std::vector<Gpu> gpus;
  std::vector<Hca> hcas;
  std::vector<Vf> vfs;
  // IOMMU groups whose devices go to one berth or none (device passthrough).
  std::vector<int> passthrough_groups;
  // NUMA distances, distance[i][j] indexed by position in numa_nodes; empty means 10/20.
  std::vector<std::vector<int>> distance;
  // From libibverbs where the host has RDMA devices; empty is the normal case without them.
  std::vector<RdmaDevice> rdma_devices;
  // The RDMA subsystem's network namespace mode: "exclusive", "shared", or "none" (no RDMA).
  std::string rdma_netns = "none";

  const NumaNode* numa(int id) const;
  const Gpu* gpu_by_id(const std::string& id) const;
  const Gpu* gpu_by_index(int index) const;
  const Vf* vf_by_pci(const std::string& pci) const;
  int numa_distance(int a, int b) const;
  bool is_passthrough(int group) const;
};

// Whether a uevent may change what discovery finds, so that sysfs is worth reading again. A
// netdev's comings and goings do not on their own: a VF made, removed, bound or unbound sends
// its PCI device's event too, and a netdev moved between namespaces (a VF into or out of a
// container, berth's doing or any other tool's) is a remove in one and an add in the other. So
// a netdev removed never does; one added or renamed does only when it is a device's netdev in
// the host's namespace (`host_device`: not a virtual link such as a veth, nor one in a
// container's namespace) that the inventory does not know as a VF's (an IPoIB netdev made after
// its HCA); an RDMA device the inventory knows does not either. Any other event may.
bool uevent_may_change_inventory(const Inventory& inventory, std::string_view action,
                                 std::string_view subsystem, std::string_view sysname,
                                 bool host_device);

void to_json(nlohmann::json& j, const CharDevice& d);
void to_json(nlohmann::json& j, const Inventory& inv);

}  // namespace berth
