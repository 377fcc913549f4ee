#pragma once
// Placement: which GPUs, VFs and CPUs a request gets, given what the ledger already holds.
#include <map>
#include <set>
#include <string>

#include "core/berth.hpp"
#include "core/expected.hpp"
#include "core/inventory.hpp"
#include "core/request.hpp"

namespace berth {

// What live berths hold. Shared berths hold GPUs but no CPUs exclusively.
struct Usage {
  std::map<std::string, int> gpu_exclusive;  // GPU id -> holders (0 or 1)
  std::map<std::string, int> gpu_shared;     // GPU id -> number of shared holders
  std::set<std::string> vfs;
  std::set<int> cpus;
  std::map<std::string, std::vector<std::string>> gpu_holders;  // GPU id -> owners, for messages

  void add(const Berth& b);
};

// Best fit: the NUMA node that is left with the least free after the placement is chosen,
// so large free blocks stay free. A refusal says what was asked and what each node has free.
Expected<Placement> place(const Inventory& inv, const Usage& usage, const BerthRequest& req);

}  // namespace berth
