// The host actuator's rules on fake seams: what it does when a container has exited, when a VF
// came back under another name, when a node or rule was already there.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "agent/host/host_actuator.hpp"
#include "agent/host/real_host.hpp"
#include "tests/fakes/fake_host.hpp"

namespace berth::agent {
namespace {

constexpr const char* kPci = "0000:1a:00.1";

Target target(int pid) {
  Target t;
  t.pid = pid;
  t.start_time = 7;
  t.devices_cgroup = "/berth/c1";
  t.cpuset_cgroup = "/berth/c1";
  return t;
}

TEST(HostActuator, AVfBackOnTheHostUnderItsContainerNameIsRestoredAfterTheContainerDied) {
  testing::FakeHost host;
  host.links.host_ns["ib0"] = {kPci, true, 1500, {"10.77.0.10/24"}};
  HostActuator a(host.seams());
  auto out = a.run(step::MoveLinkOut{"ib0", "vf0", kPci}, target(42), true);
  ASSERT_TRUE(out.ok) << out.error;
  ASSERT_EQ(host.links.host_ns.count("vf0"), 1u);
  EXPECT_EQ(host.links.host_ns.count("ib0"), 0u);
  EXPECT_FALSE(host.links.host_ns["vf0"].up);
  EXPECT_TRUE(host.links.host_ns["vf0"].addresses.empty());
  EXPECT_NE(out.note.find("restored as vf0"), std::string::npos) << out.note;
}

TEST(HostActuator, AStandInDestroyedWithItsNamespaceIsReportedNotAnError) {
  testing::FakeHost host;
  HostActuator a(host.seams());
  auto out = a.run(step::MoveLinkOut{"ib0", "vf0", kPci}, target(42), true);
  EXPECT_TRUE(out.ok);
  EXPECT_NE(out.note.find("not on the host"), std::string::npos) << out.note;
}

TEST(HostActuator, AnotherDeviceUnderTheHostNameIsNotTakenForTheVf) {
  testing::FakeHost host;
  host.links.host_ns["vf0"] = {"0000:99:00.0", true, 1500, {}};  // someone else's device
  host.links.host_ns["ib0"] = {kPci, false, 1500, {}};
  HostActuator a(host.seams());
  auto out = a.run(step::MoveLinkOut{"ib0", "vf0", kPci}, target(42), true);
  EXPECT_FALSE(out.ok) << "the VF cannot get its name back while another device holds it";
  EXPECT_NE(out.error.find("another link has that name"), std::string::npos) << out.error;
  EXPECT_EQ(host.links.host_ns["vf0"].pci, "0000:99:00.0");
}

TEST(HostActuator, ALeftoverRetriedWithoutAContainerIsUndoneOnTheHost) {
  // A failed berth keeps its leftovers after it let go of its target: the retry has no pid.
  testing::FakeHost host;
  host.links.host_ns["ib0"] = {kPci, true, 1500, {}};
  HostActuator a(host.seams());
  auto out = a.run(step::MoveLinkOut{"ib0", "vf0", kPci}, Target{}, true);
  ASSERT_TRUE(out.ok) << out.error;
  EXPECT_EQ(host.links.host_ns.count("vf0"), 1u);
}

TEST(HostActuator, RulesInTheCgroupOfAnExitedContainerAreTakenBack) {
  testing::FakeHost host;
  host.cgroups.rules["/berth/c1"] = {"c 10:229"};
  HostActuator a(host.seams());
  EXPECT_TRUE(a.run(step::DenyDevice{10, 229}, target(42), true).ok);
  EXPECT_TRUE(host.cgroups.rules["/berth/c1"].empty());
  // The runtime already deleted the cgroup: nothing left to undo.
  host.cgroups.rules.clear();
  EXPECT_TRUE(a.run(step::DenyDevice{10, 229}, target(42), true).ok);
  EXPECT_TRUE(host.cgroups.rules.empty());
}

TEST(HostActuator, AForwardStepIntoAnExitedContainerFails) {
  testing::FakeHost host;
  HostActuator a(host.seams());
  auto out = a.run(step::MakeNode{CharDevice{"/dev/nvidia0", 195, 0}}, target(42), false);
  EXPECT_FALSE(out.ok);
  EXPECT_NE(out.error.find("gone"), std::string::npos) << out.error;
}

TEST(HostActuator, WhatWasAlreadyThereIsReportedSoItsInverseLeavesIt) {
  testing::FakeHost host;
  host.containers.add(42);
  host.nodes.nodes.insert("/dev/nvidiactl");
  host.cgroups.rules["/berth/c1"] = {"c 195:255"};
  HostActuator a(host.seams());
  EXPECT_EQ(a.run(step::MakeNode{CharDevice{"/dev/nvidiactl", 195, 255}}, target(42), false).undo,
            "existed");
  EXPECT_EQ(a.run(step::AllowDevice{195, 255}, target(42), false).undo, "already-allowed");
  EXPECT_EQ(a.run(step::MakeNode{CharDevice{"/dev/nvidia0", 195, 0}}, target(42), false).undo, "");
}

TEST(HostActuator, AVfMovesIntoTheContainerAndBackUnderItsNames) {
  testing::FakeHost host;
  auto& c = host.containers.add(42);
  host.links.host_ns["vf0"] = {kPci, false, 1500, {}};
  HostActuator a(host.seams());
  ASSERT_TRUE(a.run(step::MoveLinkIn{"vf0", "ib0", kPci}, target(42), false).ok);
  EXPECT_EQ(c.ns.count("ib0"), 1u);
  EXPECT_EQ(host.links.host_ns.count("vf0"), 0u);
}

Target v2_target(int pid) {
  Target t;
  t.pid = pid;
  t.start_time = 7;
  t.devices_cgroup = "/";  // a pure v2 container: the v1 devices gate is the open root
  t.cpuset_cgroup = "/";
  t.unified_cgroup = "/berth/c1";
  return t;
}

TEST(HostActuator, OnCgroupV2TheDeviceProgramIsTheGateAndItsIdsGoToTheLedger) {
  testing::FakeHost host;
  host.containers.add(42);
  host.cgroups.programs["/berth/c1"] = {};
  HostActuator a(host.seams());
  auto out = a.run(step::AllowDevice{195, 0}, v2_target(42), false);
  ASSERT_TRUE(out.ok) << out.error;
  EXPECT_EQ(host.cgroups.programs["/berth/c1"].count("c 195:0"), 1u);
  EXPECT_TRUE(host.cgroups.rules.empty()) << "the root v1 cgroup is never written";
  EXPECT_NE(out.undo.find("device program 1 -> 2"), std::string::npos) << out.undo;
  auto inverse_step = inverse(step::AllowDevice{195, 0}, out.undo);
  ASSERT_TRUE(inverse_step);
  ASSERT_TRUE(a.run(*inverse_step, v2_target(42), true).ok);
  EXPECT_TRUE(host.cgroups.programs["/berth/c1"].empty());
  // A cpuset goes to the v2 cgroup when there is no v1 one of its own.
  auto cpus = a.run(step::SetCpuset{"0-3", "0"}, v2_target(42), false);
  ASSERT_TRUE(cpus.ok) << cpus.error;
  EXPECT_EQ(host.cgroups.cpusets_v2["/berth/c1"], "0-3|0");
  EXPECT_EQ(cpus.undo, "|");
}

TEST(HostActuator, AGateThatAllowedTheDeviceBeforeIsLeftAloneOnDetach) {
  testing::FakeHost host;
  host.containers.add(42);
  host.cgroups.programs["/berth/c1"] = {};
  host.cgroups.rules["/berth/c1"] = {"c 195:0"};  // v1 already allows it; v2 does not
  HostActuator a(host.seams());
  Target t = target(42);
  t.unified_cgroup = "/berth/c1";
  auto out = a.run(step::AllowDevice{195, 0}, t, false);
  ASSERT_TRUE(out.ok) << out.error;
  auto inv = inverse(step::AllowDevice{195, 0}, out.undo);
  ASSERT_TRUE(inv);
  EXPECT_EQ(std::get<step::DenyDevice>(*inv).skip, "v1");
  ASSERT_TRUE(a.run(*inv, t, true).ok);
  EXPECT_EQ(host.cgroups.rules["/berth/c1"].count("c 195:0"), 1u);
  EXPECT_TRUE(host.cgroups.programs["/berth/c1"].empty());
}

Target lxc_v2_target(int pid) {
  Target t = v2_target(pid);
  t.lxc = "lab1";
  t.lxcpath = "/var/lib/lxc";
  return t;
}

TEST(HostActuator, AnLxcContainerOnCgroupV2GetsTheDeviceThroughLxcNotAProgramOfBerths) {
  testing::FakeHost host;
  host.containers.add(42);
  host.cgroups.programs["/berth/c1"] = {};  // LXC's program, deny by default
  HostActuator a(host.seams());
  auto out = a.run(step::AllowDevice{195, 0}, lxc_v2_target(42), false);
  ASSERT_TRUE(out.ok) << out.error;
  EXPECT_EQ(out.undo, "lxc");
  EXPECT_EQ(host.runtimes.lxc_rules["/var/lib/lxc:lab1"].count("c 195:0"), 1u);
  EXPECT_TRUE(host.cgroups.programs["/berth/c1"].empty()) << "LXC's program is not replaced";
  auto inv = inverse(step::AllowDevice{195, 0}, out.undo);
  ASSERT_TRUE(inv);
  EXPECT_EQ(std::get<step::DenyDevice>(*inv).via, "lxc");
  // The undo survives the ledger.
  auto back = step_from_json(step_to_json(*inv));
  ASSERT_TRUE(back);
  EXPECT_EQ(std::get<step::DenyDevice>(*back).via, "lxc");
  ASSERT_TRUE(a.run(*inv, lxc_v2_target(42), true).ok);
  EXPECT_TRUE(host.runtimes.lxc_rules["/var/lib/lxc:lab1"].empty());
  EXPECT_EQ(host.runtimes.calls, (std::vector<std::string>{"allow /var/lib/lxc:lab1 c 195:0",
                                                           "deny /var/lib/lxc:lab1 c 195:0"}));
}

TEST(HostActuator, AnLxcRuleTheContainerHadIsLeftAloneAndARefusalFailsTheStep) {
  testing::FakeHost host;
  host.containers.add(42);
  host.cgroups.programs["/berth/c1"] = {};
  host.cgroups.program_allows = {"c 195:255"};  // in the container's own config
  HostActuator a(host.seams());
  auto had = a.run(step::AllowDevice{195, 255}, lxc_v2_target(42), false);
  ASSERT_TRUE(had.ok) << had.error;
  EXPECT_EQ(had.undo, "already-allowed");
  EXPECT_FALSE(inverse(step::AllowDevice{195, 255}, had.undo)) << "detach must not deny it";
  EXPECT_TRUE(host.runtimes.calls.empty());
  host.runtimes.fail_next = true;
  auto refused = a.run(step::AllowDevice{195, 0}, lxc_v2_target(42), false);
  EXPECT_FALSE(refused.ok);
  EXPECT_NE(refused.error.find("LXC did not allow"), std::string::npos) << refused.error;
}

TEST(HostActuator, AnLxcContainerOnV1OrWithoutProgramsKeepsTheOtherGates) {
  testing::FakeHost host;
  host.containers.add(42);
  // LXC on a hybrid host keeps its devices in v1: the v1 gate, as for any container.
  host.cgroups.rules["/berth/c1"] = {};
  Target v1 = target(42);
  v1.lxc = "lab1";
  HostActuator a(host.seams());
  auto out = a.run(step::AllowDevice{195, 0}, v1, false);
  ASSERT_TRUE(out.ok) << out.error;
  EXPECT_EQ(host.cgroups.rules["/berth/c1"].count("c 195:0"), 1u);
  EXPECT_TRUE(host.runtimes.calls.empty());
  // On v2 without a device program LXC restricts nothing: nothing to open or take back.
  testing::FakeHost open_host;
  open_host.containers.add(42);
  open_host.cgroups.rules["/berth/c1"] = {};
  HostActuator b(open_host.seams());
  Target v2 = lxc_v2_target(42);
  auto open = b.run(step::AllowDevice{195, 0}, v2, false);
  ASSERT_TRUE(open.ok) << open.error;
  EXPECT_EQ(open.undo, "already-allowed");
  EXPECT_TRUE(open_host.runtimes.calls.empty());
}

TEST(HostActuator, AnLxcAllowCutOffByAKillIsTakenBackThroughLxc) {
  testing::FakeHost host;
  host.containers.add(42);
  host.cgroups.programs["/berth/c1"] = {};
  HostActuator a(host.seams());
  ASSERT_TRUE(a.run(step::AllowDevice{195, 0}, lxc_v2_target(42), false).ok);
  // berthd died before the step's undo was recorded: resume undoes it with undo "".
  auto inv = inverse(step::AllowDevice{195, 0}, "");
  ASSERT_TRUE(inv);
  ASSERT_TRUE(a.run(*inv, lxc_v2_target(42), true).ok);
  EXPECT_TRUE(host.runtimes.lxc_rules["/var/lib/lxc:lab1"].empty());
}

TEST(HostActuator, AnLxcRuleOfAnExitedContainerNeedsNoUndo) {
  testing::FakeHost host;
  HostActuator a(host.seams());
  auto out = a.run(step::DenyDevice{195, 0, "", "lxc"}, lxc_v2_target(42), true);
  EXPECT_TRUE(out.ok) << out.error;
  EXPECT_TRUE(host.runtimes.calls.empty());
}

TEST(HostActuator, AUserNamespacedContainersNodeIsABindMountAndItsUndoSaysSo) {
  testing::FakeHost host;
  host.containers.add(42).userns = true;
  HostActuator a(host.seams());
  const CharDevice gpu{"/dev/nvidia-caps/nvidia-cap1", 234, 1};
  auto out = a.run(step::MakeNode{gpu}, target(42), false);
  ASSERT_TRUE(out.ok) << out.error;
  EXPECT_EQ(out.undo, "bind");
  EXPECT_EQ(host.nodes.bound.count(gpu.path), 1u);
  EXPECT_TRUE(host.nodes.nodes.empty()) << "no node is made on a nodev /dev";
  auto inv = inverse(step::MakeNode{gpu}, "bind dirs=1");
  ASSERT_TRUE(inv);
  EXPECT_TRUE(std::get<step::RemoveNode>(*inv).bind);
  EXPECT_EQ(std::get<step::RemoveNode>(*inv).dirs, 1);
  auto back = step_from_json(step_to_json(*inv));
  ASSERT_TRUE(back);
  EXPECT_TRUE(std::get<step::RemoveNode>(*back).bind);
  ASSERT_TRUE(a.run(*inv, target(42), true).ok);
  EXPECT_TRUE(host.nodes.bound.empty());
  // Any other container gets a node of its own, as before.
  host.containers.add(43);
  auto own = a.run(step::MakeNode{gpu}, target(43), false);
  ASSERT_TRUE(own.ok) << own.error;
  EXPECT_EQ(own.undo, "");
  EXPECT_EQ(host.nodes.nodes.count(gpu.path), 1u);
}

Target scope_target(int pid) {
  Target t = v2_target(pid);
  t.unified_cgroup = "/machine.slice/libpod-ab12.scope";
  return t;
}

TEST(HostActuator, ASystemdScopeGetsTheDeviceInItsDeviceAllowAndLosesOnlyThatOnDetach) {
  testing::FakeHost host;
  host.containers.add(42);
  host.cgroups.programs["/machine.slice/libpod-ab12.scope"] = {};
  const agent::DeviceAllowList own{{"/dev/null", "rwm"}, {"/dev/char/136:*", "rw"}};
  host.runtimes.units["libpod-ab12.scope"] = own;
  HostActuator a(host.seams());
  auto out = a.run(step::AllowDevice{195, 0}, scope_target(42), false);
  ASSERT_TRUE(out.ok) << out.error;
  EXPECT_NE(out.undo.find("systemd=libpod-ab12.scope"), std::string::npos) << out.undo;
  auto with = own;
  with.emplace_back("/dev/char/195:0", "rw");
  EXPECT_EQ(host.runtimes.units["libpod-ab12.scope"], with);
  EXPECT_EQ(host.cgroups.programs["/machine.slice/libpod-ab12.scope"].count("c 195:0"), 1u)
      << "berth's program still lets it in at once";
  auto inv = inverse(step::AllowDevice{195, 0}, out.undo);
  ASSERT_TRUE(inv);
  EXPECT_EQ(std::get<step::DenyDevice>(*inv).unit, "libpod-ab12.scope");
  auto back = step_from_json(step_to_json(*inv));
  ASSERT_TRUE(back);
  EXPECT_EQ(std::get<step::DenyDevice>(*back).unit, "libpod-ab12.scope");
  // Meanwhile the unit's list changed (an admin's systemctl set-property): that change stays.
  host.runtimes.units["libpod-ab12.scope"].emplace_back("/dev/fuse", "rw");
  ASSERT_TRUE(a.run(*inv, scope_target(42), true).ok);
  auto after = own;
  after.emplace_back("/dev/fuse", "rw");
  EXPECT_EQ(host.runtimes.units["libpod-ab12.scope"], after);
}

// berthd killed between systemd taking the DeviceAllow= entry and the step's undo reaching the
// ledger: after the restart the allow is undone with an empty undo, and the entry goes too (else
// a daemon-reload would give the GPU back to a container that no longer holds it).
TEST(HostActuator, ADeviceAllowEntryOfAnAllowCutOffByAKillIsTakenOutAfterTheRestart) {
  testing::FakeHost host;
  host.containers.add(42);
  host.cgroups.programs["/machine.slice/libpod-ab12.scope"] = {};
  const agent::DeviceAllowList own{{"/dev/null", "rwm"}};
  host.runtimes.units["libpod-ab12.scope"] = own;
  HostActuator a(host.seams());
  ASSERT_TRUE(a.run(step::AllowDevice{195, 0}, scope_target(42), false).ok);
  ASSERT_EQ(host.runtimes.units["libpod-ab12.scope"].size(), 2u);
  auto cut = inverse(step::AllowDevice{195, 0}, "");
  ASSERT_TRUE(cut);
  EXPECT_TRUE(std::get<step::DenyDevice>(*cut).unit.empty()) << "the undo never said which unit";
  auto out = a.run(*cut, scope_target(42), true);
  ASSERT_TRUE(out.ok) << out.error;
  EXPECT_EQ(host.runtimes.units["libpod-ab12.scope"], own);
  EXPECT_TRUE(host.cgroups.programs["/machine.slice/libpod-ab12.scope"].empty());
  // The same deny again (a retried leftover) changes nothing more.
  ASSERT_TRUE(a.run(*cut, scope_target(42), true).ok);
  EXPECT_EQ(host.runtimes.units["libpod-ab12.scope"], own);
}

TEST(HostActuator, WithoutSystemdOrItsUnitTheProgramAloneDecidesAndAFailedListChangeRollsBack) {
  testing::FakeHost host;
  host.containers.add(42);
  host.cgroups.programs["/machine.slice/libpod-ab12.scope"] = {};
  HostActuator a(host.seams());
  // A cgroup that ends in ".scope" but that systemd does not know.
  auto unknown = a.run(step::AllowDevice{195, 0}, scope_target(42), false);
  ASSERT_TRUE(unknown.ok) << unknown.error;
  EXPECT_EQ(unknown.undo.find("systemd="), std::string::npos) << unknown.undo;
  ASSERT_TRUE(a.run(*inverse(step::AllowDevice{195, 0}, unknown.undo), scope_target(42), true).ok);
  // No systemd on the bus: attached, with a note.
  host.runtimes.no_systemd = true;
  auto absent = a.run(step::AllowDevice{195, 0}, scope_target(42), false);
  ASSERT_TRUE(absent.ok) << absent.error;
  EXPECT_NE(absent.note.find("DeviceAllow= of libpod-ab12.scope not set"), std::string::npos)
      << absent.note;
  ASSERT_TRUE(a.run(*inverse(step::AllowDevice{195, 0}, absent.undo), scope_target(42), true).ok);
  // systemd refusing the change fails the step and takes berth's program change back.
  host.runtimes.no_systemd = false;
  host.runtimes.units["libpod-ab12.scope"] = {};
  testing::Faults faults;
  host.runtimes.faults = &faults;
  faults.fail_at = 2;  // GetUnit answers, SetUnitProperties fails
  auto refused = a.run(step::AllowDevice{195, 0}, scope_target(42), false);
  EXPECT_FALSE(refused.ok);
  EXPECT_TRUE(host.cgroups.programs["/machine.slice/libpod-ab12.scope"].empty())
      << "the program change of the failed step is taken back";
  EXPECT_TRUE(host.runtimes.units["libpod-ab12.scope"].empty());
}

TEST(HostActuator, ABindMountCutOffByAKillIsUnmountedAfterTheRestart) {
  testing::FakeHost host;
  host.containers.add(42).userns = true;
  HostActuator a(host.seams());
  const CharDevice gpu{"/dev/nvidia0", 195, 0};
  ASSERT_TRUE(a.run(step::MakeNode{gpu}, target(42), false).ok);
  // The undo ("bind") never reached the record: resume undoes the step with undo "".
  auto inv = inverse(step::MakeNode{gpu}, "");
  ASSERT_TRUE(inv);
  ASSERT_TRUE(a.run(*inv, target(42), true).ok);
  EXPECT_TRUE(host.nodes.bound.empty()) << "unmounted, not left as a mount";
}

TEST(HostActuator, AContainerWithNoDeviceGateOfItsOwnIsRefused) {
  testing::FakeHost host;
  host.containers.add(42);
  HostActuator a(host.seams());
  auto out = a.run(step::AllowDevice{195, 0}, v2_target(42), false);
  EXPECT_FALSE(out.ok);
  EXPECT_NE(out.error.find("no devices cgroup of its own"), std::string::npos) << out.error;
}

TEST(HostActuator, AV1FailureAfterTheProgramChangedPutsTheProgramBack) {
  testing::FakeHost host;
  host.containers.add(42);
  host.cgroups.programs["/berth/c1"] = {};
  host.cgroups.rules["/berth/c1"] = {};
  host.cgroups.fail.insert("allow_device");
  HostActuator a(host.seams());
  Target t = target(42);
  t.unified_cgroup = "/berth/c1";
  EXPECT_FALSE(a.run(step::AllowDevice{195, 0}, t, false).ok);
  EXPECT_TRUE(host.cgroups.programs["/berth/c1"].empty());
  EXPECT_TRUE(host.cgroups.rules["/berth/c1"].empty());
}

// The v1 allow fails and putting the program back fails too: the step says so and leaves the
// program's allow to the rollback (undo "v1-already": deny it in the program only).
TEST(HostActuator, ATakeBackThatFailsLeavesTheRestToTheRollback) {
  testing::FakeHost host;
  host.containers.add(42);
  host.cgroups.programs["/berth/c1"] = {};
  host.cgroups.rules["/berth/c1"] = {};
  host.cgroups.fail = {"allow_device", "deny_program"};
  HostActuator a(host.seams());
  Target t = target(42);
  t.unified_cgroup = "/berth/c1";
  auto out = a.run(step::AllowDevice{195, 0}, t, false);
  EXPECT_FALSE(out.ok);
  EXPECT_TRUE(out.left_behind);
  EXPECT_NE(out.error.find("taking the change back failed"), std::string::npos) << out.error;
  EXPECT_EQ(host.cgroups.programs["/berth/c1"], std::set<std::string>{"c 195:0"});
  auto inv = inverse(step::AllowDevice{195, 0}, out.undo);
  ASSERT_TRUE(inv);
  ASSERT_TRUE(a.run(*inv, t, true).ok);
  EXPECT_TRUE(host.cgroups.programs["/berth/c1"].empty());
  EXPECT_TRUE(host.cgroups.rules["/berth/c1"].empty());
}

TEST(HostActuator, TheProgramOfAnExitedContainersLiveCgroupIsPutBack) {
  testing::FakeHost host;
  host.cgroups.programs["/berth/c1"] = {"c 195:0"};
  HostActuator a(host.seams());
  ASSERT_TRUE(a.run(step::DenyDevice{195, 0}, v2_target(42), true).ok);
  EXPECT_TRUE(host.cgroups.programs["/berth/c1"].empty());
}

TEST(HostActuator, AnRdmaDeviceMovesIntoTheContainerAndBackFromInsideIt) {
  testing::FakeHost host;
  host.containers.add(42);
  host.rdma.where["mlx5_2"] = -1;
  HostActuator a(host.seams());
  ASSERT_TRUE(a.run(step::MoveRdmaIn{"mlx5_2"}, target(42), false).ok);
  EXPECT_NE(host.rdma.where["mlx5_2"], -1);
  // Again (a resumed attach): already there, nothing sent.
  ASSERT_TRUE(a.run(step::MoveRdmaIn{"mlx5_2"}, target(42), false).ok);
  ASSERT_TRUE(a.run(step::MoveRdmaOut{"mlx5_2"}, target(42), true).ok);
  EXPECT_EQ(host.rdma.where["mlx5_2"], -1);
  ASSERT_TRUE(a.run(step::MoveRdmaOut{"mlx5_2"}, target(42), true).ok) << "already back";
  host.rdma.fail.insert("mlx5_2");
  auto out = a.run(step::MoveRdmaIn{"mlx5_2"}, target(42), false);
  EXPECT_FALSE(out.ok);
  EXPECT_EQ(host.rdma.where["mlx5_2"], -1);
}

TEST(HostActuator, AnRdmaDeviceOfAnExitedContainerIsReportedUntilTheKernelReturnsIt) {
  testing::FakeHost host;
  host.rdma.where["mlx5_2"] = 1234;  // still in the dying namespace
  HostActuator a(host.seams());
  auto out = a.run(step::MoveRdmaOut{"mlx5_2"}, target(42), true);
  ASSERT_TRUE(out.ok);
  EXPECT_NE(out.note.find("not back on the host yet"), std::string::npos) << out.note;
  host.rdma.where["mlx5_2"] = -1;
  EXPECT_TRUE(a.run(step::MoveRdmaOut{"mlx5_2"}, target(42), true).note.empty());
}

// The container renames the VF and gives its name to a link of its own: detach takes the VF (by
// the ifindex and device it had once inside), never the impostor.
TEST(HostActuator, ARenamedVfComesBackAndTheLinkThatTookItsNameStays) {
  testing::FakeHost host;
  auto& c = host.containers.add(42);
  host.links.host_ns["vf0"] = {kPci, false, 1500, {}, 7, "mlx5_core"};
  HostActuator a(host.seams());
  auto in = a.run(step::MoveLinkIn{"vf0", "ib0", kPci}, target(42), false);
  ASSERT_TRUE(in.ok) << in.error;
  EXPECT_EQ(in.undo, "ifindex=7 driver=mlx5_core bus=" + std::string(kPci));
  c.ns["renamed"] = c.ns["ib0"];
  c.ns["ib0"] = {"", true, 1500, {}, 99, "dummy"};
  auto out_step = inverse(step::MoveLinkIn{"vf0", "ib0", kPci}, in.undo);
  ASSERT_TRUE(out_step);
  auto out = a.run(*out_step, target(42), true);
  ASSERT_TRUE(out.ok) << out.error;
  EXPECT_EQ(host.links.host_ns["vf0"].pci, kPci);
  EXPECT_EQ(host.links.host_ns["vf0"].driver, "mlx5_core");
  EXPECT_EQ(c.ns.count("ib0"), 1u) << "the container's own link stays in the container";
  EXPECT_EQ(c.ns.count("renamed"), 0u);
  EXPECT_NE(out.note.find("was named 'renamed'"), std::string::npos) << out.note;
}

// The container moved the VF to a namespace of its own and reused its ifindex: refused, and the
// message says where the VF went.
TEST(HostActuator, AVfMovedToANestedNamespaceIsReportedNotReplacedByAnImpostor) {
  testing::FakeHost host;
  auto& c = host.containers.add(42);
  host.links.host_ns["vf0"] = {kPci, false, 1500, {}, 7, "mlx5_core"};
  HostActuator a(host.seams());
  auto in = a.run(step::MoveLinkIn{"vf0", "ib0", kPci}, target(42), false);
  ASSERT_TRUE(in.ok) << in.error;
  auto out_step = *inverse(step::MoveLinkIn{"vf0", "ib0", kPci}, in.undo);

  c.ns.erase("ib0");  // gone to a nested namespace
  auto gone = a.run(out_step, target(42), true);
  EXPECT_FALSE(gone.ok);
  EXPECT_NE(gone.error.find("no longer in the container's network namespace"), std::string::npos)
      << gone.error;
  EXPECT_EQ(host.links.host_ns.count("vf0"), 0u);

  c.ns["ib0"] = {"", true, 1500, {}, 7, "dummy"};  // a dummy that took the VF's ifindex
  auto impostor = a.run(out_step, target(42), true);
  EXPECT_FALSE(impostor.ok);
  EXPECT_NE(impostor.error.find("not the VF vf0"), std::string::npos) << impostor.error;
  EXPECT_EQ(c.ns.count("ib0"), 1u);
  EXPECT_EQ(host.links.host_ns.count("vf0"), 0u);
}

// The v1 cpuset cgroup of an exited container is gone, its v2 cgroup is not: the cpuset was
// never written to v2, so nothing is written there now.
TEST(HostActuator, ACpusetIsUndoneOnlyWhereAttachWroteIt) {
  testing::FakeHost host;
  host.cgroups.programs["/berth/c1"] = {};  // the v2 cgroup is still there
  Target t = target(42);
  t.unified_cgroup = "/berth/c1";
  HostActuator a(host.seams());
  auto out = a.run(step::SetCpuset{"0-3", "0"}, t, true);
  EXPECT_TRUE(out.ok) << out.error;
  EXPECT_TRUE(host.cgroups.cpusets_v2.empty());
}

// The attached process (a `runc exec` process) exited; its container lives on: the undo runs
// through another of its processes, not counted done.
TEST(HostActuator, UndoAfterTheAttachedProcessExitedGoesThroughAnotherProcessOfItsContainer) {
  testing::FakeHost host;
  auto& exec = host.containers.add(42);
  auto& init = host.containers.add(7);
  init.member_of = 42;
  host.links.host_ns["vf0"] = {kPci, false, 1500, {}, 9, "mlx5_core"};
  HostActuator a(host.seams());
  auto in = a.run(step::MoveLinkIn{"vf0", "ib0", kPci}, target(42), false);
  ASSERT_TRUE(in.ok) << in.error;
  ASSERT_TRUE(a.run(step::MakeNode{CharDevice{"/dev/nvidia0", 195, 0}}, target(42), false).ok);
  // The shared namespace: the link is in the container's namespace, seen from either process.
  init.ns = exec.ns;
  exec.ns.clear();
  exec.alive = false;
  a.idle();
  ASSERT_TRUE(a.run(step::RemoveNode{CharDevice{"/dev/nvidia0", 195, 0}}, target(42), true).ok);
  EXPECT_EQ(host.nodes.nodes.count("/dev/nvidia0"), 0u) << "removed, not counted done";
  auto out = a.run(*inverse(step::MoveLinkIn{"vf0", "ib0", kPci}, in.undo), target(42), true);
  ASSERT_TRUE(out.ok) << out.error;
  EXPECT_EQ(host.links.host_ns.count("vf0"), 1u);
  EXPECT_TRUE(init.ns.empty());
}

// Cgroup directories are kept for the container open (cgroup_dirs.hpp), never past it: a
// container that exits and one that takes its cgroup's path must not be written through them.
TEST(HostActuator, KeptCgroupDirectoriesLiveOnlyAsLongAsTheOpenContainer) {
  testing::FakeHost host;
  host.containers.add(42);
  host.containers.add(43);
  HostActuator a(host.seams());
  const step::AllowDevice rule{195, 0};
  ASSERT_TRUE(a.run(rule, target(42), false).ok);
  const int at_open = host.cgroups.dirs_forgotten;
  ASSERT_TRUE(a.run(step::AllowDevice{195, 255}, target(42), false).ok);
  EXPECT_EQ(host.cgroups.dirs_forgotten, at_open) << "kept between steps on one container";
  a.idle();
  EXPECT_EQ(host.cgroups.dirs_forgotten, at_open + 1) << "forgotten when the actuator is idle";
  ASSERT_TRUE(a.run(rule, target(42), false).ok);
  const int reopened = host.cgroups.dirs_forgotten;
  ASSERT_TRUE(a.run(rule, target(43), false).ok);
  EXPECT_EQ(host.cgroups.dirs_forgotten, reopened + 1) << "forgotten when another one is opened";
}

// Taking a device rule away reads nothing: who still holds the devices open is one pass over
// the container's descriptors afterwards (still_open), each device named with its own holders.
TEST(HostActuator, WhoStillHoldsTheDevicesIsOnePassAfterTheDetachNotOnePerDevice) {
  testing::FakeHost host;
  host.containers.add(42);
  host.cgroups.programs["/berth/c1"] = {};
  host.cgroups.held[{195, 0}] = {"pid 7 (fd 4)"};
  host.cgroups.held[{195, 255}] = {"pid 7 (fd 5)", "pid 9 (fd 3)"};
  host.cgroups.held[{1, 3}] = {"pid 7 (fd 0)"};  // held, but not one berth took away
  HostActuator a(host.seams());
  const step::AllowDevice gpu{195, 0};
  const step::AllowDevice ctl{195, 255};
  auto on_gpu = a.run(gpu, v2_target(42), false);
  auto on_ctl = a.run(ctl, v2_target(42), false);
  ASSERT_TRUE(on_gpu.ok && on_ctl.ok) << on_gpu.error << on_ctl.error;

  auto off_ctl = a.run(*inverse(ctl, on_ctl.undo), v2_target(42), true);
  auto off_gpu = a.run(*inverse(gpu, on_gpu.undo), v2_target(42), true);
  ASSERT_TRUE(off_ctl.ok && off_gpu.ok) << off_ctl.error << off_gpu.error;
  EXPECT_EQ(host.cgroups.held_reads, 0) << "the detach's steps do not read descriptors";
  EXPECT_EQ(off_ctl.note, "");
  EXPECT_EQ(off_gpu.note, "");

  const std::string note = a.still_open(v2_target(42), {{195, 255}, {195, 0}});
  EXPECT_EQ(host.cgroups.held_reads, 1) << "one pass over the descriptors for the whole detach";
  EXPECT_EQ(note,
            "c 195:255 is still open in the container: pid 7 (fd 5), pid 9 (fd 3); "
            "c 195:0 is still open in the container: pid 7 (fd 4)");

  host.cgroups.held.clear();
  EXPECT_EQ(a.still_open(v2_target(42), {{195, 0}}), "") << "nothing held, nothing to say";
  Target no_v2 = v2_target(42);
  no_v2.unified_cgroup.clear();
  EXPECT_EQ(a.still_open(no_v2, {{195, 0}}), "");
  EXPECT_EQ(host.cgroups.held_reads, 2) << "no cgroup v2 cgroup: nothing to read";
}

TEST(HostActuator, VfGuidsGoInTwoMessagesNodeFirstAndAFailedPortPutsTheNodeBack) {
  testing::FakeHost host;
  host.containers.add(42);
  host.links.guids["0000:1a:00.3"] = "00:00:00:00:00:00:00:aa|00:00:00:00:00:00:00:bb";
  HostActuator a(host.seams());
  const step::SetVfGuid set{"0000:1a:00.0", "0000:1a:00.3", 2, "02:00:00:00:00:00:00:01",
                            "02:00:00:00:00:00:00:02"};
  auto out = a.run(set, target(42), false);
  ASSERT_TRUE(out.ok) << out.error;
  EXPECT_EQ(out.undo, "00:00:00:00:00:00:00:aa|00:00:00:00:00:00:00:bb");
  EXPECT_EQ(host.links.guid_calls,
            (std::vector<std::string>{"0000:1a:00.0 vf 2 node 02:00:00:00:00:00:00:01",
                                      "0000:1a:00.0 vf 2 port 02:00:00:00:00:00:00:02",
                                      "0000:1a:00.0 vf 2 link 1"}));
  // Put back even after the container exited: the GUIDs live on the PF.
  host.links.guid_calls.clear();
  host.containers.containers[42].alive = false;
  a.idle();
  ASSERT_TRUE(a.run(*inverse(set, out.undo), target(42), true).ok);
  EXPECT_EQ(host.links.guid_calls[0], "0000:1a:00.0 vf 2 node 00:00:00:00:00:00:00:aa");
  EXPECT_EQ(host.links.guid_calls[1], "0000:1a:00.0 vf 2 port 00:00:00:00:00:00:00:bb");
  EXPECT_EQ(host.links.guid_calls[2], "0000:1a:00.0 vf 2 link 0") << "back to auto";

  host.links.guid_calls.clear();
  host.links.fail_port_guid = true;
  host.containers.containers[42].alive = true;
  auto failed = a.run(set, target(42), false);
  EXPECT_FALSE(failed.ok);
  EXPECT_EQ(host.links.guid_calls,
            (std::vector<std::string>{"0000:1a:00.0 vf 2 node 02:00:00:00:00:00:00:01",
                                      "0000:1a:00.0 vf 2 node 00:00:00:00:00:00:00:aa"}));
}

// mlx5: after the GUIDs and the link state, the VF is unbound and bound again, and the step
// reports the VF as it came back; a rebind that fails puts the old GUIDs back and probes again.
TEST(HostActuator, AVfIsReboundAfterItsGuidsAndReportedUnderItsNewName) {
  testing::FakeHost host;
  host.containers.add(42);
  host.links.host_ns["ib2"] = {"0000:1a:00.3", false, 2044, {}};
  host.links.guids["0000:1a:00.3"] = "00:00:00:00:00:00:00:aa|00:00:00:00:00:00:00:bb";
  Vf back;
  back.netdev = "ib5";
  back.rdma = "mlx5_7";
  host.links.rebound["0000:1a:00.3"] = back;
  HostActuator a(host.seams());
  step::SetVfGuid set{"0000:1a:00.0", "0000:1a:00.3", 2, "02:00:00:00:00:00:00:01",
                      "02:00:00:00:00:00:00:02"};
  set.rebind = "mlx5_core";
  auto out = a.run(set, target(42), false);
  ASSERT_TRUE(out.ok) << out.error;
  EXPECT_EQ(
      host.links.guid_calls,
      (std::vector<std::string>{"0000:1a:00.0 vf 2 node 02:00:00:00:00:00:00:01",
                                "0000:1a:00.0 vf 2 port 02:00:00:00:00:00:00:02",
                                "0000:1a:00.0 vf 2 link 1", "rebind 0000:1a:00.3 mlx5_core"}));
  ASSERT_TRUE(out.vf);
  EXPECT_EQ(out.vf->netdev, "ib5");
  EXPECT_EQ(out.vf->rdma, "mlx5_7");
  EXPECT_EQ(host.links.host_ns.count("ib5"), 1u);

  // The rebind fails: the old GUIDs go back, the link state to auto, and the VF is probed again
  // so it runs with them.
  host.links.guid_calls.clear();
  host.links.fail_rebinds = 1;
  auto failed = a.run(set, target(42), false);
  EXPECT_FALSE(failed.ok);
  EXPECT_NE(failed.error.find("no netdev after binding mlx5_core"), std::string::npos)
      << failed.error;
  EXPECT_FALSE(failed.vf);
  EXPECT_EQ(host.links.guid_calls,
            (std::vector<std::string>{
                "0000:1a:00.0 vf 2 node 02:00:00:00:00:00:00:01",
                "0000:1a:00.0 vf 2 port 02:00:00:00:00:00:00:02", "0000:1a:00.0 vf 2 link 1",
                "rebind 0000:1a:00.3 mlx5_core", "0000:1a:00.0 vf 2 port 00:00:00:00:00:00:00:bb",
                "0000:1a:00.0 vf 2 node 00:00:00:00:00:00:00:aa", "0000:1a:00.0 vf 2 link 0",
                "rebind 0000:1a:00.3 mlx5_core"}));
}

// The real seam on a sysfs-shaped tree: unbind and bind written with the VF's address, then the
// VF read back; a VF bound to another driver, or a driver name that is a path, is refused
// before anything is written.
TEST(RealLinkSeam, RebindWritesUnbindThenBindAndReadsTheVfBack) {
  namespace fs = std::filesystem;
  const fs::path root = fs::temp_directory_path() / ("berth-rebind-" + std::to_string(::getpid()));
  fs::remove_all(root);
  const fs::path sys = root / "sys";
  const fs::path dev = sys / "bus/pci/devices/0000:1a:00.3";
  const fs::path drivers = sys / "bus/pci/drivers";
  fs::create_directories(dev / "net/ib4");
  fs::create_directories(dev / "infiniband/mlx5_6");
  fs::create_directories(drivers / "mlx5_core");
  fs::create_directories(drivers / "vfio-pci");
  fs::create_directories(root / "dev");
  for (const char* f : {"mlx5_core/bind", "mlx5_core/unbind", "vfio-pci/bind", "vfio-pci/unbind"})
    std::ofstream(drivers / f).flush();
  std::ofstream(dev / "net/ib4/type") << "32\n";
  std::ofstream(dev / "net/ib4/mtu") << "4092\n";
  fs::create_directory_symlink("../../../bus/pci/drivers/mlx5_core", dev / "driver");
  auto text = [](const fs::path& p) {
    std::ifstream in(p);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  };

  RealLinkSeam links(sys.string(), (root / "dev").string());
  auto v = links.rebind_vf("0000:1a:00.3", "mlx5_core");
  ASSERT_TRUE(v) << v.error().message;
  EXPECT_EQ(text(drivers / "mlx5_core/unbind"), "0000:1a:00.3");
  EXPECT_EQ(text(drivers / "mlx5_core/bind"), "0000:1a:00.3");
  EXPECT_EQ(v->netdev, "ib4");
  EXPECT_EQ(v->rdma, "mlx5_6");
  EXPECT_EQ(v->mtu, 4092);
  EXPECT_TRUE(v->infiniband);
  EXPECT_EQ(v->driver, "mlx5_core");

  std::ofstream(drivers / "mlx5_core/bind").flush();
  auto other = links.rebind_vf("0000:1a:00.3", "vfio-pci");
  ASSERT_FALSE(other);
  EXPECT_NE(other.error().message.find("bound to mlx5_core, not vfio-pci"), std::string::npos)
      << other.error().message;
  EXPECT_EQ(text(drivers / "vfio-pci/unbind"), "");
  auto path = links.rebind_vf("0000:1a:00.3", "../../../../tmp");
  ASSERT_FALSE(path);
  EXPECT_NE(path.error().message.find("not a driver name"), std::string::npos);
  fs::remove_all(root);
}

// The partition child is made inside the container and deleted by the ifindex it got there: a
// container that renames it and makes a dummy under its name keeps the dummy, not the child.
TEST(HostActuator, AnIpoibChildIsDeletedByItsIdentityNotByItsName) {
  testing::FakeHost host;
  host.containers.add(42);
  auto& ns = host.containers.containers[42].ns;
  ns["ib0"] = {kPci, true, 2044, {}, 77, "mlx5_core"};
  HostActuator a(host.seams());
  const step::AddPkeyLink add{"ib0", "ib0.8011", 0x8011};
  auto out = a.run(add, target(42), false);
  ASSERT_TRUE(out.ok) << out.error;
  ASSERT_EQ(ns.count("ib0.8011"), 1u);
  EXPECT_EQ(ns["ib0.8011"].pkey, 0x8011);
  EXPECT_NE(out.undo.find("bus=" + std::string(kPci)), std::string::npos) << out.undo;

  auto child = ns["ib0.8011"];
  ns.erase("ib0.8011");
  ns["renamed"] = child;
  ns["ib0.8011"] = {"", true, 1500, {}, 500, "dummy"};
  auto del = a.run(*inverse(add, out.undo), target(42), true);
  ASSERT_TRUE(del.ok) << del.error;
  EXPECT_EQ(ns.count("renamed"), 0u) << "the child is gone";
  EXPECT_EQ(ns.count("ib0.8011"), 1u) << "the dummy stays";
  EXPECT_NE(del.note.find("'renamed'"), std::string::npos) << del.note;
  // Again: nothing left to delete is success.
  EXPECT_TRUE(a.run(*inverse(add, out.undo), target(42), true).ok);
  EXPECT_EQ(ns.count("ib0.8011"), 1u);

  // Cut off before the identity was recorded: a link under the child's name that is not of the
  // VF's device is left alone.
  auto cut = a.run(*inverse(add, ""), target(42), true);
  ASSERT_TRUE(cut.ok) << cut.error;
  EXPECT_EQ(ns.count("ib0.8011"), 1u);
  EXPECT_NE(cut.note.find("left alone"), std::string::npos) << cut.note;
  ns.erase("ib0.8011");
  ASSERT_TRUE(a.run(add, target(42), false).ok);
  ASSERT_TRUE(a.run(*inverse(add, ""), target(42), true).ok);
  EXPECT_EQ(ns.count("ib0.8011"), 0u) << "the VF's own child, under its planned name";
}

// A failure to look (a netlink socket error, a cgroup directory that cannot be opened) is not
// "absent": the undo fails and stays a leftover to retry, instead of counting as done while the
// rule or the link stays.
TEST(HostActuator, ALookupThatFailsFailsTheUndoInsteadOfCountingItDone) {
  testing::FakeHost host;
  host.containers.add(42);
  host.cgroups.rules["/berth/c1"] = {};
  HostActuator a(host.seams());
  ASSERT_TRUE(a.run(step::AllowDevice{195, 0}, target(42), false).ok);
  ASSERT_EQ(host.cgroups.rules["/berth/c1"].count("c 195:0"), 1u);

  // The container exited; its cgroup lives on until the runtime removes it.
  host.containers.containers[42].alive = false;
  a.idle();
  host.cgroups.fail_exists = true;
  auto out = a.run(step::DenyDevice{195, 0}, target(42), true);
  EXPECT_FALSE(out.ok);
  EXPECT_NE(out.error.find("cannot open cgroup /berth/c1"), std::string::npos) << out.error;
  EXPECT_EQ(host.cgroups.rules["/berth/c1"].count("c 195:0"), 1u) << "the rule is still there";
  host.cgroups.fail_exists = false;
  ASSERT_TRUE(a.run(step::DenyDevice{195, 0}, target(42), true).ok);
  EXPECT_EQ(host.cgroups.rules["/berth/c1"].count("c 195:0"), 0u);

  // Links inside a live container: a lookup that fails is not a link that is gone.
  host.containers.containers[42].alive = true;
  a.idle();
  auto& ns = host.containers.containers[42].ns;
  ns["ib0"] = {kPci, true, 1500, {"10.77.0.10/24"}};
  auto lookups = [&](bool fail) { host.links.fail_lookups = fail; };
  lookups(true);
  auto down = a.run(step::LinkDown{"ib0"}, target(42), true);
  EXPECT_FALSE(down.ok);
  EXPECT_TRUE(ns["ib0"].up) << "still up: the undo is a leftover";
  auto del = a.run(step::DelAddress{"ib0", "10.77.0.10/24"}, target(42), true);
  EXPECT_FALSE(del.ok);
  EXPECT_EQ(ns["ib0"].addresses.count("10.77.0.10/24"), 1u);
  lookups(false);
  ASSERT_TRUE(a.run(step::LinkDown{"ib0"}, target(42), true).ok);
  EXPECT_FALSE(ns["ib0"].up);
  ASSERT_TRUE(a.run(step::DelAddress{"ib0", "10.77.0.10/24"}, target(42), true).ok);
  EXPECT_TRUE(ns["ib0"].addresses.empty());
  EXPECT_TRUE(a.run(step::LinkDown{"ib0-gone"}, target(42), true).ok) << "absent is done";
}

}  // namespace
}  // namespace berth::agent
