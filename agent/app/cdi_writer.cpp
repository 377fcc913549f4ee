#include "agent/app/cdi_writer.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

namespace berth::agent {

CdiWriter::CdiWriter(std::string path, CdiOptions options,
                     std::function<void(std::function<void()>)> run_off_reactor)
    : path_(std::move(path)), options_(std::move(options)), run_(std::move(run_off_reactor)) {}

void CdiWriter::update(const Ledger& ledger, const Inventory& inventory) {
  std::string text = cdi_spec(ledger, inventory, options_).dump(2) + "\n";
  if (text == last_) return;
  last_ = text;
  run_([path = path_, text = std::move(text)] { write_file_atomically(path, text); });
}

bool write_file_atomically(const std::string& path, const std::string& text) {
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
  const std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
  bool ok = fd >= 0;
  for (size_t off = 0; ok && off < text.size();) {
    ssize_t n = ::write(fd, text.data() + off, text.size() - off);
    if (n < 0 && errno == EINTR) continue;
    ok = n > 0;
    off += ok ? static_cast<size_t>(n) : 0;
  }
  if (fd >= 0 && ::close(fd) != 0) ok = false;
  if (ok && ::rename(tmp.c_str(), path.c_str()) != 0) ok = false;
  if (!ok) {
    spdlog::error("BERTH_CDI_WRITE_FAILED {}: {}", path, std::strerror(errno));
    ::unlink(tmp.c_str());
  }
  return ok;
}

}  // namespace berth::agent
