#include "agent/host/driver_check.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "agent/host/safe_open.hpp"

namespace berth::agent {

DriverCheck check_driver(int root_fd, const std::string& proc_root) {
  std::optional<std::string> host;
  {
    std::ifstream in(std::filesystem::path(proc_root) / "driver/nvidia/version");
    std::stringstream text;
    text << in.rdbuf();
    if (in) host = host_driver_version(text.str());
  }
  std::string link;
  std::string why = "looked in /usr/lib/x86_64-linux-gnu, /usr/lib64, /usr/lib, /lib64";
  for (const char* dir :
       {"usr/lib/x86_64-linux-gnu", "usr/lib64", "usr/lib", "lib64", "lib/x86_64-linux-gnu"}) {
    UniqueFd d = open_in_root(root_fd, dir, O_PATH | O_DIRECTORY);
    if (!d) continue;
    std::array<char, 4096> buf{};
    ssize_t n = ::readlinkat(d.get(), "libcuda.so.1", buf.data(), buf.size() - 1);
    if (n > 0) {
      link.assign(buf.data(), static_cast<size_t>(n));
      break;
    }
    if (errno == EINVAL) {
      why = std::string("/") + dir + "/libcuda.so.1 is not a link";
      break;
    }
  }
  return compare_drivers(host, link, why);
}

}  // namespace berth::agent
