#pragma once
// cgroup v2 device programs (BPF_PROG_TYPE_CGROUP_DEVICE) as instruction lists: berth's
// allow-list wrapped in front of a runtime's program, the check that the runtime's program can be
// wrapped, the way back to it, and an evaluator that says what a program allows.
//
// Programs on a cgroup combine with AND, so berth cannot add access by adding a program: it
// replaces the runtime's program with "berth's devices first, then the old instructions
// unchanged". Runtime device programs are context loads, ALU and forward jumps only, so appending
// them after a prologue that ends in "fall through" keeps every jump of theirs valid.
#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "core/expected.hpp"

namespace berth::bpf {

// struct bpf_insn (include/uapi/linux/bpf.h), 8 bytes.
struct Insn {
  uint8_t code = 0;
  uint8_t regs = 0;  // dst in the low nibble, src in the high nibble
  int16_t off = 0;
  int32_t imm = 0;
  uint8_t dst() const { return regs & 0x0f; }
  uint8_t src() const { return regs >> 4; }
  bool operator==(const Insn&) const = default;
};
static_assert(sizeof(Insn) == 8);

// Opcode parts and the device context, with their UAPI values.
inline constexpr uint8_t kClassLd = 0x00, kClassLdx = 0x01, kClassSt = 0x02, kClassStx = 0x03,
                         kClassAlu = 0x04, kClassJmp = 0x05, kClassJmp32 = 0x06, kClassAlu64 = 0x07;
inline constexpr uint8_t kSizeW = 0x00, kSizeH = 0x08, kSizeB = 0x10, kSizeDw = 0x18;
inline constexpr uint8_t kModeImm = 0x00, kModeMem = 0x60;
inline constexpr uint8_t kSrcK = 0x00, kSrcX = 0x08;
inline constexpr uint8_t kOpAdd = 0x00, kOpSub = 0x10, kOpMul = 0x20, kOpDiv = 0x30, kOpOr = 0x40,
                         kOpAnd = 0x50, kOpLsh = 0x60, kOpRsh = 0x70, kOpNeg = 0x80, kOpMod = 0x90,
                         kOpXor = 0xa0, kOpMov = 0xb0, kOpArsh = 0xc0;
inline constexpr uint8_t kJa = 0x00, kJeq = 0x10, kJgt = 0x20, kJge = 0x30, kJset = 0x40,
                         kJne = 0x50, kJsgt = 0x60, kJsge = 0x70, kCall = 0x80, kExit = 0x90,
                         kJlt = 0xa0, kJle = 0xb0, kJslt = 0xc0, kJsle = 0xd0;
// struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }, access_type being
// (BPF_DEVCG_ACC_* << 16) | BPF_DEVCG_DEV_*.
inline constexpr uint32_t kDevBlock = 1, kDevChar = 2;
inline constexpr uint32_t kAccMknod = 1, kAccRead = 2, kAccWrite = 4;

// A char device berth allows, for read and write (never mknod: berth makes the node itself).
using Device = std::pair<unsigned, unsigned>;  // major, minor

// The prologue that allows `devices`, then `inner` unchanged. `inner` must pass check_wrappable.
std::vector<Insn> wrap(const std::set<Device>& devices, const std::vector<Insn>& inner);

// A program berth made with wrap(): its devices and the program it wraps.
struct Wrapped {
  std::set<Device> devices;
  std::vector<Insn> inner;
};
// nullopt when `program` does not start with berth's prologue.
std::optional<Wrapped> unwrap(const std::vector<Insn>& program);

// Refuses a program berth cannot run after its prologue unchanged: helper or function calls
// (tail calls are a helper), map or other pseudo 64-bit loads, packet loads, a jump out of the
// program, or an empty one.
Status check_wrappable(const std::vector<Insn>& program);

struct Access {
  uint32_t type = kDevChar;
  unsigned major = 0;
  unsigned minor = 0;
  uint32_t access = kAccRead | kAccWrite;
};
// Runs `program` on the device context `a`: true when it returns non-zero (allowed). nullopt for
// a program this evaluator does not model (memory other than the context, calls) or one that runs
// past `max_steps`.
std::optional<bool> evaluate(const std::vector<Insn>& program, const Access& a,
                             size_t max_steps = 100000);

// A runtime-style program (runc's layout: one block per rule, a default at the end), for tests
// and benchmarks that need what a container runtime attaches.
struct Rule {
  uint32_t type = kDevChar;
  int major = -1;  // -1: any
  int minor = -1;
  uint32_t access = kAccRead | kAccWrite | kAccMknod;
  bool allow = true;
};
std::vector<Insn> runtime_program(const std::vector<Rule>& rules, bool default_allow);

// "c 195:0 rw, c 195:255 rw" for logs.
std::string describe(const std::set<Device>& devices);

}  // namespace berth::bpf
