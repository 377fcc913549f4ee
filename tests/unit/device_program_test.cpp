// berth's cgroup v2 device program: byte layout against the UAPI, the wrap/unwrap round trip,
// what a wrapped program allows, and the programs berth refuses to wrap.
#include "core/device_program.hpp"

#include <gtest/gtest.h>
#include <linux/bpf.h>

#include <cstring>

namespace berth::bpf {
namespace {

static_assert(kClassLd == BPF_LD && kClassLdx == BPF_LDX && kClassSt == BPF_ST &&
              kClassStx == BPF_STX && kClassAlu == BPF_ALU && kClassJmp == BPF_JMP &&
              kClassJmp32 == BPF_JMP32 && kClassAlu64 == BPF_ALU64);
static_assert(kSizeW == BPF_W && kSizeH == BPF_H && kSizeB == BPF_B && kSizeDw == BPF_DW);
static_assert(kModeImm == BPF_IMM && kModeMem == BPF_MEM && kSrcK == BPF_K && kSrcX == BPF_X);
static_assert(kOpAnd == BPF_AND && kOpRsh == BPF_RSH && kOpMov == BPF_MOV && kOpArsh == BPF_ARSH);
static_assert(kJne == BPF_JNE && kJset == BPF_JSET && kCall == BPF_CALL && kExit == BPF_EXIT);
static_assert(kDevChar == BPF_DEVCG_DEV_CHAR && kDevBlock == BPF_DEVCG_DEV_BLOCK);
static_assert(kAccMknod == BPF_DEVCG_ACC_MKNOD && kAccRead == BPF_DEVCG_ACC_READ &&
              kAccWrite == BPF_DEVCG_ACC_WRITE);
static_assert(sizeof(Insn) == sizeof(bpf_insn));

bpf_insn uapi(uint8_t code, uint8_t dst, uint8_t src, int16_t off, int32_t imm) {
  bpf_insn i{};
  i.code = code;
  i.dst_reg = dst & 0xf;
  i.src_reg = src & 0xf;
  i.off = off;
  i.imm = imm;
  return i;
}

// A runc-style deny-by-default list: /dev/null and /dev/zero, plus mknod of anything.
std::vector<Insn> runc_like() {
  return runtime_program({{kDevChar, 1, 3}, {kDevChar, 1, 5}, {kDevChar, -1, -1, kAccMknod}},
                         false);
}

TEST(DeviceProgram, PrologueIsTheUapiEncodingByteForByte) {
  const auto inner = runtime_program({}, false);
  const auto p = wrap({{195, 7}}, inner);
  const std::vector<bpf_insn> want = {
      uapi(BPF_ALU64 | BPF_MOV | BPF_K, 0, 0, 0, 0x68747262),
      uapi(BPF_LDX | BPF_MEM | BPF_W, 2, 1, 0, 0),
      uapi(BPF_ALU | BPF_AND | BPF_K, 2, 0, 0, 0xffff),
      uapi(BPF_LDX | BPF_MEM | BPF_W, 3, 1, 0, 0),
      uapi(BPF_ALU | BPF_RSH | BPF_K, 3, 0, 0, 16),
      uapi(BPF_LDX | BPF_MEM | BPF_W, 4, 1, 4, 0),
      uapi(BPF_LDX | BPF_MEM | BPF_W, 5, 1, 8, 0),
      uapi(BPF_JMP | BPF_JNE | BPF_K, 2, 0, 5, BPF_DEVCG_DEV_CHAR),
      uapi(BPF_JMP | BPF_JNE | BPF_K, 4, 0, 4, 195),
      uapi(BPF_JMP | BPF_JNE | BPF_K, 5, 0, 3, 7),
      uapi(BPF_JMP | BPF_JSET | BPF_K, 3, 0, 2,
           0xffff & ~(BPF_DEVCG_ACC_READ | BPF_DEVCG_ACC_WRITE)),
      uapi(BPF_ALU64 | BPF_MOV | BPF_K, 0, 0, 0, 1),
      uapi(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),
      uapi(BPF_ALU64 | BPF_MOV | BPF_K, 0, 0, 0, 0x62727468),
  };
  ASSERT_EQ(p.size(), want.size() + inner.size());
  EXPECT_EQ(std::memcmp(p.data(), want.data(), want.size() * sizeof(bpf_insn)), 0);
  EXPECT_EQ(std::memcmp(p.data() + want.size(), inner.data(), inner.size() * sizeof(Insn)), 0);
}

TEST(DeviceProgram, UnwrapGivesBackTheDevicesAndTheProgramUnchanged) {
  const auto inner = runc_like();
  const std::set<Device> devices{{195, 0}, {195, 255}, {10, 229}};
  auto w = unwrap(wrap(devices, inner));
  ASSERT_TRUE(w);
  EXPECT_EQ(w->devices, devices);
  EXPECT_EQ(w->inner, inner);
  // Wrapping again (a second berth on the same cgroup) keeps one prologue.
  auto twice = unwrap(wrap({{1, 1}}, w->inner));
  ASSERT_TRUE(twice);
  EXPECT_EQ(twice->inner, inner);
  EXPECT_FALSE(unwrap(inner));
  EXPECT_FALSE(unwrap({}));
  auto empty = unwrap(wrap({}, inner));
  ASSERT_TRUE(empty);
  EXPECT_TRUE(empty->devices.empty());
}

TEST(DeviceProgram, WrappedAllowsBerthsDevicesAndExactlyWhatTheOldProgramAllowed) {
  const auto inner = runc_like();
  const std::set<Device> devices{{10, 229}, {195, 0}};
  const auto p = wrap(devices, inner);
  for (uint32_t type : {kDevChar, kDevBlock})
    for (unsigned major : {1u, 10u, 195u, 4000u})
      for (unsigned minor : {0u, 3u, 5u, 229u, 1u << 19})
        for (uint32_t access = 1; access <= 7; ++access) {
          const Access a{type, major, minor, access};
          auto old = evaluate(inner, a);
          auto now = evaluate(p, a);
          ASSERT_TRUE(old && now);
          const bool berths =
              type == kDevChar && devices.count({major, minor}) && (access & kAccMknod) == 0;
          EXPECT_EQ(*now, berths || *old) << type << " " << major << ":" << minor << " " << access;
        }
  // The old program on its own: null and zero, mknod of any char device, nothing else.
  EXPECT_TRUE(*evaluate(inner, {kDevChar, 1, 3, kAccRead}));
  EXPECT_TRUE(*evaluate(inner, {kDevChar, 10, 229, kAccMknod}));
  EXPECT_FALSE(*evaluate(inner, {kDevChar, 10, 229, kAccRead}));
  EXPECT_FALSE(*evaluate(inner, {kDevBlock, 1, 3, kAccRead}));
}

TEST(DeviceProgram, RefusesProgramsItCannotRunUnchanged) {
  EXPECT_TRUE(check_wrappable(runc_like()).ok());
  EXPECT_FALSE(check_wrappable({}).ok());
  auto call = runc_like();
  call.insert(call.begin(), Insn{BPF_JMP | BPF_CALL, 0, 0, 12});  // bpf_tail_call
  auto e = check_wrappable(call);
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.error().message.find("calls a helper"), std::string::npos);
  auto map = runc_like();
  map.insert(map.begin(), {Insn{BPF_LD | BPF_IMM | BPF_DW, 0x11, 0, 3}, Insn{}});  // src 1: map fd
  EXPECT_NE(check_wrappable(map).error().message.find("map"), std::string::npos);
  auto out = runc_like();
  out[0] = Insn{BPF_JMP | BPF_JA, 0, 1000, 0};
  EXPECT_NE(check_wrappable(out).error().message.find("out of the program"), std::string::npos);
  auto no_exit = runc_like();
  no_exit.pop_back();
  EXPECT_FALSE(check_wrappable(no_exit).ok());
  auto packet = runc_like();
  packet.insert(packet.begin(), Insn{BPF_LD | BPF_ABS | BPF_W, 0, 0, 0});
  EXPECT_FALSE(check_wrappable(packet).ok());
}

TEST(DeviceProgram, EvaluatorRefusesWhatItDoesNotModel) {
  EXPECT_FALSE(evaluate({Insn{BPF_JMP | BPF_CALL, 0, 0, 1}}, {}));
  EXPECT_FALSE(evaluate({Insn{BPF_JMP | BPF_JA, 0, -1, 0}}, {}));  // runs forever
  EXPECT_FALSE(evaluate({}, {}));
  EXPECT_FALSE(
      evaluate({Insn{BPF_LDX | BPF_MEM | BPF_W, 0x12, 0, 0}}, {}));  // r1 not the ctx? it is
}

}  // namespace
}  // namespace berth::bpf
