#pragma once
// The attach cycle as berth's peers do it, for side-by-side figures: the kernel floor (the same
// netlink, cgroup and mknod operations issued directly, no agent), CNI host-device with static
// IPAM, and `ip`/shell commands.
#include <memory>
#include <string>

namespace berth::bench {

struct CycleTarget {
  int pid = 0;
  std::string cgroup;   // e.g. "/berth-bench/c0", under each v1 controller
  std::string vf;       // host netdev name
  std::string address;  // "10.80.0.10/16"
  std::string gateway;  // "10.80.0.1"
};

// Opens the container once and keeps its sockets, so each cycle is only the operations.
class KernelFloor {
 public:
  explicit KernelFloor(const CycleTarget& t);
  ~KernelFloor();
  double cycle_ms();  // attach then detach; -1 on failure (the error is printed)
  // GPU only: the 2 device nodes, their v1 device rules and the cpuset, and back.
  double gpu_cycle_ms();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

double cni_add_ms(const CycleTarget& t, const std::string& container_id);
double cni_del_ms(const CycleTarget& t, const std::string& container_id);
double ip_commands_cycle_ms(const CycleTarget& t);

}  // namespace berth::bench
