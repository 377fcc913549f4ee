#pragma once
// Host steps of an attach, each with its inverse. A step that replaces a value reports the old
// one as its "undo" string; the inverse is built from the step and that string.
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "core/expected.hpp"
#include "core/inventory.hpp"

namespace berth {

namespace step {
// Undo "existed" when the node was already there; otherwise "bind" when the node is a bind
// mount of the host's (a container in a user namespace of its own) and "dirs=N" when berth made
// N parent directories for it, space-separated.
struct MakeNode {
  CharDevice dev;
  bool operator==(const MakeNode&) const = default;
};
struct RemoveNode {
  CharDevice dev;
  int dirs = 0;       // parent directory levels berth made for the node
  bool bind = false;  // a bind mount to take off, not a node to unlink
  bool operator==(const RemoveNode&) const = default;
};
// Both gates where the host has them: the cgroup v1 devices list and the cgroup v2 device
// programs. Undo "already-allowed": nothing to deny; otherwise it names the gate that already
// allowed the device ("v1-already", "v2-already") and the v2 program ids berth swapped, or
// "lxc" when LXC's own rule list took the device (LXC on cgroup v2), and "systemd=UNIT" when
// berth added it to a systemd scope's DeviceAllow=; tokens are separated by "; ".
struct AllowDevice {
  unsigned major;
  unsigned minor;
  bool operator==(const AllowDevice&) const = default;
};
struct DenyDevice {
  unsigned major;
  unsigned minor;
  std::string skip = {};  // "v1" or "v2": a gate that allowed the device before berth did
  std::string via = {};   // "lxc": allowed through LXC's own rules (undo "lxc"), denied there
  std::string unit = {};  // the systemd scope whose DeviceAllow= berth added it to ("systemd=")
  bool operator==(const DenyDevice&) const = default;
};
struct SetCpuset {
  std::string cpus;
  std::string mems;
  bool operator==(const SetCpuset&) const = default;
};  // undo "<cpus>|<mems>"
// `pci`: the VF's PCI address, by which a link that came back to the host under another name
// (its in-container name, or devN) is recognised. Empty for a link without a device.
// MoveLinkIn's undo is the link's identity in the container once it is there ("ifindex=N
// driver=D bus=B"); MoveLinkOut finds the link by that, never by a name the container can give
// another link.
struct MoveLinkIn {
  std::string host_name;
  std::string ifname;
  std::string pci = {};
  bool operator==(const MoveLinkIn&) const = default;
};
struct MoveLinkOut {
  std::string ifname;
  std::string host_name;
  std::string pci = {};
  std::string identity = {};
  bool operator==(const MoveLinkOut&) const = default;
};
// The VF's RDMA device into the container's network namespace (sent from the host's, before the
// netdev moves: the move recreates the device's IPoIB netdevs where it lands) and back (sent from
// the container's, while that namespace still lives).
// An InfiniBand VF's GUIDs, set on its PF (two RTM_SETLINK messages, node then port), then its
// link state (IFLA_VF_LINK_STATE: 1 enable at attach, 0 auto when put back); undo
// "<node>|<port>", the GUIDs it had. With `rebind` (the VF's driver, mlx5_core: it applies GUIDs
// only when it probes the VF) the VF is unbound from that driver and bound again afterwards, and
// the step reports the VF as it came back: its netdev, RDMA device and nodes may have new names,
// and the steps after it are planned again from them.
struct SetVfGuid {
  std::string pf_pci;
  std::string vf_pci;
  int vf_index = 0;
  std::string node_guid;
  std::string port_guid;
  int link_state = 1;
  std::string rebind = {};
  bool operator==(const SetVfGuid&) const = default;
};
struct MoveRdmaIn {
  std::string device;
  bool operator==(const MoveRdmaIn&) const = default;
};
struct MoveRdmaOut {
  std::string device;
  bool operator==(const MoveRdmaOut&) const = default;
};
// An IPoIB child `name` of the container's `parent` on partition `pkey`, made inside the
// container's namespace; undo: the child's identity ("ifindex=N driver=D bus=B"), by which it is
// deleted, never by a name the container controls.
struct AddPkeyLink {
  std::string parent;
  std::string name;
  uint16_t pkey = 0;
  bool operator==(const AddPkeyLink&) const = default;
};
struct DelPkeyLink {
  std::string parent;
  std::string name;
  uint16_t pkey = 0;
  std::string identity = {};
  bool operator==(const DelPkeyLink&) const = default;
};
struct SetMtu {
  std::string ifname;
  int mtu;
  bool operator==(const SetMtu&) const = default;
};  // undo: previous MTU
struct AddAddress {
  std::string ifname;
  std::string cidr;
  bool operator==(const AddAddress&) const = default;
};
struct DelAddress {
  std::string ifname;
  std::string cidr;
  bool operator==(const DelAddress&) const = default;
};
struct AddRoute {
  std::string ifname;
  std::string dst;
  std::string via;
  bool operator==(const AddRoute&) const = default;
};
struct DelRoute {
  std::string ifname;
  std::string dst;
  std::string via;
  bool operator==(const DelRoute&) const = default;
};
struct LinkUp {
  std::string ifname;
  bool operator==(const LinkUp&) const = default;
};
struct LinkDown {
  std::string ifname;
  bool operator==(const LinkDown&) const = default;
};
}  // namespace step

using Step = std::variant<step::MakeNode, step::RemoveNode, step::AllowDevice, step::DenyDevice,
                          step::SetCpuset, step::SetVfGuid, step::MoveLinkIn, step::MoveLinkOut,
                          step::MoveRdmaIn, step::MoveRdmaOut, step::SetMtu, step::AddAddress,
                          step::DelAddress, step::AddRoute, step::DelRoute, step::LinkUp,
                          step::LinkDown, step::AddPkeyLink, step::DelPkeyLink>;

// A step that ran, with what it reported for its inverse.
struct DoneStep {
  Step step;
  std::string undo;
  bool operator==(const DoneStep&) const = default;
};

// Human-readable, e.g. "move link ib0v0 into the container as ib0".
std::string describe(const Step& s);
// The step that undoes `s` given its undo string; nullopt when nothing needs undoing.
std::optional<Step> inverse(const Step& s, const std::string& undo);

// Step is a std::variant, out of ADL's reach, so these are named functions.
nlohmann::json step_to_json(const Step& s);
Expected<Step> step_from_json(const nlohmann::json& j);

}  // namespace berth
