#pragma once
// Keeps berthd's CDI spec file equal to the reserved berths: rendered on the reactor after each
// ledger change, written on the worker (a temporary file renamed over the spec) only when it
// changed, so a runtime reading /var/run/cdi never sees half a spec.
#include <functional>
#include <string>

#include "core/cdi.hpp"

namespace berth::agent {

class CdiWriter {
 public:
  // `run_off_reactor` runs a job on the worker thread, in order.
  CdiWriter(std::string path, CdiOptions options,
            std::function<void(std::function<void()>)> run_off_reactor);
  void update(const Ledger& ledger, const Inventory& inventory);

 private:
  std::string path_;
  CdiOptions options_;
  std::function<void(std::function<void()>)> run_;
  std::string last_;
};

// Writes `text` to `path` atomically (same directory, then rename); false with a log line when it
// could not.
bool write_file_atomically(const std::string& path, const std::string& text);

}  // namespace berth::agent
