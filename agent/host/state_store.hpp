#pragma once
// The ledger on disk: one record per berth, `<dir>/berths/<kind>/<id>.json`, each replaced
// atomically, so a crash leaves either the old or the new record of a berth, never a mix, and a
// change costs the size of one berth, not of the ledger.
//
// Two places, by what a record must survive:
// - reservations (a berth created or released) go to `state_dir`, fsynced (file and directory):
//   they survive a power loss;
// - attachment state (the plan, the steps done, attached or not) goes to `runtime_dir` (/run, a
//   tmpfs on a real host) by rename alone: it survives the agent's death, and is gone after a
//   reboot together with the containers, device nodes and moved links it described.
// A runtime record, when there is one, is the newer state of its berth. Its first line is the
// berth's record; an operation's progress after it is appended, a line per step
// (core/progress.hpp), until the record is written whole again. A line cut short by a crash is
// the last one and is left out: it described a step that had not started.
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "agent/host/unique_fd.hpp"
#include "core/expected.hpp"
#include "core/ledger.hpp"

namespace berth::agent {

// One record to write (its JSON text) or, without text, to remove. Made on the reactor from the
// ledger as it is then; written later on the worker thread.
struct RecordWrite {
  std::string owner;
  std::optional<std::string> text;
  // `text` is a progress line, appended to the runtime record written before it.
  bool progress = false;
};

// True when `path` (or the nearest existing parent) is on a tmpfs.
bool is_tmpfs(const std::string& path);
// `text` to `path` through a temporary file, renamed over it; file and directory fsynced (the
// directory is made when missing, mode 0700).
Status write_file_durably(const std::string& path, const std::string& text);

class StateStore {
 public:
  StateStore(std::string state_dir, std::string runtime_dir);
  // No records is an empty ledger; an unreadable or corrupt record is an error naming the file,
  // never a guess.
  Expected<Ledger> load() const;
  // berthd --recover: like load(), but a corrupt record is moved to <dir>/quarantine/ and listed
  // in `set_aside` instead of stopping the load.
  Expected<Ledger> load_setting_aside(std::vector<std::string>& set_aside);
  // Writes the records of `owners` as they are in `ledger`; removes those no longer in it.
  // `durable`: to state_dir with fsync, dropping the runtime record; else to runtime_dir.
  Status save(const Ledger& ledger, const std::vector<std::string>& owners, bool durable = true);
  // save() in two halves: the records as they are now (cheap, on the reactor), then the writes
  // (blocking, on the worker thread). Thread-safe against itself only through the one worker.
  static std::vector<RecordWrite> records(const Ledger& ledger,
                                          const std::vector<std::string>& owners);
  Status write(const std::vector<RecordWrite>& records, bool durable);
  // The boot id recorded at the last start, then `current` recorded durably. Empty at first start.
  Expected<std::string> swap_boot_id(const std::string& current);
  // Every berth of the ledger, durably.
  Status save_all(const Ledger& ledger);
  std::string record_path(const std::string& owner) const;
  std::string runtime_record_path(const std::string& owner) const;

 private:
  Status append_progress(const std::string& owner, const std::string& line);
  // The runtime record of `owner` was replaced or removed: its open descriptor goes.
  void forget_open(const std::string& owner);

  std::string dir_;
  std::string runtime_dir_;
  // Runtime records open for progress lines (a few: the berths with an operation under way).
  std::map<std::string, UniqueFd> open_;
  // Owners whose last write failed: no line is appended to their record (it would follow a state
  // that is not there) until it is written whole again.
  std::set<std::string> broken_;
};

}  // namespace berth::agent
