#include "agent/host/safe_open.hpp"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace berth::agent {
namespace {

UniqueFd do_openat2(int dirfd, const std::string& path, int flags, unsigned long long resolve) {
  open_how how{};
  how.flags = static_cast<unsigned long long>(flags | O_CLOEXEC);
  how.resolve = resolve;
  return UniqueFd(static_cast<int>(::syscall(SYS_openat2, dirfd, path.c_str(), &how, sizeof how)));
}

}  // namespace

UniqueFd open_in_root(int dirfd, const std::string& path, int flags) {
  return do_openat2(dirfd, path, flags,
                    RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS);
}

UniqueFd open_beneath(int dirfd, const std::string& path, int flags) {
  return do_openat2(dirfd, path, flags,
                    RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS);
}

UniqueFd open_beneath_same_mount(int dirfd, const std::string& path, int flags) {
  return do_openat2(
      dirfd, path, flags,
      RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV);
}

}  // namespace berth::agent
