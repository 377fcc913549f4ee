#pragma once
// InfiniBand GUIDs as text and as numbers, and the GUIDs berth gives a VF.
#include <cstdint>
#include <optional>
#include <string>

namespace berth {

// "xx:xx:xx:xx:xx:xx:xx:xx" (iproute2's form; the first byte is the most significant).
std::optional<uint64_t> parse_guid(const std::string& text);
std::string format_guid(uint64_t guid);
// A GUID for a VF from things that do not change across reboots: the node's name, the PF's PCI
// address, the VF index and node (0) or port (1). Never 0 or all-ones (invalid and "unset").
uint64_t derive_guid(const std::string& node, const std::string& pf_pci, uint32_t vf, int which);

}  // namespace berth
