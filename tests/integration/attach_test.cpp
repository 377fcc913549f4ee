// Attach and detach against the real kernel: a runc container, veth stand-ins for VFs, real char
// devices standing in for GPUs, in both cgroup modes (runc on the v1 controllers, and runc in
// pure v2 mode with its own device program). The engine runs in-process with the host actuator.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include <boost/asio/io_context.hpp>
#include <nlohmann/json.hpp>

#include "agent/app/engine.hpp"
#include "agent/host/cgroups.hpp"
#include "agent/host/container.hpp"
#include "agent/host/device_nodes.hpp"
#include "agent/host/device_programs.hpp"
#include "agent/host/discovery.hpp"
#include "agent/host/host_actuator.hpp"
#include "agent/host/safe_open.hpp"
#include "agent/host/unique_fd.hpp"
#include "net/links.hpp"
#include "tests/fakes/engine_call.hpp"
#include "tests/fakes/fake_actuator.hpp"
#include "tests/fakes/fake_systemd.hpp"
#include "tests/fakes/gpu_kinds_fixture.hpp"
#include "tests/host/host.hpp"

namespace berth::itest {
namespace {

class AttachTest : public ::testing::TestWithParam<CgroupMode> {
 protected:
  void SetUp() override {
    if (!skip_reason.empty()) GTEST_SKIP() << skip_reason;
    if (auto why = missing_for(GetParam()); !why.empty()) GTEST_SKIP() << why;
    agent::Config config;
    const std::string root = std::string(BERTH_FIXTURES) + "/two-socket";
    config.sysfs_root = root + "/sys";
    config.dev_root = root + "/dev";
    config.proc_root = root + "/proc";
    config.passthrough_iommu_groups = {70};
    auto d = agent::discover(config);
    ASSERT_TRUE(d) << d.error().message;
    ctx_.inventory = d->inventory;
    ctx_.pools["grid"] = *parse_pool_config(nlohmann::json::parse(
        R"({"name":"grid","subnet":"10.77.0.0/24","ranges":["10.77.0.10-10.77.0.20"],"gateway":"10.77.0.1"})"));
    create_vf_standins();
    container_.emplace(std::string("berth-itest-attach-") + to_string(GetParam()), "/berth-test",
                       GetParam());
    ASSERT_TRUE(container_->started()) << container_->error();
  }
  void TearDown() override {
    container_.reset();
    remove_vf_standins();
  }

  BerthRequest request() const {
    BerthRequest r;
    r.gpu_count = 1;
    r.vf_count = 1;
    r.network.pool = "grid";
    r.network.mtu = 4000;
    return r;
  }
  Target target() const { return Target{container_->pid(), 0, ""}; }

  // A berth of one GPU, created and attached to the container through `engine`.
  void attach_one_gpu(agent::Engine& engine, const std::string& owner) {
    BerthRequest r;
    r.gpu_count = 1;
    auto [ce, cv] = testing::call(io_, engine, event::Create{0, owner, r});
    ASSERT_FALSE(ce) << ce->message;
    auto [ae, av] = testing::call(io_, engine, event::Attach{0, owner, target()});
    ASSERT_FALSE(ae) << ae->message;
  }

  // Opens the stand-in GPU node, and a node the container makes itself for the same device
  // (so a missing node is not the only thing that stops it: the devices cgroup must too).
  // Read-only redirections: "<>" would create a regular file where the node is missing.
  bool can_open_gpu() const { return container_->exec("exec 3</dev/nvidia0").rc == 0; }
  bool can_mknod_gpu() const {
    return container_->exec("rm -f /tmp/g; mknod /tmp/g c 10 229 && exec 3</tmp/g").rc == 0;
  }

  boost::asio::io_context io_;
  Context ctx_;
  std::optional<RuncContainer> container_;
  agent::HostActuator host_{
      agent::HostPaths{"/sys/fs/cgroup", "/sys", std::string(BERTH_FIXTURES) + "/two-socket/dev"}};
};

TEST_P(AttachTest, AttachGivesDevicesNetworkAndCpusAndDetachTakesThemBack) {
  const std::string before = snapshot(*container_);
  EXPECT_FALSE(can_open_gpu());
  EXPECT_FALSE(can_mknod_gpu());

  agent::Engine engine(io_, ctx_, {}, host_, nullptr);
  auto [ce, cv] = testing::call(io_, engine, event::Create{0, "manual/itest", request()});
  ASSERT_FALSE(ce) << ce->message;
  auto [ae, av] = testing::call(io_, engine, event::Attach{0, "manual/itest", target()});
  ASSERT_FALSE(ae) << ae->message;
  EXPECT_EQ(av["state"], "attached");

  EXPECT_TRUE(can_open_gpu());
  EXPECT_TRUE(container_->exec("test -c /dev/nvidiactl").rc == 0);
  EXPECT_EQ(sh("cat " + container_->cpuset_dir() + "/cpuset.cpus").out, "0\n");
  EXPECT_EQ(sh("cat " + container_->cpuset_dir() + "/cpuset.mems").out, "0\n");
  if (GetParam() == CgroupMode::v2) {
    EXPECT_NE(diff(before, snapshot(*container_)).find("+ device programs:"), std::string::npos)
        << "berth's program stands in for runc's";
  }
  EXPECT_NE(container_->exec("ip -o link show dev ib0").out.find("mtu 4000"), std::string::npos);
  auto addr = container_->exec("ip -o addr show dev ib0");
  EXPECT_NE(addr.out.find("inet 10.77.0.10/24"), std::string::npos) << addr.out;
  auto route = container_->exec("ip route");
  EXPECT_NE(route.out.find("default via 10.77.0.1 dev ib0"), std::string::npos) << route.out;
  auto ping = container_->exec("ping -c 1 -W 2 10.77.0.1");
  EXPECT_EQ(ping.rc, 0) << ping.out;
  EXPECT_NE(sh("ip link show bvf0x0").rc, 0) << "the VF stand-in must have left the host";

  auto [de, dv] = testing::call(io_, engine, event::Detach{0, "manual/itest"});
  ASSERT_FALSE(de) << de->message;
  EXPECT_EQ(dv["state"], "reserved");
  EXPECT_FALSE(can_open_gpu());
  EXPECT_FALSE(can_mknod_gpu());
  EXPECT_EQ(sh("ip -o link show bvf0x0").out.find("state DOWN") != std::string::npos, true);
  EXPECT_EQ(diff(before, snapshot(*container_)), "");
  // Nothing of the container is held once the operation is over.
  const std::string netns =
      sh("readlink /proc/" + std::to_string(container_->pid()) + "/ns/net").out;
  EXPECT_EQ(sh("ls -l /proc/" + std::to_string(::getpid()) + "/fd/ | grep -cF '" +
               netns.substr(0, netns.size() - 1) + "'")
                .out,
            "0\n")
      << "a descriptor of the container's network namespace is still open";

  // Detach again: nothing left to do, nothing changes.
  auto [de2, dv2] = testing::call(io_, engine, event::Detach{0, "manual/itest"});
  EXPECT_FALSE(de2);
  EXPECT_EQ(diff(before, snapshot(*container_)), "");
  // Release returns the address to the pool: the next berth gets it again.
  EXPECT_FALSE(testing::call(io_, engine, event::Release{0, "manual/itest"}).first);
  auto [ne, nv] = testing::call(io_, engine, event::Create{0, "manual/next", request()});
  ASSERT_FALSE(ne);
  EXPECT_EQ(nv["vfs"][0]["addresses"][0], "10.77.0.10/24");
}

TEST_P(AttachTest, ForcedFailureAtEachStepLeavesTheHostAsBefore) {
  const std::string before = snapshot(*container_);
  size_t plan_size = 0;
  {
    testing::FakeActuator fake;
    agent::Engine probe(io_, ctx_, {}, fake, nullptr);
    testing::call(io_, probe, event::Create{0, "manual/probe", request()});
    testing::call(io_, probe, event::Attach{0, "manual/probe", target()});
    plan_size = probe.ledger().berths.at("manual/probe").plan.size();
  }
  ASSERT_GE(plan_size, 10u);
  for (size_t k = 0; k < plan_size; ++k) {
    testing::FailingActuator failing(host_, static_cast<int>(k));
    agent::Engine engine(io_, ctx_, {}, failing, nullptr);
    ASSERT_FALSE(testing::call(io_, engine, event::Create{0, "manual/fail", request()}).first);
    auto [e, v] = testing::call(io_, engine, event::Attach{0, "manual/fail", target()});
    ASSERT_TRUE(e) << "k=" << k;
    EXPECT_EQ(e->code, ErrorCode::attach_failed);
    EXPECT_NE(e->message.find("rolled back"), std::string::npos) << e->message;
    EXPECT_EQ(v["state"], "failed");
    EXPECT_EQ(diff(before, snapshot(*container_)), "") << "after a failure at step " << k + 1;
    EXPECT_FALSE(can_open_gpu());
  }
}

TEST_P(AttachTest, RefusesAProcessThatIsNotInAContainer) {
  agent::Engine engine(io_, ctx_, {}, host_, nullptr);
  testing::call(io_, engine, event::Create{0, "manual/self", request()});
  auto [e, v] =
      testing::call(io_, engine, event::Attach{0, "manual/self", Target{::getpid(), 0, ""}});
  ASSERT_TRUE(e);
  EXPECT_EQ(e->code, ErrorCode::attach_failed);
  EXPECT_NE(e->message.find("not a container"), std::string::npos) << e->message;
  EXPECT_TRUE(sh("ip link show bvf0x0").rc == 0);
}

// The pid was resolved, then its process exited, or exited and the pid went to another process
// (its start time differs): the attach is refused with the reason, and nothing reaches the
// container or leaves the host.
TEST_P(AttachTest, APidThatExitedOrWasReusedSinceItWasResolvedIsRefused) {
  agent::Engine engine(io_, ctx_, {}, host_, nullptr);
  auto [ce, cv] = testing::call(io_, engine, event::Create{0, "manual/reuse", request()});
  ASSERT_FALSE(ce) << ce->message;
  const std::string before = snapshot(*container_);
  auto start = agent::process_start_time(container_->pid());
  ASSERT_TRUE(start) << start.error().message;
  Target reused{container_->pid(), *start + 1, ""};
  auto [e1, v1] = testing::call(io_, engine, event::Attach{0, "manual/reuse", reused});
  ASSERT_TRUE(e1);
  EXPECT_EQ(e1->code, ErrorCode::attach_failed);
  EXPECT_NE(e1->message.find("is no longer the process attached"), std::string::npos)
      << e1->message;
  pid_t gone = ::fork();
  if (gone == 0) ::_exit(0);
  ::waitpid(gone, nullptr, 0);
  auto [e2, v2] = testing::call(io_, engine, event::Attach{0, "manual/reuse", Target{gone, 0, ""}});
  ASSERT_TRUE(e2);
  EXPECT_NE(e2->message.find("process " + std::to_string(gone)), std::string::npos) << e2->message;
  EXPECT_FALSE(can_open_gpu());
  EXPECT_TRUE(sh("ip link show bvf0x0").rc == 0) << "the VF stayed on the host";
  EXPECT_EQ(diff(before, snapshot(*container_)), "");
}

TEST_P(AttachTest, RefusesAProcessThatSharesTheHostRoot) {
  // Own network and mount namespaces, but the host's root: its /dev is the host's /dev.
  auto spawned = sh("unshare --net --mount --fork sleep 60 >/dev/null 2>&1 & echo $!");
  const std::string parent = spawned.out.substr(0, spawned.out.find('\n'));
  const std::string pid = sh("sleep 0.2; pgrep -P " + parent + " sleep").out;
  ASSERT_FALSE(pid.empty()) << "no process to attach to";
  agent::Engine engine(io_, ctx_, {}, host_, nullptr);
  BerthRequest r;
  r.gpu_count = 1;
  testing::call(io_, engine, event::Create{0, "manual/hostroot", r});
  auto [e, v] = testing::call(io_, engine,
                              event::Attach{0, "manual/hostroot", Target{std::stoi(pid), 0, ""}});
  sh("kill " + parent + " " + pid);
  ASSERT_TRUE(e);
  EXPECT_NE(e->message.find("shares the agent's root directory"), std::string::npos) << e->message;
  EXPECT_FALSE(std::filesystem::exists("/dev/nvidia0"));
}

// The driver check reads in the container through its root alone: opened with the checks of a
// whole opening (pinned, its start time, a container, alive), never the agent's own root or a
// process other than the one named.
TEST_P(AttachTest, TheContainersRootAloneIsOpenedWithTheChecksOfAWholeOpening) {
  ASSERT_EQ(container_->exec("echo inside > /dev/berth-root-marker").rc, 0);
  auto root = agent::open_container_root(target());
  ASSERT_TRUE(root) << root.error().message;
  agent::UniqueFd marker = agent::open_in_root(root->get(), "dev/berth-root-marker", O_RDONLY);
  ASSERT_TRUE(marker) << std::strerror(errno);
  char text[16] = {};
  EXPECT_EQ(::read(marker.get(), text, sizeof text - 1), 7);
  EXPECT_STREQ(text, "inside\n");
  EXPECT_FALSE(std::filesystem::exists("/dev/berth-root-marker"));

  auto self = agent::open_container_root(Target{::getpid(), 0, ""});
  ASSERT_FALSE(self);
  EXPECT_NE(self.error().message.find("not a container"), std::string::npos)
      << self.error().message;
  auto start = agent::process_start_time(container_->pid());
  ASSERT_TRUE(start) << start.error().message;
  auto reused = agent::open_container_root(Target{container_->pid(), *start + 1, ""});
  ASSERT_FALSE(reused);
  EXPECT_NE(reused.error().message.find("is no longer the process attached"), std::string::npos)
      << reused.error().message;
  // The namespaces the container check read are the container's.
  std::pair<uint64_t, uint64_t> namespaces;
  ASSERT_TRUE(agent::check_is_container(container_->pid(), "", &namespaces));
  EXPECT_EQ(namespaces, agent::container_namespaces(container_->pid()));
  EXPECT_NE(namespaces.first, 0u);
  EXPECT_NE(namespaces.second, 0u);
}

TEST_P(AttachTest, RefusesToChangeTheRootCgroup) {
  // The container's init moved into the root cgroups: its rules would be the host's.
  for (const std::string& root :
       {std::string("/sys/fs/cgroup/devices"), std::string("/sys/fs/cgroup/cpuset"),
        agent::find_unified_mount("/sys/fs/cgroup")})
    if (std::filesystem::exists(root + "/cgroup.procs"))
      sh("echo " + std::to_string(container_->pid()) + " > " + root + "/cgroup.procs");
  const std::string before = snapshot(*container_);
  const std::string root_rules =
      sh("cat /sys/fs/cgroup/devices/devices.list /sys/fs/cgroup/cpuset/cpuset.cpus").out;
  agent::Engine engine(io_, ctx_, {}, host_, nullptr);
  BerthRequest r;
  r.gpu_count = 1;
  testing::call(io_, engine, event::Create{0, "manual/root", r});
  auto [e, v] = testing::call(io_, engine, event::Attach{0, "manual/root", target()});
  ASSERT_TRUE(e);
  EXPECT_EQ(e->code, ErrorCode::attach_failed);
  EXPECT_NE(e->message.find("will not change the root cgroup"), std::string::npos) << e->message;
  EXPECT_EQ(sh("cat /sys/fs/cgroup/devices/devices.list /sys/fs/cgroup/cpuset/cpuset.cpus").out,
            root_rules);
  EXPECT_EQ(diff(before, snapshot(*container_)), "");
}

TEST_P(AttachTest, ASymlinkPlantedInTheContainerDevIsNotFollowed) {
  // The container's root replaces /dev/nvidia0 with a link to a host path before attach.
  ASSERT_EQ(container_->exec("ln -s /proc/1/root/etc/berth-owned /dev/nvidia0").rc, 0);
  agent::Engine engine(io_, ctx_, {}, host_, nullptr);
  testing::call(io_, engine, event::Create{0, "manual/trap", request()});
  auto [e, v] = testing::call(io_, engine, event::Attach{0, "manual/trap", target()});
  ASSERT_TRUE(e);
  EXPECT_NE(e->message.find("a different file already exists at /dev/nvidia0"), std::string::npos)
      << e->message;
  EXPECT_FALSE(std::filesystem::exists("/etc/berth-owned"));
  // A planted directory link for a nested path (MIG capability nodes live in /dev/nvidia-caps/)
  // is refused, not followed into the host's /etc.
  ASSERT_EQ(container_->exec("ln -s /proc/1/root/etc /dev/nvidia-caps").rc, 0);
  auto handle = agent::open_container(target());
  ASSERT_TRUE(handle) << handle.error().message;
  auto made = agent::make_device_node(handle->root.get(),
                                      CharDevice{"/dev/nvidia-caps/nvidia-cap1", 10, 229});
  EXPECT_FALSE(made);
  EXPECT_FALSE(std::filesystem::exists("/etc/nvidia-cap1"));
}

// The container swaps /dev/nvidia-caps, /dev/infiniband and the node paths for symlinks to host
// paths (and back) in a loop, while berth attaches and detaches a GPU whose device set has nodes
// in both directories: nothing is created or changed on the host outside the container, and
// every failed attach is rolled back. BERTH_SWAP_CYCLES sets the number of cycles (default 150;
// scripts/soak-symlink-swap.sh runs 2,000).
TEST_P(AttachTest, SymlinkSwapsDuringAttachNeverReachTheHost) {
  int cycles = 150;
  if (const char* n = std::getenv("BERTH_SWAP_CYCLES")) cycles = std::max(1, std::atoi(n));
  const std::string canary = "/tmp/berth-swap-canary-" + std::to_string(::getpid());
  sh("rm -rf " + canary + " && mkdir -p " + canary);
  for (auto& g : ctx_.inventory.gpus)
    if (g.index == 0) {
      g.devices.push_back({"/dev/nvidia-caps/nvidia-cap1", 1, 7});  // /dev/full
      g.devices.push_back({"/dev/infiniband/uverbs0", 1, 9});       // /dev/urandom
    }
  // Other tests run beside this one (ctest -j) and change /tmp and the mounts: what is checked
  // is what a planted link could have made, the names of the device set, and the canary.
  const std::string host_check =
      "ls -a / /dev /etc /tmp | grep -E 'nvidia|uverbs|infiniband'; "
      "grep -E 'nvidia|infiniband|berth-swap-canary' /proc/self/mountinfo; true";
  const std::string host_before = sh(host_check).out;
  const std::string rules_before = container_->device_rules();
  auto loop = container_->runc(
      "exec -d " + container_->id() +
      " sh -c 'while :; do "
      "rm -rf /dev/nvidia-caps /dev/infiniband /dev/nvidia0; "
      "ln -s " +
      canary + " /dev/nvidia-caps; ln -s " + canary +
      " /dev/infiniband; "
      "ln -s " +
      canary +
      "/nvidia0 /dev/nvidia0; "
      "rm -f /dev/nvidia-caps /dev/infiniband /dev/nvidia0; "
      "mkdir -p /dev/nvidia-caps /dev/infiniband; done' </dev/null >/dev/null 2>&1");
  ASSERT_EQ(loop.rc, 0) << loop.out;

  agent::Engine engine(io_, ctx_, {}, host_, nullptr);
  BerthRequest r;
  r.gpu_count = 1;
  r.gpu_ids = {"0"};
  ASSERT_FALSE(testing::call(io_, engine, event::Create{0, "manual/swap", r}).first);
  int attached = 0, refused = 0;
  for (int i = 0; i < cycles; ++i) {
    auto [ae, av] = testing::call(io_, engine, event::Attach{0, "manual/swap", target()});
    if (ae) {
      ++refused;
      ASSERT_EQ(av["state"], "failed") << ae->message;
      ASSERT_NE(ae->message.find("rolled back"), std::string::npos) << ae->message;
      ASSERT_EQ(ae->message.find("left on the host"), std::string::npos) << ae->message;
      // A failed berth is released and made again, as a caller retrying would.
      testing::call(io_, engine, event::Release{0, "manual/swap"});
      ASSERT_FALSE(testing::call(io_, engine, event::Create{0, "manual/swap", r}).first);
      continue;
    }
    ++attached;
    auto [de, dv] = testing::call(io_, engine, event::Detach{0, "manual/swap"});
    ASSERT_FALSE(de) << de->message;
  }
  sh("pkill -9 -f \"while :; do rm -rf /dev/nvidia-caps\"");
  std::printf("symlink swap: %d cycles, %d attached, %d refused\n", cycles, attached, refused);
  EXPECT_EQ(sh("ls -A " + canary).out, "") << "nothing may be created through a planted link";
  EXPECT_EQ(sh(host_check).out, host_before);
  EXPECT_EQ(container_->device_rules(), rules_before) << "every rule berth added was taken back";
  sh("rm -rf " + canary);
}

// A user's own "container": `unshare -Urnm` and a chroot into a directory the user owns passes the
// namespace checks, but its /dev is a directory on a host filesystem: a node made there would
// outlive the process and stay the user's. Refused, nothing created.
TEST_P(AttachTest, AUserNamespaceChrootOfAnUnprivilegedUserGetsNoDeviceNode) {
  const std::string dir = "/tmp/berth-chroot-" + std::to_string(::getpid());
  sh("rm -rf " + dir + " && mkdir -p " + dir + "/bin " + dir + "/dev && cp /bin/busybox " + dir +
     "/bin/ && chown -R nobody " + dir + " && chmod 755 " + dir);
  auto spawned =
      sh("setpriv --reuid=nobody --regid=nogroup --clear-groups unshare -Urnm --fork "
         "chroot " +
         dir + " /bin/busybox sleep 60 >/dev/null 2>&1 & echo $!");
  const std::string parent = spawned.out.substr(0, spawned.out.find('\n'));
  const std::string pid = sh("sleep 0.3; pgrep -P " + parent).out;
  ASSERT_FALSE(pid.empty()) << "no process to attach to: " << spawned.out;
  agent::Engine engine(io_, ctx_, {}, host_, nullptr);
  BerthRequest r;
  r.gpu_count = 1;
  testing::call(io_, engine, event::Create{0, "manual/chroot", r});
  auto [e, v] =
      testing::call(io_, engine, event::Attach{0, "manual/chroot", Target{std::stoi(pid), 0, ""}});
  sh("kill " + pid + " " + parent);
  const bool made = std::filesystem::exists(dir + "/dev/nvidia0") ||
                    std::filesystem::exists(dir + "/dev/nvidiactl");
  sh("rm -rf " + dir);
  ASSERT_TRUE(e);
  EXPECT_NE(e->message.find("/dev is not a tmpfs mounted in its own mount namespace"),
            std::string::npos)
      << e->message;
  EXPECT_FALSE(made);
}

// Taking the device rule away does not close what a process of the container has open: the
// detach names it, in a warning of the berth that comes after the detach's reply.
TEST_P(AttachTest, ADetachNamesTheProcessThatStillHoldsTheGpuOpenAfterItsReply) {
  agent::Engine engine(io_, ctx_, {}, host_, nullptr);
  std::vector<std::string> warnings;
  agent::EngineHooks hooks;
  hooks.notify = [&](const action::Notify& n) {
    if (n.warning) warnings.push_back(n.message);
  };
  engine.set_hooks(hooks);
  attach_one_gpu(engine, "manual/held");
  const std::string pid_file = "/tmp/berth-holder-" + std::to_string(::getpid()) + ".pid";
  auto exec = container_->runc("exec -d --pid-file " + pid_file + " " + container_->id() +
                               " sh -c 'exec 3</dev/nvidia0; exec sleep 1000'" +
                               " </dev/null >/dev/null 2>&1");
  ASSERT_EQ(exec.rc, 0) << exec.out;
  const std::string holder = sh("cat " + pid_file).out;
  std::filesystem::remove(pid_file);
  ASSERT_FALSE(holder.empty());
  const std::string pid = holder.substr(0, holder.find_first_of("\n"));
  ASSERT_EQ(sh("for i in $(seq 100); do [ -e /proc/" + pid +
               "/fd/3 ] && exit 0; sleep 0.02; done; "
               "exit 1")
                .rc,
            0)
      << "the holder did not open the GPU";

  size_t warnings_at_reply = 99;
  auto [de, dv] = testing::call(io_, engine, event::Detach{0, "manual/held"},
                                [&] { warnings_at_reply = warnings.size(); });
  ASSERT_FALSE(de) << de->message;
  EXPECT_EQ(warnings_at_reply, 0u) << "the reply waited for the descriptors to be read";
  for (int i = 0; i < 100 && warnings.empty(); ++i) io_.run_for(std::chrono::milliseconds(10));
  io_.restart();
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("c 10:229 is still open in the container: pid " + pid + " (fd 3)"),
            std::string::npos)
      << warnings[0];
  EXPECT_FALSE(can_open_gpu()) << "what it holds stays open; nothing new opens";
  sh("kill -9 " + pid);
}

// Attached through a process that then exits (a `runc exec` process, a job step) while the
// container lives on: detach still takes everything back, through another of its processes.
TEST_P(AttachTest, ABerthAttachedThroughAnExecProcessThatExitedIsStillFullyDetached) {
  const std::string before = snapshot(*container_);
  const std::string pid_file = "/tmp/berth-exec-" + std::to_string(::getpid()) + ".pid";
  auto exec = container_->runc("exec -d --pid-file " + pid_file + " " + container_->id() +
                               " sleep 1000 </dev/null >/dev/null 2>&1");
  ASSERT_EQ(exec.rc, 0) << exec.out;
  const int exec_pid = std::stoi(sh("cat " + pid_file).out);
  std::filesystem::remove(pid_file);
  // What the API records at attach.
  Target t{exec_pid, 0, ""};
  auto cg = agent::container_cgroups(exec_pid);
  t.devices_cgroup = cg.devices;
  t.cpuset_cgroup = cg.cpuset;
  t.unified_cgroup = cg.unified;
  std::tie(t.netns, t.mntns) = agent::container_namespaces(exec_pid);

  agent::Engine engine(io_, ctx_, {}, host_, nullptr);
  ASSERT_FALSE(testing::call(io_, engine, event::Create{0, "manual/exec", request()}).first);
  auto [ae, av] = testing::call(io_, engine, event::Attach{0, "manual/exec", t});
  ASSERT_FALSE(ae) << ae->message;
  EXPECT_TRUE(can_open_gpu());
  sh("kill -9 " + std::to_string(exec_pid) + "; while kill -0 " + std::to_string(exec_pid) +
     " 2>/dev/null; do sleep 0.05; done");
  auto [de, dv] = testing::call(io_, engine, event::Detach{0, "manual/exec"});
  ASSERT_FALSE(de) << de->message;
  EXPECT_FALSE(can_open_gpu());
  EXPECT_EQ(sh("ip link show bvf0x0").rc, 0) << "the VF must be back on the host";
  EXPECT_EQ(diff(before, snapshot(*container_)), "");
}

// The container renames the VF and gives the VF's name to a link of its own: detach takes the VF
// back (found by the ifindex it had once inside), the container keeps what it made.
TEST_P(AttachTest, ARenamedVfComesBackAndTheLinkThatTookItsNameStaysInside) {
  agent::Engine engine(io_, ctx_, {}, host_, nullptr);
  ASSERT_FALSE(testing::call(io_, engine, event::Create{0, "manual/rename", request()}).first);
  auto [ae, av] = testing::call(io_, engine, event::Attach{0, "manual/rename", target()});
  ASSERT_FALSE(ae) << ae->message;
  const std::string in = "nsenter -t " + std::to_string(container_->pid()) + " -n ";
  ASSERT_EQ(sh(in + "ip link set ib0 down && " + in + "ip link set ib0 name renamed && " + in +
               "ip link add ib0 type veth peer name ib0p")
                .rc,
            0);
  auto [de, dv] = testing::call(io_, engine, event::Detach{0, "manual/rename"});
  ASSERT_FALSE(de) << de->message;
  // bvf0x0 on the host is the stand-in again: still the peer of bvf0x0p.
  EXPECT_NE(sh("ip -o link show bvf0x0").out.find("bvf0x0@bvf0x0p"), std::string::npos)
      << sh("ip -o link show").out;
  EXPECT_EQ(sh(in + "ip link show ib0").rc, 0) << "the container's own link stays inside";
  EXPECT_NE(sh(in + "ip link show renamed").rc, 0);
  EXPECT_NE(sh("ip link show ib0p").rc, 0);
}

// The container moved the VF into a namespace of its own: detach fails and says where the VF is;
// the berth keeps the VF as a leftover, so it is not handed to the next berth.
TEST_P(AttachTest, AVfMovedToANestedNamespaceIsReportedAndHeld) {
  agent::Engine engine(io_, ctx_, {}, host_, nullptr);
  ASSERT_FALSE(testing::call(io_, engine, event::Create{0, "manual/nested", request()}).first);
  auto [ae, av] = testing::call(io_, engine, event::Attach{0, "manual/nested", target()});
  ASSERT_FALSE(ae) << ae->message;
  const std::string nested = "bnest" + std::to_string(::getpid());
  const std::string in = "nsenter -t " + std::to_string(container_->pid()) + " -n ";
  ASSERT_EQ(sh("ip netns add " + nested + " && " + in + "ip link set ib0 netns " + nested).rc, 0);
  auto [de, dv] = testing::call(io_, engine, event::Detach{0, "manual/nested"});
  sh("ip netns del " + nested);
  ASSERT_TRUE(de);
  EXPECT_EQ(de->code, ErrorCode::detach_failed);
  EXPECT_NE(de->message.find("no longer in the container's network namespace"), std::string::npos)
      << de->message;
  EXPECT_EQ(dv["state"], "failed");
}

// A MIG instance (the parent's node and the instance's two capability nodes, the other
// instance's not) and another vendor's GPU (its render node and /dev/kfd, by the config map):
// each node opens inside after attach, none before or after detach, the host as before.
// A container in a user namespace of its own mounts its /dev nodev: a node berth made there
// could not be opened. berth bind-mounts the host's node instead, inside the container's mount
// namespace, and takes the mount and its mount point away on detach.
TEST_P(AttachTest, AUserNamespacedContainerGetsTheHostsNodeBoundAndLosesItOnDetach) {
  container_.reset();
  container_.emplace(std::string("berth-itest-userns-") + to_string(GetParam()), "/berth-test",
                     GetParam(), true);
  ASSERT_TRUE(container_->started()) << container_->error();
  ASSERT_NE(sh("readlink /proc/" + std::to_string(container_->pid()) + "/ns/user").out,
            sh("readlink /proc/self/ns/user").out);
  // The bind mount brings the host node's mode with it (NVIDIA's are 0666); the stand-ins' host
  // nodes are 0600, so this test's host nodes are 0666 copies of them.
  namespace fs = std::filesystem;
  const fs::path dev =
      fs::temp_directory_path() / (std::string("berth-itest-userns-dev-") + to_string(GetParam()));
  struct Cleanup {
    fs::path p;
    ~Cleanup() { fs::remove_all(p); }
  } cleanup{dev};
  fs::remove_all(dev);
  fs::create_directories(dev);
  for (const char* node : {"nvidia0", "nvidiactl"}) {
    struct stat st {};
    ASSERT_EQ(::stat((std::string(BERTH_FIXTURES) + "/two-socket/dev/" + node).c_str(), &st), 0);
    const std::string path = (dev / node).string();
    ASSERT_EQ(::mknod(path.c_str(), S_IFCHR | 0666, st.st_rdev), 0) << std::strerror(errno);
    ASSERT_EQ(::chmod(path.c_str(), 0666), 0);
  }
  agent::HostActuator host(agent::HostPaths{"/sys/fs/cgroup", "/sys", dev.string()});
  auto mounted = [&] {
    return container_->exec("cat /proc/self/mountinfo").out.find(" /dev/nvidia0 ") !=
           std::string::npos;
  };
  const std::string before = snapshot(*container_);
  EXPECT_FALSE(can_open_gpu());
  agent::Engine engine(io_, ctx_, {}, host, nullptr);
  ASSERT_NO_FATAL_FAILURE(attach_one_gpu(engine, "manual/userns"));
  EXPECT_TRUE(can_open_gpu()) << container_->exec("ls -l /dev; exec 3</dev/nvidia0").out;
  EXPECT_TRUE(container_->exec("exec 3</dev/nvidiactl").rc == 0);
  EXPECT_TRUE(mounted()) << "the node is a bind mount of the host's";
  EXPECT_EQ(container_->exec("stat -c %t:%T /dev/nvidia0").out, "a:e5\n");

  auto [de, dv] = testing::call(io_, engine, event::Detach{0, "manual/userns"});
  ASSERT_FALSE(de) << de->message;
  EXPECT_FALSE(can_open_gpu());
  EXPECT_FALSE(mounted());
  EXPECT_NE(container_->exec("test -e /dev/nvidia0").rc, 0) << "the mount point is gone too";
  EXPECT_EQ(diff(before, snapshot(*container_)), "");
}

// A container in a systemd scope: systemd rebuilds the scope's device program from DeviceAllow=
// on daemon-reload. berth puts its devices in that list (a runtime property, over D-Bus) and
// takes exactly them out again on detach. systemd here is testing::FakeSystemd on a private bus;
// its daemon-reload is done as systemd does it: a new program from the list, attached beside.
TEST_P(AttachTest, ASystemdScopeKeepsTheGpuAcrossADaemonReloadAndGetsItsOwnListBack) {
  namespace fs = std::filesystem;
  const std::string unit = std::string("berth-itest-sd-") + to_string(GetParam()) + ".scope";
  const fs::path dir =
      fs::temp_directory_path() / ("berth-itest-bus-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  struct Cleanup {
    fs::path p;
    ~Cleanup() { fs::remove_all(p); }
  } cleanup{dir};
  testing::FakeSystemd systemd(dir.string(), {unit});
  ASSERT_TRUE(systemd.ready()) << systemd.error();
  const testing::FakeSystemd::List own{{"/dev/null", "rwm"}, {"/dev/char/136:*", "rw"}};
  systemd.set_device_allow(unit, own);
  container_.reset();
  container_.emplace(unit, "/berth-test", GetParam());
  ASSERT_TRUE(container_->started()) << container_->error();

  agent::Engine engine(io_, ctx_, {}, host_, nullptr);
  ASSERT_NO_FATAL_FAILURE(attach_one_gpu(engine, "manual/scope"));
  EXPECT_TRUE(can_open_gpu());
  const auto listed = systemd.device_allow(unit);
  ASSERT_EQ(listed.size(), own.size() + 2) << "the GPU and its control node";
  EXPECT_TRUE(std::equal(own.begin(), own.end(), listed.begin())) << "the unit's own entries stay";
  EXPECT_EQ(listed[2], (std::pair<std::string, std::string>{"/dev/char/10:229", "rw"}));
  EXPECT_TRUE(systemd.all_runtime()) << "runtime properties only: gone at reboot";

  if (GetParam() == CgroupMode::v2) {
    // daemon-reload: systemd attaches a program built from DeviceAllow= (its old one is no longer
    // attached: berth's stands in its place, so that detach fails and berth's stays).
    std::vector<bpf::Rule> rules;
    for (const auto& [dev, access] : listed) {
      unsigned major = 0, minor = 0;
      if (std::sscanf(dev.c_str(), "/dev/char/%u:%u", &major, &minor) == 2)
        rules.push_back({bpf::kDevChar, static_cast<int>(major), static_cast<int>(minor),
                         bpf::kAccRead | bpf::kAccWrite});
    }
    rules.push_back({bpf::kDevChar, 1, 3});
    auto reloaded = agent::load_device_program(bpf::runtime_program(rules, false));
    ASSERT_TRUE(reloaded) << reloaded.error().message;
    const std::string cgroup = agent::find_unified_mount("/sys/fs/cgroup") + container_->cgroup();
    agent::UniqueFd cg(::open(cgroup.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    ASSERT_TRUE(cg) << cgroup;
    ASSERT_TRUE(agent::attach_device_program(cg.get(), reloaded->get()));
    EXPECT_TRUE(can_open_gpu()) << "after daemon-reload the GPU is still the container's";
  }

  auto [de, dv] = testing::call(io_, engine, event::Detach{0, "manual/scope"});
  ASSERT_FALSE(de) << de->message;
  EXPECT_FALSE(can_open_gpu());
  EXPECT_EQ(systemd.device_allow(unit), own) << "exactly the unit's own list again";
}

TEST_P(AttachTest, AMigInstanceAndAnotherVendorsGpuOpenInsideAndNothingElse) {
  namespace fs = std::filesystem;
  const fs::path root =
      fs::temp_directory_path() / ("berth-itest-gpu-kinds-" + std::to_string(::getpid()));
  struct Cleanup {
    fs::path p;
    ~Cleanup() { fs::remove_all(p); }
  } cleanup{root};
  auto d = agent::discover(testing::gpu_kinds_fixture(root));
  ASSERT_TRUE(d) << d.error().message;
  ctx_.inventory = d->inventory;
  BerthRequest r;
  r.gpu_ids = {"0000:17:00.0/gi1/ci0", std::string(testing::kAmdGpu)};
  r.numa = NumaPolicy::any;
  const std::vector<std::string> given{"/dev/nvidia0", "/dev/nvidia-caps/nvidia-cap30",
                                       "/dev/nvidia-caps/nvidia-cap31", "/dev/dri/renderD128",
                                       "/dev/kfd"};
  // Read-only opens ("<>" would make a regular file where a node is missing).
  auto opens = [&](const std::string& path) { return container_->exec("exec 3<" + path).rc == 0; };
  // The other instance's capability, made by the container itself: the device gate stops it.
  auto other_instance = [&] {
    return container_->exec("rm -f /tmp/c; mknod /tmp/c c 4 32 && exec 3</tmp/c").rc == 0;
  };
  const std::string before = snapshot(*container_);
  for (const auto& p : given) EXPECT_FALSE(opens(p)) << p;

  agent::Engine engine(io_, ctx_, {}, host_, nullptr);
  auto [ce, cv] = testing::call(io_, engine, event::Create{0, "manual/kinds", r});
  ASSERT_FALSE(ce) << ce->message;
  auto [ae, av] = testing::call(io_, engine, event::Attach{0, "manual/kinds", target()});
  ASSERT_FALSE(ae) << ae->message;
  for (const auto& p : given) EXPECT_TRUE(opens(p)) << p;
  EXPECT_FALSE(opens("/dev/nvidia-caps/nvidia-cap32")) << "the other instance's node is not made";
  EXPECT_FALSE(other_instance()) << "nor may the container make it";
  EXPECT_FALSE(opens("/dev/dri/card1")) << "the rule gives the render node only";

  auto [de, dv] = testing::call(io_, engine, event::Detach{0, "manual/kinds"});
  ASSERT_FALSE(de) << de->message;
  for (const auto& p : given) EXPECT_FALSE(opens(p)) << p;
  EXPECT_EQ(diff(before, snapshot(*container_)), "");
}

// A VF's InfiniBand character devices (uverbs, umad, issm, rdma_cm) go in with it and leave with
// it. The fixture's VFs have none (no InfiniBand here): each gets stand-ins, virtual consoles
// (major 4) that the runtime's own device rules do not allow.
TEST_P(AttachTest, AVfsInfinibandNodesOpenInsideWithItAndAreGoneAfterDetach) {
  const std::vector<CharDevice> ib{{"/dev/infiniband/uverbs0", 4, 40},
                                   {"/dev/infiniband/umad0", 4, 41},
                                   {"/dev/infiniband/issm0", 4, 42},
                                   {"/dev/infiniband/rdma_cm", 4, 43}};
  for (auto& v : ctx_.inventory.vfs) v.devices = ib;
  BerthRequest r;
  r.vf_count = 1;
  r.network.pool = "grid";
  auto opens = [&](const std::string& path) { return container_->exec("exec 3<" + path).rc == 0; };
  // A node of a device the berth does not give, made by the container itself: the gate stops it.
  auto other = [&] {
    return container_->exec("rm -f /tmp/o; mknod /tmp/o c 4 44 && exec 3</tmp/o").rc == 0;
  };
  const std::string before = snapshot(*container_);
  for (const auto& d : ib) EXPECT_FALSE(opens(d.path)) << d.path;

  agent::Engine engine(io_, ctx_, {}, host_, nullptr);
  auto [ce, cv] = testing::call(io_, engine, event::Create{0, "manual/ib", r});
  ASSERT_FALSE(ce) << ce->message;
  auto [ae, av] = testing::call(io_, engine, event::Attach{0, "manual/ib", target()});
  ASSERT_FALSE(ae) << ae->message;
  for (const auto& d : ib) EXPECT_TRUE(opens(d.path)) << d.path;
  EXPECT_TRUE(container_->exec("ip link show ib0").rc == 0) << "the VF's netdev is inside too";
  EXPECT_FALSE(other()) << "a device the berth does not give stays shut";

  auto [de, dv] = testing::call(io_, engine, event::Detach{0, "manual/ib"});
  ASSERT_FALSE(de) << de->message;
  for (const auto& d : ib) EXPECT_FALSE(opens(d.path)) << d.path;
  EXPECT_EQ(container_->exec("test -e /dev/infiniband").rc == 0, false)
      << "the directory berth made goes too";
  EXPECT_EQ(diff(before, snapshot(*container_)), "");
}

INSTANTIATE_TEST_SUITE_P(CgroupModes, AttachTest, ::testing::Values(CgroupMode::v1, CgroupMode::v2),
                         [](const auto& info) {
                           return std::string("cgroup") + to_string(info.param);
                         });

// The IPoIB child message goes to the real kernel through a namespace's rtnetlink socket: this
// host has no InfiniBand, so the kernel refuses it (no ipoib link type, or a parent that is not
// IPoIB); the refusal is reported as the kernel's, no link is made, and the socket stays usable
// (its acknowledgement was read in sequence).
TEST(PkeyChild, TheKernelsAnswerToAnIpoibChildIsReportedAndTheSocketStaysInStep) {
  if (!skip_reason.empty()) GTEST_SKIP() << skip_reason;
  const std::string ns = "berth-pkey-itest";
  struct Cleanup {
    std::string ns;
    ~Cleanup() { sh("ip netns del " + ns + " 2>/dev/null"); }
  } cleanup{ns};
  sh("ip netns del " + ns + " 2>/dev/null");
  ASSERT_EQ(
      sh("ip netns add " + ns + " && ip -n " + ns + " link add ib0 type veth peer name ib0p").rc,
      0);
  agent::UniqueFd fd(::open(("/run/netns/" + ns).c_str(), O_RDONLY | O_CLOEXEC));
  agent::UniqueFd home(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(fd && home);
  auto links = net::Links::open_in(fd.get(), home.get());
  ASSERT_TRUE(links) << links.error().message;
  auto st = links->add_pkey_child("ib0", "ib0.8011", 0x8011);
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().message.find("cannot add IPoIB child ib0.8011 of ib0"), std::string::npos)
      << st.error().message;
  EXPECT_FALSE(*links->exists("ib0.8011"));
  EXPECT_NE(sh("ip -n " + ns + " link show ib0.8011 2>/dev/null").rc, 0);
  ASSERT_TRUE(links->set_up("ib0", true)) << "the next request is answered in sequence";
  EXPECT_NE(sh("ip -n " + ns + " link show ib0").out.find("UP"), std::string::npos);
  auto id = links->identity("ib0");
  ASSERT_TRUE(id);
  EXPECT_TRUE(links->delete_index(id->ifindex));
  EXPECT_FALSE(*links->exists("ib0"));
  EXPECT_TRUE(links->delete_index(id->ifindex)) << "a link already gone is not an error";
}

}  // namespace
}  // namespace berth::itest
