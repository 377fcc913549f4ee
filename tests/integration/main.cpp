// Integration tests run as root against the real kernel, inside a private network namespace
// made here so that nothing they create can touch the host's own links.
#include <gtest/gtest.h>
#include <sched.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>

#include "tests/host/host.hpp"

using berth::itest::sh;

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  std::string& why = berth::itest::skip_reason;
  if (::geteuid() != 0)
    why = "not root: attach needs CAP_SYS_ADMIN and CAP_NET_ADMIN";
  else if (::unshare(CLONE_NEWNET) != 0)
    why = "cannot create a network namespace (unshare CLONE_NEWNET)";
  else if (sh("runc --version").rc != 0)
    why = "runc is not installed (apt-get install runc)";
  else if (!std::filesystem::exists("/bin/busybox"))
    why = "busybox is not installed (apt-get install busybox-static)";
  else if (!std::filesystem::exists("/dev/fuse"))
    why = "/dev/fuse, the stand-in GPU device, is missing";
  if (why.empty())
    sh("ip link set lo up");
  else
    std::fprintf(stderr, "integration tests will skip: %s\n", why.c_str());
  int rc = RUN_ALL_TESTS();
  // runc removes each container's cgroup, not the parent the tests put them under.
  sh("rmdir /sys/fs/cgroup/*/berth-test /sys/fs/cgroup/berth-test");
  return rc;
}
