#include "agent/state_store.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "agent/unique_fd.hpp"

namespace berth::agent {
namespace {

Error io_error(const std::string& what, const std::string& path) {
  return make_error(ErrorCode::internal, what + " " + path + ": " + std::strerror(errno));
}

}  // namespace

StateStore::StateStore(std::string dir) : dir_(std::move(dir)) {}

std::string StateStore::path() const {
  return dir_ + "/ledger.json";
}

Expected<Ledger> StateStore::load() const {
  std::ifstream in(path());
  if (!in) {
    if (errno == ENOENT) return Ledger{};
    return io_error("cannot read", path());
  }
  std::stringstream ss;
  ss << in.rdbuf();
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(ss.str());
  } catch (const nlohmann::json::parse_error& e) {
    return make_error(ErrorCode::internal, "state file " + path() + " is corrupt (" + e.what() +
                                               "); move it aside after checking the host by hand");
  }
  auto ledger = ledger_from_json(j);
  if (!ledger)
    return make_error(ErrorCode::internal, "state file " + path() + " is corrupt (" +
                                               ledger.error().message +
                                               "); move it aside after checking the host by hand");
  return ledger;
}

Status StateStore::save(const Ledger& ledger) {
  if (::mkdir(dir_.c_str(), 0700) != 0 && errno != EEXIST) return io_error("cannot create", dir_);
  const std::string tmp = path() + ".tmp";
  const std::string text = nlohmann::json(ledger).dump();
  UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!fd) return io_error("cannot create", tmp);
  size_t off = 0;
  while (off < text.size()) {
    ssize_t n = ::write(fd.get(), text.data() + off, text.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return io_error("cannot write", tmp);
    off += static_cast<size_t>(n);
  }
  if (::fsync(fd.get()) != 0) return io_error("cannot fsync", tmp);
  fd.reset();
  if (::rename(tmp.c_str(), path().c_str()) != 0) return io_error("cannot rename onto", path());
  UniqueFd dir(::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir || ::fsync(dir.get()) != 0) return io_error("cannot fsync", dir_);
  return ok_status();
}

}  // namespace berth::agent
