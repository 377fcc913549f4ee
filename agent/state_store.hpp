#pragma once
// The ledger on disk: one file per berth, <state_dir>/berths/<kind>/<id>.json, each replaced
// atomically (write, fsync, rename, fsync directory), so a crash leaves either the old or the
// new record of a berth, never a mix, and a change costs the size of one berth, not the ledger.
#include <string>
#include <vector>

#include "core/expected.hpp"
#include "core/ledger.hpp"

namespace berth::agent {

class StateStore {
 public:
  explicit StateStore(std::string dir);
  // No directory is an empty ledger; an unreadable or corrupt record is an error naming the file,
  // never a guess.
  Expected<Ledger> load() const;
  // Writes the records of `owners` as they are in `ledger`; removes those no longer in it.
  // `durable`: fsync records and directories (survives a power loss); otherwise the atomic
  // rename alone (survives the agent's death).
  Status save(const Ledger& ledger, const std::vector<std::string>& owners, bool durable = true);
  // Every berth of the ledger.
  Status save_all(const Ledger& ledger);
  std::string record_path(const std::string& owner) const;

 private:
  std::string dir_;
};

}  // namespace berth::agent
