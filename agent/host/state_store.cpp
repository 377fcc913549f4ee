#include "agent/host/state_store.hpp"

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "agent/host/errno_error.hpp"
#include "agent/host/unique_fd.hpp"
#include "core/progress.hpp"

namespace berth::agent {
namespace fs = std::filesystem;
namespace {

Error corrupt(const std::string& path, const std::string& why) {
  return make_error(ErrorCode::internal, "state file " + path + " is corrupt (" + why +
                                             "); move it aside after checking the host by hand");
}

Status fsync_dir(const std::string& path) {
  UniqueFd dir(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir || ::fsync(dir.get()) != 0) return errno_error("cannot fsync", path);
  return ok_status();
}

// A directory made for a durable record is itself made durable: its entry in the parent is
// fsynced, or a power loss could take the directory (and every record in it) away.
Status make_dir(const std::string& path, bool durable) {
  if (::mkdir(path.c_str(), 0700) == 0) {
    if (durable) return fsync_dir(fs::path(path).parent_path().string());
    return ok_status();
  }
  if (errno != EEXIST) return errno_error("cannot create", path);
  return ok_status();
}

// The whole of `text` to `fd`, through short writes and EINTR.
Status write_all(int fd, const std::string& text, const char* what, const std::string& path) {
  size_t off = 0;
  while (off < text.size()) {
    ssize_t n = ::write(fd, text.data() + off, text.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_error(what, path);
    off += static_cast<size_t>(n);
  }
  return ok_status();
}

// With `make_parents`, called when the directory is missing, and the open tried again: a record
// written again and again (an operation's) does not make its directories each time.
Status write_atomically(const std::string& path, const std::string& text, bool durable,
                        const std::function<Status()>& make_parents = {}) {
  const std::string tmp = path + ".tmp";
  constexpr int kFlags = O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC;
  UniqueFd fd(::open(tmp.c_str(), kFlags, 0600));
  if (!fd && errno == ENOENT && make_parents) {
    if (auto made = make_parents(); !made) return made;
    fd.reset(::open(tmp.c_str(), kFlags, 0600));
  }
  if (!fd) return errno_error("cannot create", tmp);
  if (auto w = write_all(fd.get(), text, "cannot write", tmp); !w) return w;
  if (durable && ::fsync(fd.get()) != 0) return errno_error("cannot fsync", tmp);
  fd.reset();
  if (::rename(tmp.c_str(), path.c_str()) != 0) return errno_error("cannot rename onto", path);
  return ok_status();
}

}  // namespace

Status write_file_durably(const std::string& path, const std::string& text) {
  if (auto d = make_dir(fs::path(path).parent_path().string(), true); !d) return d;
  if (auto w = write_atomically(path, text, true); !w) return w;
  return fsync_dir(fs::path(path).parent_path().string());
}

namespace {

// Owners are validated (kind/id of [A-Za-z0-9._-], never "." or ".."), so they map to paths 1:1.
std::string record_in(const std::string& root, const std::string& owner) {
  return root + "/berths/" + owner + ".json";
}

// A record's text: the berth's JSON on its first line, then its progress lines. An unfinished
// last line (no newline: the write of a step's intent cut short) is left out.
Expected<Berth> parse_record(const std::string& text) {
  size_t end = text.find('\n');
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text.substr(0, end));
  } catch (const nlohmann::json::parse_error& e) {
    return make_error(ErrorCode::internal, e.what());
  }
  auto b = berth_from_json(j);
  if (!b) return b;
  int number = 1;
  while (end != std::string::npos) {
    const size_t start = end + 1;
    end = text.find('\n', start);
    if (end == std::string::npos) break;  // empty, or cut short
    ++number;
    nlohmann::json line;
    try {
      line = nlohmann::json::parse(text.substr(start, end - start));
    } catch (const nlohmann::json::parse_error& e) {
      return make_error(ErrorCode::internal, "line " + std::to_string(number) + ": " + e.what());
    }
    if (auto s = apply_progress(*b, line); !s)
      return make_error(ErrorCode::internal,
                        "line " + std::to_string(number) + ": " + s.error().message);
  }
  return b;
}

// Reads every record under <root>/berths into `ledger`, replacing berths already there.
Status quarantine(const std::string& root, const std::string& path, const std::string& why,
                  std::vector<std::string>& set_aside) {
  const fs::path dir = fs::path(root) / "quarantine";
  if (auto s = make_dir(dir.string(), true); !s) return s;
  const fs::path to = dir / (fs::path(path).parent_path().filename().string() + "-" +
                             fs::path(path).filename().string());
  if (::rename(path.c_str(), to.c_str()) != 0) return errno_error("cannot move aside", path);
  set_aside.push_back(path + " (" + why + ") -> " + to.string());
  return fsync_dir(dir.string());
}

// With `set_aside`, a corrupt record is moved to <root>/quarantine/ and named there instead of
// stopping the load.
Status read_records(const std::string& root, Ledger& ledger,
                    std::vector<std::string>* set_aside = nullptr) {
  const fs::path base = fs::path(root) / "berths";
  std::error_code ec;
  if (!fs::exists(base, ec)) {
    if (ec)
      return make_error(ErrorCode::internal, "cannot read " + base.string() + ": " + ec.message());
    return ok_status();
  }
  // Fail closed: a directory that cannot be listed would silently drop the berths in it.
  auto listing_failed = [](const fs::path& dir, const std::error_code& e) {
    return make_error(ErrorCode::internal, "cannot list " + dir.string() + ": " + e.message() +
                                               "; refusing to start without those berths");
  };
  fs::directory_iterator kinds(base, ec);
  if (ec) return listing_failed(base, ec);
  for (auto kit = fs::begin(kinds); kit != fs::end(kinds); kit.increment(ec)) {
    if (ec) return listing_failed(base, ec);
    const auto& kind = *kit;
    fs::directory_iterator files(kind.path(), ec);
    if (ec) return listing_failed(kind.path(), ec);
    for (auto fit = fs::begin(files); fit != fs::end(files); fit.increment(ec)) {
      if (ec) return listing_failed(kind.path(), ec);
      const auto& file = *fit;
      const std::string path = file.path().string();
      if (file.path().extension() != ".json") continue;  // a leftover .tmp of an interrupted write
      std::ifstream in(path);
      if (!in) return errno_error("cannot read", path);
      std::stringstream ss;
      ss << in.rdbuf();
      auto b = parse_record(ss.str());
      std::string why = !b                                  ? b.error().message
                        : record_in(root, b->owner) != path ? "it holds berth " + b->owner
                                                            : std::string();
      if (!why.empty()) {
        if (set_aside) {
          if (auto q = quarantine(root, path, why, *set_aside); !q) return q;
          continue;
        }
        return corrupt(path, why);
      }
      ledger.next_seq = std::max(ledger.next_seq, b->seq + 1);
      ledger.berths[b->owner] = std::move(*b);
    }
    if (ec) return listing_failed(kind.path(), ec);
  }
  if (ec) return listing_failed(base, ec);
  return ok_status();
}

}  // namespace

bool is_tmpfs(const std::string& path) {
  fs::path p = path;
  struct statfs st {};
  while (!p.empty()) {
    if (::statfs(p.c_str(), &st) == 0) return st.f_type == TMPFS_MAGIC;
    if (p == p.parent_path()) break;
    p = p.parent_path();
  }
  return false;
}

StateStore::StateStore(std::string state_dir, std::string runtime_dir)
    : dir_(std::move(state_dir)), runtime_dir_(std::move(runtime_dir)) {}

std::string StateStore::record_path(const std::string& owner) const {
  return record_in(dir_, owner);
}

std::string StateStore::runtime_record_path(const std::string& owner) const {
  return record_in(runtime_dir_, owner);
}

Expected<Ledger> StateStore::load() const {
  Ledger ledger;
  for (const auto& root : {dir_, runtime_dir_})  // a runtime record is the newer state
    if (auto s = read_records(root, ledger); !s) return s.error();
  return ledger;
}

std::vector<RecordWrite> StateStore::records(const Ledger& ledger,
                                             const std::vector<std::string>& owners) {
  std::vector<RecordWrite> out;
  for (const auto& owner : owners) {
    auto it = ledger.berths.find(owner);
    if (it == ledger.berths.end())
      out.push_back({owner, std::nullopt});
    else
      out.push_back({owner, nlohmann::json(it->second).dump()});
  }
  return out;
}

Expected<Ledger> StateStore::load_setting_aside(std::vector<std::string>& set_aside) {
  Ledger ledger;
  for (const auto& root : {dir_, runtime_dir_})
    if (auto s = read_records(root, ledger, &set_aside); !s) return s.error();
  return ledger;
}

Status StateStore::save(const Ledger& ledger, const std::vector<std::string>& owners,
                        bool durable) {
  return write(records(ledger, owners), durable);
}

Status StateStore::write(const std::vector<RecordWrite>& records, bool durable) {
  std::set<std::string> synced_dirs;
  for (const auto& r : records) {
    const std::string& owner = r.owner;
    if (r.progress) {
      if (durable || !r.text)
        return make_error(ErrorCode::internal, "a progress line of " + owner +
                                                   " is only ever appended to its runtime record");
      if (auto s = append_progress(owner, *r.text); !s) return s;
      continue;
    }
    const std::string path = durable ? record_path(owner) : runtime_record_path(owner);
    const std::string root = durable ? dir_ : runtime_dir_;
    const std::string dir = fs::path(path).parent_path().string();
    // The record is replaced or removed: progress lines follow the new one only.
    forget_open(owner);
    broken_.insert(owner);  // until the new record is in place
    if (!r.text) {
      for (const auto& p : {record_path(owner), runtime_record_path(owner)})
        if (::unlink(p.c_str()) != 0 && errno != ENOENT) return errno_error("cannot remove", p);
      synced_dirs.insert(fs::path(record_path(owner)).parent_path().string());
      broken_.erase(owner);
      continue;
    }
    auto make_dirs = [&]() -> Status {
      for (const auto& d : {root, root + "/berths", dir})
        if (auto s = make_dir(d, durable); !s) return s;
      return ok_status();
    };
    if (auto s = write_atomically(path, *r.text + "\n", durable, make_dirs); !s) return s;
    if (durable) {
      // The durable record is now the newest state of this berth.
      const std::string runtime = runtime_record_path(owner);
      if (::unlink(runtime.c_str()) != 0 && errno != ENOENT)
        return errno_error("cannot remove", runtime);
      synced_dirs.insert(dir);
    }
    broken_.erase(owner);
  }
  if (durable)
    for (const auto& d : synced_dirs)
      if (fs::exists(d))
        if (auto s = fsync_dir(d); !s) return s;
  return ok_status();
}

Status StateStore::append_progress(const std::string& owner, const std::string& line) {
  const std::string path = runtime_record_path(owner);
  if (broken_.count(owner))
    return make_error(ErrorCode::internal, "cannot append to " + path +
                                               ": its last write failed; it is written whole next");
  auto it = open_.find(owner);
  if (it == open_.end()) {
    constexpr size_t kMaxOpen = 64;
    if (open_.size() >= kMaxOpen) open_.erase(open_.begin());
    UniqueFd fd(::open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC | O_NOFOLLOW));
    if (!fd) {
      broken_.insert(owner);
      return errno_error("cannot open", path);
    }
    it = open_.emplace(owner, std::move(fd)).first;
  }
  // One write: a crash leaves the line whole or cut short at the end, never between others.
  if (auto s = write_all(it->second.get(), line + "\n", "cannot append to", path); !s) {
    forget_open(owner);
    broken_.insert(owner);
    return s;
  }
  return ok_status();
}

void StateStore::forget_open(const std::string& owner) {
  open_.erase(owner);
}

Expected<std::string> StateStore::swap_boot_id(const std::string& current) {
  const std::string path = dir_ + "/boot_id";
  std::string previous;
  if (std::ifstream in(path); in) std::getline(in, previous);
  if (previous == current) return previous;
  if (auto s = make_dir(dir_, true); !s) return s.error();
  if (auto s = write_atomically(path, current + "\n", true); !s) return s.error();
  if (auto s = fsync_dir(dir_); !s) return s.error();
  return previous;
}

Status StateStore::save_all(const Ledger& ledger) {
  std::vector<std::string> owners;
  for (const auto& [owner, b] : ledger.berths) owners.push_back(owner);
  return save(ledger, owners);
}

}  // namespace berth::agent
