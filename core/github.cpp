#include "core/github.hpp"

#include <algorithm>
#include <cctype>

#include "core/json_text.hpp"
#include "core/request.hpp"

namespace berth::github {
namespace {

using nlohmann::json;

Error field_error(const std::string& field, const std::string& why) {
  return make_error(ErrorCode::bad_request, "config field 'github." + field + "': " + why);
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

// Lower-case, sorted, unique, without "self-hosted" (every runner berth starts is one).
std::vector<std::string> normalize(const std::vector<std::string>& labels) {
  std::vector<std::string> out;
  for (const auto& l : labels) {
    auto n = lower(l);
    if (n != "self-hosted") out.push_back(std::move(n));
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

bool subset(const std::vector<std::string>& a, const std::vector<std::string>& b) {
  return std::includes(b.begin(), b.end(), a.begin(), a.end());
}

bool active(State s) {
  return s == State::starting || s == State::running || s == State::stopping;
}

template <class T>
Expected<T> get(const json& j, const char* key, const std::string& where, T fallback) {
  if (!j.contains(key)) return fallback;
  try {
    return j.at(key).get<T>();
  } catch (const json::exception&) {
    return field_error(where + key, "has the wrong type");
  }
}

Expected<std::vector<std::string>> strings(const json& j, const char* key,
                                           const std::string& where) {
  if (!j.contains(key)) return std::vector<std::string>{};
  const auto& v = j.at(key);
  if (!v.is_array()) return field_error(where + key, "must be an array of strings");
  std::vector<std::string> out;
  for (const auto& e : v) {
    if (!e.is_string()) return field_error(where + key, "must be an array of strings");
    out.push_back(e.get<std::string>());
  }
  return out;
}

Expected<Flavor> parse_flavor(const json& f, size_t index) {
  const std::string where = "flavors[" + std::to_string(index) + "].";
  if (!f.is_object()) return field_error(where.substr(0, where.size() - 1), "must be an object");
  static const std::set<std::string> known{"name",   "labels", "exact",   "request",
                                           "runner", "max",    "backend", "slurm"};
  for (const auto& [k, v] : f.items())
    if (!known.count(k)) return field_error(where + k, "unknown key");
  Flavor fl;
  auto name = get<std::string>(f, "name", where, "");
  if (!name) return name.error();
  if (name->empty()) return field_error(where + "name", "is required");
  fl.name = *name;
  auto labels = strings(f, "labels", where);
  if (!labels) return labels.error();
  fl.labels = normalize(*labels);
  if (fl.labels.empty())
    return field_error(where + "labels", "needs at least one label besides self-hosted");
  auto exact = get<bool>(f, "exact", where, false);
  if (!exact) return exact.error();
  fl.exact = *exact;
  auto max = get<unsigned>(f, "max", where, 0);
  if (!max) return max.error();
  fl.max = *max;
  fl.request = f.value("request", json::object());
  if (!fl.request.is_object()) return field_error(where + "request", "must be an object");
  if (auto r = parse_request(fl.request); !r)
    return field_error(where + "request", r.error().message);
  auto backend = get<std::string>(f, "backend", where, "local");
  if (!backend) return backend.error();
  if (*backend == "slurm") {
    fl.backend = Backend::slurm;
    const json s = f.value("slurm", json::object());
    auto partition = get<std::string>(s, "partition", where + "slurm.", "");
    auto gpus = get<unsigned>(s, "gpus", where + "slurm.", 1);
    auto script = get<std::string>(s, "script", where + "slurm.", "");
    auto extra = strings(s, "sbatch_args", where + "slurm.");
    if (!partition) return partition.error();
    if (!gpus) return gpus.error();
    if (!script) return script.error();
    if (!extra) return extra.error();
    if (script->empty() || script->front() != '/')
      return field_error(where + "slurm.script", "must be an absolute path");
    fl.slurm = {*partition, *gpus, *script, *extra};
    return fl;
  }
  if (*backend != "local") return field_error(where + "backend", "must be local or slurm");
  if (!f.contains("runner") || !f["runner"].is_object())
    return field_error(where + "runner", "is required (an object) for backend local");
  const json& r = f["runner"];
  static const std::set<std::string> runner_keys{"rootfs",    "args",         "env",  "cwd",
                                                 "memory_mb", "host_network", "tmpfs"};
  for (const auto& [k, v] : r.items())
    if (!runner_keys.count(k)) return field_error(where + "runner." + k, "unknown key");
  auto rootfs = get<std::string>(r, "rootfs", where + "runner.", "");
  auto args = strings(r, "args", where + "runner.");
  auto env = strings(r, "env", where + "runner.");
  auto cwd = get<std::string>(r, "cwd", where + "runner.", "/");
  auto memory = get<uint64_t>(r, "memory_mb", where + "runner.", 0);
  auto host_net = get<bool>(r, "host_network", where + "runner.", false);
  auto tmpfs = r.contains("tmpfs") ? strings(r, "tmpfs", where + "runner.")
                                   : Expected<std::vector<std::string>>(fl.runner.tmpfs);
  for (const auto* e : {&rootfs, &cwd})
    if (!*e) return e->error();
  for (const auto* e : {&args, &env, &tmpfs})
    if (!*e) return e->error();
  if (!memory) return memory.error();
  if (!host_net) return host_net.error();
  if (rootfs->empty() || rootfs->front() != '/')
    return field_error(where + "runner.rootfs", "must be an absolute path");
  if (args->empty()) return field_error(where + "runner.args", "must name the runner's command");
  for (const auto& e : *env)
    if (e.find('=') == std::string::npos || e.front() == '=')
      return field_error(where + "runner.env", "'" + e + "' is not KEY=VALUE");
  for (const auto& t : *tmpfs)
    if (t.empty() || t.front() != '/' || t.find("..") != std::string::npos)
      return field_error(where + "runner.tmpfs", "'" + t + "' is not an absolute path");
  fl.runner = {*rootfs, *args, *env, *cwd, *memory, *host_net, *tmpfs};
  return fl;
}

void push_delivery(Book& book, const Settings& s, const std::string& id) {
  if (id.empty()) return;
  book.deliveries.push_back(id);
  book.delivery_index.insert(id);
  book.new_deliveries.push_back(id);
  while (book.deliveries.size() > s.deliveries_kept) {
    book.delivery_index.erase(book.deliveries.front());
    book.deliveries.pop_front();
  }
}

void touch(Book& book, const Runner& r) {
  book.dirty.insert(r.job.id);
  book.unindexed.insert(r.job.id);
}

// The runner an outcome changes, marked changed; null (nothing to do) when the book has none.
Runner* changing(Book& book, uint64_t job_id, Outcome& out) {
  auto it = book.runners.find(job_id);
  if (it == book.runners.end()) return nullptr;
  out.changed = true;
  touch(book, it->second);
  return &it->second;
}

void reindex_all(Book& book) {
  for (const auto& [id, r] : book.runners) book.unindexed.insert(id);
  sync_index(book);
}

Outcome reply(unsigned status, std::string reason, bool changed = true) {
  Outcome o;
  o.status = status;
  o.reason = std::move(reason);
  o.changed = changed;
  return o;
}

// Marks an active runner stopping and asks for its teardown.
void stop(Book& book, Runner& r, const std::string& why, std::vector<Action>& actions) {
  if (r.state == State::queued || r.state == State::starting || r.state == State::running)
    touch(book, r);
  if (r.state == State::queued) {
    r.state = State::finished;
    r.outcome = why;
    return;
  }
  if (r.state != State::starting && r.state != State::running) return;
  r.state = State::stopping;
  r.outcome = why;
  actions.push_back(gh::Stop{r.job.id, why});
}

void append(std::vector<Action>& to, std::vector<Action> more) {
  for (auto& a : more) to.push_back(std::move(a));
}

Runner* ours_named(Book& book, const std::string& name) {
  if (name.empty()) return nullptr;
  for (auto& [id, r] : book.runners)
    if (r.name == name && !r.tombstone) return &r;
  return nullptr;
}

}  // namespace

std::string_view to_string(State s) {
  switch (s) {
    case State::queued:
      return "queued";
    case State::starting:
      return "starting";
    case State::running:
      return "running";
    case State::stopping:
      return "stopping";
    case State::finished:
      return "finished";
  }
  return "finished";
}

std::optional<std::string> find_tie(const std::vector<Flavor>& flavors) {
  for (size_t i = 0; i < flavors.size(); ++i)
    for (size_t j = i + 1; j < flavors.size(); ++j) {
      const auto& a = flavors[i];
      const auto& b = flavors[j];
      if (a.labels.size() != b.labels.size()) continue;
      bool tie = a.labels == b.labels;
      if (!tie && !a.exact && !b.exact) {
        std::vector<std::string> common;
        std::set_intersection(a.labels.begin(), a.labels.end(), b.labels.begin(), b.labels.end(),
                              std::back_inserter(common));
        tie = !common.empty();
      }
      if (tie)
        return "flavors '" + a.name + "' and '" + b.name + "' tie: both have " +
               std::to_string(a.labels.size()) +
               " labels and one job can match both; give one of them more labels or make "
               "them exact";
    }
  return std::nullopt;
}

Expected<Settings> parse_settings(const json& g) {
  Settings s;
  if (!g.is_object()) return field_error("", "must be an object");
  auto max_runners = get<unsigned>(g, "max_runners", "", s.max_runners);
  auto reap = get<int64_t>(g, "reap_after_s", "", s.reap_after_s);
  auto runtime = get<int64_t>(g, "max_runtime_s", "", s.max_runtime_s);
  auto queue = get<int64_t>(g, "queue_timeout_s", "", s.queue_timeout_s);
  auto prefix = get<std::string>(g, "runner_prefix", "", s.runner_prefix);
  if (!max_runners) return max_runners.error();
  for (const auto* e : {&reap, &runtime, &queue})
    if (!*e) return e->error();
  if (!prefix) return prefix.error();
  s.max_runners = *max_runners;
  s.reap_after_s = *reap;
  s.max_runtime_s = *runtime;
  s.queue_timeout_s = *queue;
  s.runner_prefix = *prefix;
  if (*reap <= 0 || *runtime <= 0 || *queue <= 0)
    return field_error("reap_after_s", "the time limits must be positive");
  if (prefix->empty() || prefix->size() > 32 ||
      !std::all_of(prefix->begin(), prefix->end(),
                   [](unsigned char c) { return std::isalnum(c) || c == '-' || c == '_'; }))
    return field_error("runner_prefix", "1-32 of [A-Za-z0-9_-]");
  const json flavors = g.value("flavors", json::array());
  if (!flavors.is_array()) return field_error("flavors", "must be an array");
  std::set<std::string> names;
  for (size_t i = 0; i < flavors.size(); ++i) {
    auto f = parse_flavor(flavors[i], i);
    if (!f) return f.error();
    if (!names.insert(f->name).second)
      return field_error("flavors[" + std::to_string(i) + "].name",
                         "'" + f->name + "' is used twice");
    s.flavors.push_back(std::move(*f));
  }
  if (auto tie = find_tie(s.flavors)) return field_error("flavors", *tie);
  return s;
}

Match match_flavor(const std::vector<Flavor>& flavors, const std::vector<std::string>& labels) {
  const auto job = normalize(labels);
  Match m;
  size_t best = 0;
  bool ambiguous = false;
  for (const auto& f : flavors) {
    const bool ok = f.exact ? job == f.labels : subset(job, f.labels);
    if (!ok) continue;
    if (!m.flavor || f.labels.size() < best) {
      m.flavor = &f;
      best = f.labels.size();
      ambiguous = false;
    } else if (f.labels.size() == best) {
      ambiguous = true;
    }
  }
  std::string shown;
  for (const auto& l : labels) shown += (shown.empty() ? "" : ",") + l;
  if (m.flavor && ambiguous) {
    m.flavor = nullptr;
    m.reason = "labels [" + shown + "] match several flavors equally; add a label to the job";
  } else if (!m.flavor) {
    m.reason = "no flavor takes labels [" + shown + "]";
  }
  return m;
}

Expected<Job> parse_workflow_job(const json& p) {
  try {
    if (!p.is_object() || !p.contains("workflow_job") || !p["workflow_job"].is_object())
      return make_error(ErrorCode::bad_request, "payload has no workflow_job object");
    const json& w = p["workflow_job"];
    Job j;
    j.id = w.at("id").get<uint64_t>();
    j.run_id = w.value("run_id", uint64_t{0});
    if (w.contains("labels") && w["labels"].is_array())
      for (const auto& l : w["labels"])
        if (l.is_string()) j.labels.push_back(l.get<std::string>());
    if (w.contains("runner_name") && w["runner_name"].is_string())
      j.runner_name = w["runner_name"].get<std::string>();
    if (p.contains("repository") && p["repository"].is_object()) {
      j.repo = p["repository"].value("full_name", "");
      if (p["repository"].contains("owner") && p["repository"]["owner"].is_object())
        j.owner = p["repository"]["owner"].value("login", "");
    }
    if (p.contains("installation") && p["installation"].is_object())
      j.installation_id = p["installation"].value("id", uint64_t{0});
    if (j.id == 0) return make_error(ErrorCode::bad_request, "workflow_job.id is 0");
    return j;
  } catch (const json::exception& e) {
    return make_error(ErrorCode::bad_request, std::string("workflow_job payload: ") + e.what());
  }
}

std::string berth_owner(uint64_t job_id) {
  return "github/" + std::to_string(job_id);
}

std::string runner_name(const Settings& s, uint64_t job_id) {
  return s.runner_prefix + "-" + std::to_string(job_id);
}

void sync_index(Book& book) {
  for (uint64_t id : book.unindexed) {
    if (auto q = book.queued_seq.find(id); q != book.queued_seq.end()) {
      book.queue.erase({q->second, id});
      book.queued_seq.erase(q);
    }
    book.active.erase(id);
    auto it = book.runners.find(id);
    if (it == book.runners.end()) continue;
    if (it->second.state == State::queued) {
      book.queue.insert({it->second.seq, id});
      book.queued_seq[id] = it->second.seq;
    } else if (active(it->second.state)) {
      book.active.insert(id);
    }
  }
  book.unindexed.clear();
}

std::vector<Action> schedule(Book& book, const Settings& s, int64_t now) {
  std::vector<Action> actions;
  sync_index(book);
  size_t running = book.active.size();
  if (running >= s.max_runners) return actions;
  std::map<std::string, size_t> per_flavor;
  for (uint64_t id : book.active) ++per_flavor[book.runners.at(id).flavor];
  std::set<std::string> held;  // FIFO within a flavor: one waiting holds the ones behind it
  // The queue index does not change in this loop (touch() defers it to the next sync).
  for (const auto& [seq, id] : book.queue) {
    if (running >= s.max_runners || held.size() >= s.flavors.size()) break;
    Runner* r = &book.runners.at(id);
    if (held.count(r->flavor)) continue;
    if (r->retry_at > now) {
      held.insert(r->flavor);
      continue;
    }
    auto f = std::find_if(s.flavors.begin(), s.flavors.end(),
                          [&](const Flavor& x) { return x.name == r->flavor; });
    if (f == s.flavors.end()) {
      touch(book, *r);
      r->state = State::finished;
      r->finished_at = now;
      r->outcome = "flavor '" + r->flavor + "' is no longer configured";
      continue;
    }
    if (f->max && per_flavor[r->flavor] >= f->max) {
      held.insert(r->flavor);
      continue;
    }
    touch(book, *r);
    r->state = State::starting;
    r->started_at = now;
    ++running;
    ++per_flavor[r->flavor];
    actions.push_back(gh::Start{r->job.id});
  }
  sync_index(book);
  return actions;
}

Outcome on_delivery(Book& book, const Settings& s, const Delivery& d, int64_t now) {
  if (d.event == "ping") return reply(200, "pong", false);
  if (d.event != "workflow_job")
    return reply(202, "event '" + d.event + "' is not handled; only workflow_job and ping", false);
  if (!d.id.empty() && book.delivery_index.count(d.id))
    return reply(200, "delivery " + d.id + " was already handled", false);
  auto parsed = parse_workflow_job(d.payload);
  if (!parsed) return reply(400, parsed.error().message, false);
  const Job& job = *parsed;
  const std::string action = d.payload.value("action", "");
  Outcome out = reply(200, "");
  push_delivery(book, s, d.id);
  auto it = book.runners.find(job.id);
  const std::string jid = std::to_string(job.id);
  if (it != book.runners.end() && it->second.seen.count(action)) {
    out.reason = "job " + jid + " was already seen " + action;
    return out;
  }
  if (action == "queued") {
    if (it != book.runners.end()) {
      it->second.seen.insert(action);
      touch(book, it->second);
      out.reason = "job " + jid + " was already " +
                   (it->second.seen.count("completed") ? "completed" : "taken") +
                   "; no runner started";
      return out;
    }
    auto m = match_flavor(s.flavors, job.labels);
    if (!m.flavor) {
      out.status = 202;
      out.reason = m.reason;
      return out;
    }
    Runner r;
    r.job = job;
    r.flavor = m.flavor->name;
    r.seq = book.next_seq++;
    r.name = runner_name(s, job.id);
    r.queued_at = now;
    r.seen.insert(action);
    touch(book, book.runners.emplace(job.id, std::move(r)).first->second);
    out.actions = schedule(book, s, now);
    const Runner& mine = book.runners.at(job.id);
    out.reason = "job " + jid + " takes flavor " + mine.flavor + ": runner " + mine.name + " " +
                 std::string(to_string(mine.state));
    return out;
  }
  if (action == "in_progress" || action == "completed") {
    if (it == book.runners.end()) {
      Runner t;
      t.job = job;
      t.state = State::finished;
      t.tombstone = true;
      t.queued_at = t.finished_at = now;
      t.outcome = action == "completed"
                      ? "completed before it was queued here"
                      : "taken by " + job.runner_name + " before it was queued here";
      it = book.runners.emplace(job.id, std::move(t)).first;
    }
    Runner& r = it->second;
    r.seen.insert(action);
    touch(book, r);
    Runner* runner = ours_named(book, job.runner_name);
    if (action == "in_progress") {
      r.taken_by = job.runner_name;
      if (runner) {
        runner->took_job = job.id;
        touch(book, *runner);
      }
      // Taken by someone else's runner while ours still waited: ours is not needed.
      if (r.state == State::queued && runner != &r)
        stop(book, r, "taken by " + job.runner_name, out.actions);
      if (r.state == State::finished && !r.finished_at) r.finished_at = now;
      out.reason = "job " + jid + " runs on " + job.runner_name;
      append(out.actions, schedule(book, s, now));
      return out;
    }
    if (runner && runner != &r) stop(book, *runner, "job " + jid + " completed", out.actions);
    if (r.took_job == 0 || r.took_job == job.id)
      stop(book, r, "job " + jid + " completed", out.actions);
    if (r.state == State::finished && !r.finished_at) r.finished_at = now;
    out.reason = "job " + jid + " completed";
    append(out.actions, schedule(book, s, now));
    return out;
  }
  out.status = 202;
  out.reason = "action '" + action + "': nothing to do";
  return out;
}

Outcome on_started(Book& book, const Settings& s, uint64_t job_id, int64_t now,
                   const std::string& backend_id) {
  Outcome out;
  Runner* found = changing(book, job_id, out);
  if (!found) return out;
  Runner& r = *found;
  if (!backend_id.empty()) r.backend_id = backend_id;
  if (r.state == State::starting) {
    r.state = State::running;
    r.running_at = now;
  } else if (r.state == State::stopping) {
    out.actions.push_back(gh::Stop{job_id, r.outcome});  // stopped while it started
  }
  (void)s;
  return out;
}

Outcome on_start_failed(Book& book, const Settings& s, uint64_t job_id, const std::string& why,
                        bool retry, int64_t now) {
  Outcome out;
  Runner* found = changing(book, job_id, out);
  if (!found) return out;
  Runner& r = *found;
  if (retry && r.state == State::starting) {
    r.state = State::queued;  // keeps its seq: its place in line
    r.retry_at = now + 5;
    r.outcome = why;
    return out;
  }
  r.state = State::finished;
  r.finished_at = now;
  r.outcome = "start failed: " + why;
  out.actions = schedule(book, s, now);
  return out;
}

Outcome on_exited(Book& book, const Settings& s, uint64_t job_id, const std::string& why,
                  int64_t now) {
  Outcome out;
  auto it = book.runners.find(job_id);
  if (it == book.runners.end()) return out;
  out.changed = true;
  stop(book, it->second, why, out.actions);
  (void)s;
  (void)now;
  return out;
}

Outcome on_stopped(Book& book, const Settings& s, uint64_t job_id, int64_t now) {
  Outcome out;
  Runner* found = changing(book, job_id, out);
  if (!found) return out;
  Runner& r = *found;
  r.state = State::finished;
  r.finished_at = now;
  out.actions = schedule(book, s, now);
  return out;
}

Outcome on_tick(Book& book, const Settings& s, int64_t now) {
  Outcome out;
  for (auto it = book.runners.begin(); it != book.runners.end();) {
    Runner& r = it->second;
    if (r.state == State::finished && now - r.finished_at > s.keep_finished_s) {
      book.dirty.insert(it->first);  // gone from the book: the journal forgets it
      book.unindexed.insert(it->first);
      it = book.runners.erase(it);
      out.changed = true;
      continue;
    }
    const int64_t age = now - r.started_at;
    if (r.state == State::queued && now - r.queued_at > s.queue_timeout_s) {
      stop(book, r, "queued longer than queue_timeout_s", out.actions);
      r.finished_at = now;
      out.changed = true;
    } else if ((r.state == State::starting || r.state == State::running) && r.took_job == 0 &&
               age > s.reap_after_s) {
      stop(book, r,
           std::string("reaped: ") +
               (r.state == State::starting ? "never started" : "took no job") +
               " within reap_after_s (" + std::to_string(s.reap_after_s) + " s)",
           out.actions);
      out.changed = true;
    } else if (r.state == State::running && r.took_job != 0 && age > s.max_runtime_s) {
      stop(book, r,
           "reaped: ran longer than max_runtime_s (" + std::to_string(s.max_runtime_s) + " s)",
           out.actions);
      out.changed = true;
    }
    ++it;
  }
  // Bounded memory: beyond finished_kept, the oldest finished runners are forgotten first.
  std::vector<std::pair<int64_t, uint64_t>> finished;
  for (const auto& [id, r] : book.runners)
    if (r.state == State::finished) finished.emplace_back(r.finished_at, id);
  if (finished.size() > s.finished_kept) {
    std::sort(finished.begin(), finished.end());
    for (size_t i = 0; i < finished.size() - s.finished_kept; ++i) {
      book.runners.erase(finished[i].second);
      book.dirty.insert(finished[i].second);
      book.unindexed.insert(finished[i].second);
    }
    out.changed = true;
  }
  auto started = schedule(book, s, now);
  if (!started.empty()) out.changed = true;
  append(out.actions, std::move(started));
  return out;
}

json runner_to_json(const Runner& r) {
  json labels = r.job.labels;
  json j = {{"job_id", r.job.id},
            {"run_id", r.job.run_id},
            {"repo", r.job.repo},
            {"repo_owner", r.job.owner},
            {"installation_id", r.job.installation_id},
            {"labels", labels},
            {"flavor", r.flavor},
            {"state", to_string(r.state)},
            {"seq", r.seq},
            {"runner_name", r.name},
            {"berth", berth_owner(r.job.id)},
            {"seen", r.seen},
            {"queued_at", r.queued_at},
            {"started_at", r.started_at},
            {"running_at", r.running_at},
            {"finished_at", r.finished_at}};
  if (r.took_job) j["took_job"] = r.took_job;
  if (!r.taken_by.empty()) j["taken_by"] = r.taken_by;
  if (!r.outcome.empty()) j["outcome"] = r.outcome;
  if (!r.backend_id.empty()) j["backend_id"] = r.backend_id;
  if (r.retry_at) j["retry_at"] = r.retry_at;
  if (r.tombstone) j["tombstone"] = true;
  return j;
}

json book_to_json(const Book& book) {
  json runners = json::array();
  for (const auto& [id, r] : book.runners) runners.push_back(runner_to_json(r));
  return {{"version", 1},
          {"next_seq", book.next_seq},
          {"runners", runners},
          {"deliveries", book.deliveries}};
}

Expected<Runner> runner_from_json(const json& x) {
  try {
    Runner r;
    r.job.id = x.at("job_id").get<uint64_t>();
    r.job.run_id = x.value("run_id", uint64_t{0});
    r.job.repo = x.value("repo", "");
    r.job.owner = x.value("repo_owner", "");
    r.job.installation_id = x.value("installation_id", uint64_t{0});
    r.job.labels = x.value("labels", std::vector<std::string>{});
    r.flavor = x.value("flavor", "");
    const std::string state = x.at("state").get<std::string>();
    static const std::map<std::string, State> states{{"queued", State::queued},
                                                     {"starting", State::starting},
                                                     {"running", State::running},
                                                     {"stopping", State::stopping},
                                                     {"finished", State::finished}};
    auto st = states.find(state);
    if (st == states.end())
      return make_error(ErrorCode::bad_request, "runner state '" + state + "' is unknown");
    r.state = st->second;
    r.seq = x.value("seq", uint64_t{0});
    r.name = x.value("runner_name", "");
    r.seen = x.value("seen", std::set<std::string>{});
    r.queued_at = x.value("queued_at", int64_t{0});
    r.started_at = x.value("started_at", int64_t{0});
    r.running_at = x.value("running_at", int64_t{0});
    r.finished_at = x.value("finished_at", int64_t{0});
    r.took_job = x.value("took_job", uint64_t{0});
    r.taken_by = x.value("taken_by", "");
    r.outcome = x.value("outcome", "");
    r.backend_id = x.value("backend_id", "");
    r.retry_at = x.value("retry_at", int64_t{0});
    r.tombstone = x.value("tombstone", false);
    return r;
  } catch (const json::exception& e) {
    return make_error(ErrorCode::bad_request, std::string("runner record: ") + e.what());
  }
}

Expected<Book> book_from_json(const json& j) {
  try {
    Book b;
    b.next_seq = j.at("next_seq").get<uint64_t>();
    for (const auto& d : j.at("deliveries")) {
      b.deliveries.push_back(d.get<std::string>());
      b.delivery_index.insert(b.deliveries.back());
    }
    for (const auto& x : j.at("runners")) {
      auto r = runner_from_json(x);
      if (!r) return r.error();
      const uint64_t id = r->job.id;
      b.runners.emplace(id, std::move(*r));
    }
    reindex_all(b);
    return b;
  } catch (const json::exception& e) {
    return make_error(ErrorCode::bad_request, std::string("runner book: ") + e.what());
  }
}

void append_runner_line(std::string& out, const Runner& r) {
  JsonObjectText line(out);
  JsonObjectText j(line.raw("runner"));
  j.number("job_id", r.job.id)
      .number("run_id", r.job.run_id)
      .string("repo", r.job.repo)
      .string("repo_owner", r.job.owner)
      .number("installation_id", r.job.installation_id)
      .strings("labels", r.job.labels)
      .string("flavor", r.flavor)
      .string("state", to_string(r.state))
      .number("seq", r.seq)
      .string("runner_name", r.name)
      .string("berth", berth_owner(r.job.id))
      .strings("seen", r.seen)
      .number("queued_at", r.queued_at)
      .number("started_at", r.started_at)
      .number("running_at", r.running_at)
      .number("finished_at", r.finished_at);
  if (r.took_job) j.number("took_job", r.took_job);
  if (!r.taken_by.empty()) j.string("taken_by", r.taken_by);
  if (!r.outcome.empty()) j.string("outcome", r.outcome);
  if (!r.backend_id.empty()) j.string("backend_id", r.backend_id);
  if (r.retry_at) j.number("retry_at", r.retry_at);
  if (r.tombstone) j.boolean("tombstone", true);
  j.close();
  line.close();
  out += '\n';
}

std::string take_journal(Book& book) {
  // Written as text, not through a JSON DOM: a line per delivery is the webhook's hot path.
  std::string out;
  for (uint64_t id : book.dirty) {
    auto it = book.runners.find(id);
    if (it != book.runners.end()) {
      append_runner_line(out, it->second);
    } else {
      JsonObjectText(out).number("forget", id).close();
      out += '\n';
    }
  }
  for (const auto& d : book.new_deliveries) {
    JsonObjectText(out).string("delivery", d).close();
    out += '\n';
  }
  book.dirty.clear();
  book.new_deliveries.clear();
  return out;
}

Expected<size_t> replay_journal(Book& book, const std::string& text, size_t deliveries_kept) {
  size_t applied = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    auto nl = text.find('\n', pos);
    const bool last = nl == std::string::npos;
    const std::string line = text.substr(pos, last ? std::string::npos : nl - pos);
    pos = last ? text.size() : nl + 1;
    if (line.empty()) continue;
    auto j = json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object()) {
      if (last) break;  // a write cut short by a crash: it was never acknowledged
      return make_error(ErrorCode::bad_request,
                        "journal line " + std::to_string(applied + 1) + " is not JSON");
    }
    if (j.contains("runner")) {
      auto r = runner_from_json(j["runner"]);
      if (!r) return r.error();
      book.next_seq = std::max(book.next_seq, r->seq + 1);
      const uint64_t id = r->job.id;
      book.runners.insert_or_assign(id, std::move(*r));
      book.unindexed.insert(id);
    } else if (j.contains("forget")) {
      book.runners.erase(j["forget"].get<uint64_t>());
      book.unindexed.insert(j["forget"].get<uint64_t>());
    } else if (j.contains("delivery")) {
      book.deliveries.push_back(j["delivery"].get<std::string>());
      book.delivery_index.insert(book.deliveries.back());
      while (book.deliveries.size() > deliveries_kept) {
        book.delivery_index.erase(book.deliveries.front());
        book.deliveries.pop_front();
      }
    }
    ++applied;
  }
  sync_index(book);
  return applied;
}

}  // namespace berth::github
