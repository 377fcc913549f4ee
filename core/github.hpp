#pragma once
// GitHub's front door: workflow_job deliveries turned into ephemeral runners. Pure: the payload
// and the clock come in as values, what to do comes out as actions.
//
//   delivery (queued)      -> a runner waits in the FIFO queue; Start when there is capacity
//   Start performed        -> started (runner running) | start_failed (no_capacity: back in line)
//   delivery (in_progress) -> the runner that took the job is recorded
//   delivery (completed)   -> Stop for the runner of that job
//   runner exited / reaped -> Stop; stopped -> finished, capacity frees, the queue moves
//
// Deduplicated on (job id, action); a job seen completed (or taken by another runner) before it
// was queued never gets a runner; delivery ids are kept as a replay record.
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/expected.hpp"

namespace berth::github {

// The runner's container (backend local): placeholders {job_id} {run_id} {repo} {labels}
// {runner_name} {jit_config} in args and env.
struct RunnerTemplate {
  std::string rootfs;  // absolute; mounted read-only, with tmpfs where the runner writes
  std::vector<std::string> args;
  std::vector<std::string> env;  // KEY=VALUE
  std::string cwd = "/";
  uint64_t memory_mb = 0;  // 0: no limit
  bool host_network = false;
  std::vector<std::string> tmpfs{"/tmp"};
};

// Backend slurm: the runner goes out as an sbatch job on this partition with --gres=gpu:N.
struct SlurmBackend {
  std::string partition;
  unsigned gpus = 1;
  std::string script;  // the batch script that starts the runner (BERTH_* variables set)
  std::vector<std::string> sbatch_args;
};

enum class Backend { local, slurm };

struct Flavor {
  std::string name;
  std::vector<std::string> labels;  // lower-case, sorted, unique, "self-hosted" left out
  bool exact = false;
  nlohmann::json request;  // the berth's create request (checked at load)
  RunnerTemplate runner;
  unsigned max = 0;  // 0: only the global limit
  Backend backend = Backend::local;
  SlurmBackend slurm;
};

struct Settings {
  std::vector<Flavor> flavors;
  unsigned max_runners = 4;
  int64_t reap_after_s = 600;       // started but no job taken by then: reaped
  int64_t max_runtime_s = 25200;    // took a job and never finished (GitHub's 6 h, and then some)
  int64_t queue_timeout_s = 86400;  // GitHub drops a job queued for 24 h
  int64_t keep_finished_s =
      int64_t{7} * 86400;  // finished runners kept as tombstones (dedupe, listing)
  size_t deliveries_kept = 10000;
  size_t finished_kept = 10000;         // finished runners kept at most (oldest forgotten first)
  std::string runner_prefix = "berth";  // runner names: <prefix>-<job id>
};

// The "flavors" array (and the limits beside it) of berthd's "github" config; labels are
// normalized, and two flavors that could tie for one job are an error. Errors name the field.
Expected<Settings> parse_settings(const nlohmann::json& github);
// Why two flavors tie (same number of labels and a job could match both), if they do.
std::optional<std::string> find_tie(const std::vector<Flavor>& flavors);

struct Match {
  const Flavor* flavor = nullptr;
  std::string reason;  // why none matched
};
// All the job's labels (case-insensitive; "self-hosted" ignored) in the flavor's labels, or
// equal to them for an exact flavor; the matching flavor with the fewest labels wins.
Match match_flavor(const std::vector<Flavor>& flavors, const std::vector<std::string>& labels);

// The fields of a workflow_job delivery that berth uses.
struct Job {
  uint64_t id = 0;
  uint64_t run_id = 0;
  std::string repo;   // owner/name
  std::string owner;  // repository owner (org or user)
  uint64_t installation_id = 0;
  std::vector<std::string> labels;
  std::string runner_name;  // may be set on any action; meaningful on in_progress/completed
};
Expected<Job> parse_workflow_job(const nlohmann::json& payload);

enum class State { queued, starting, running, stopping, finished };
std::string_view to_string(State s);

struct Runner {
  Job job;
  std::string flavor;
  State state = State::queued;
  uint64_t seq = 0;            // FIFO order
  std::string name;            // the runner's name at GitHub (ours)
  uint64_t took_job = 0;       // the job its runner was seen taking
  std::string taken_by;        // the runner that took this job (ours or not)
  std::set<std::string> seen;  // actions delivered for this job
  int64_t queued_at = 0, started_at = 0, running_at = 0, finished_at = 0;
  std::string outcome;     // why it finished or is stopping
  std::string backend_id;  // the Slurm job id (backend slurm)
  bool tombstone = false;  // known only from a late delivery: never had a runner
  int64_t retry_at = 0;    // back in line after no capacity: not tried again before this
};

struct Book {
  std::map<uint64_t, Runner> runners;    // by job id
  std::deque<std::string> deliveries;    // replay record, newest last
  std::set<std::string> delivery_index;  // the same ids, for lookup
  uint64_t next_seq = 1;
  // What changed since the adapter last took it (not persisted): runners changed or forgotten,
  // deliveries recorded. The adapter journals exactly these.
  std::set<uint64_t> dirty;
  std::vector<std::string> new_deliveries;
  // Indexes kept in step with `runners` (sync_index): the queue in FIFO order and the runners
  // that hold capacity, so a delivery costs the same with ten thousand jobs queued.
  std::set<std::pair<uint64_t, uint64_t>> queue;  // (seq, job id)
  std::map<uint64_t, uint64_t> queued_seq;        // job id -> its seq in `queue`
  std::set<uint64_t> active;                      // starting, running, stopping
  std::set<uint64_t> unindexed;                   // changed since the indexes were synced
};
// Brings the indexes up to date with the runners changed since (all of them after a load).
void sync_index(Book& book);

namespace gh {
struct Start {
  uint64_t job_id;
};
struct Stop {
  uint64_t job_id;
  std::string why;
};
}  // namespace gh
using Action = std::variant<gh::Start, gh::Stop>;

struct Outcome {
  unsigned status = 200;  // the HTTP status for the delivery
  std::string reason;
  std::vector<Action> actions;
  bool changed = false;  // the book must be written
};

struct Delivery {
  std::string id;     // X-GitHub-Delivery
  std::string event;  // X-GitHub-Event
  nlohmann::json payload;
};

Outcome on_delivery(Book& book, const Settings& s, const Delivery& d, int64_t now);
// The Start of `job_id` was performed: its runner runs (or its Slurm job is submitted).
Outcome on_started(Book& book, const Settings& s, uint64_t job_id, int64_t now,
                   const std::string& backend_id = {});
// The Start failed; `retry` (no capacity now) puts it back at its place in the queue.
Outcome on_start_failed(Book& book, const Settings& s, uint64_t job_id, const std::string& why,
                        bool retry, int64_t now);
// The runner's process (or Slurm job) ended by itself.
Outcome on_exited(Book& book, const Settings& s, uint64_t job_id, const std::string& why,
                  int64_t now);
// Its container is gone and its berth released: capacity frees.
Outcome on_stopped(Book& book, const Settings& s, uint64_t job_id, int64_t now);
// Reaping (runners that never take a job or never finish, jobs queued too long) and forgetting
// old tombstones; then the queue moves if it can.
Outcome on_tick(Book& book, const Settings& s, int64_t now);
// Starts what the limits allow, in queue order.
std::vector<Action> schedule(Book& book, const Settings& s, int64_t now);

// "github/<job id>".
std::string berth_owner(uint64_t job_id);
// The runner's name at GitHub.
std::string runner_name(const Settings& s, uint64_t job_id);

nlohmann::json book_to_json(const Book& book);
Expected<Book> book_from_json(const nlohmann::json& j);
nlohmann::json runner_to_json(const Runner& r);
Expected<Runner> runner_from_json(const nlohmann::json& j);
// The journal: one JSON line per change ({"runner": ...}, {"forget": id}, {"delivery": id}),
// appended after each batch of events and folded into a snapshot (book_to_json) now and then.
// take_journal drains book.dirty and book.new_deliveries into those lines.
std::string take_journal(Book& book);
// The journal line of a runner: {"runner": runner_to_json(r)} as text, newline included.
void append_runner_line(std::string& out, const Runner& r);
// Applies journal lines over a book read from its snapshot; a torn last line (a crash during the
// append, never acknowledged) is ignored. Returns how many lines were applied.
Expected<size_t> replay_journal(Book& book, const std::string& text, size_t deliveries_kept);

}  // namespace berth::github
