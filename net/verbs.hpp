#pragma once
// The host's RDMA devices through libibverbs: ibv_get_device_list, then per device
// ibv_query_device, and per port ibv_query_port and its GID 0 (the port GUID). The PCI address
// comes from the device's sysfs node (ibdev_path/device). No devices, or no RDMA in the kernel,
// is an empty list, not an error. Blocking (it opens each device): call it off the reactor.
#include <vector>

#include "core/expected.hpp"
#include "core/inventory.hpp"

namespace berth::net {

// A device that cannot be opened or queried is listed with what could be read and named in
// `warnings`.
std::vector<RdmaDevice> enumerate_rdma_devices(std::vector<std::string>& warnings);

// "xxxx:xxxx:xxxx:xxxx" from a GUID in network byte order, as ibv_devinfo prints it.
std::string format_verbs_guid(uint64_t be_guid);

}  // namespace berth::net
