#pragma once
// The ledger on disk: written whole on every change (write, fsync, rename, fsync directory),
// so a crash leaves either the old or the new file, never a mix.
#include <string>

#include "core/expected.hpp"
#include "core/ledger.hpp"

namespace berth::agent {

class StateStore {
 public:
  explicit StateStore(std::string dir);
  // A missing file is an empty ledger; an unreadable or corrupt one is an error, never a guess.
  Expected<Ledger> load() const;
  Status save(const Ledger& ledger);
  std::string path() const;

 private:
  std::string dir_;
};

}  // namespace berth::agent
