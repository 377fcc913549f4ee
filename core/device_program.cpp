#include "core/device_program.hpp"

#include <array>

namespace berth::bpf {
namespace {

// "brth" and "htrb": the first and last instruction of berth's prologue, so that berth knows its
// own program (and where the wrapped one starts) from the instructions alone, after a restart.
constexpr int32_t kMarkerStart = 0x68747262;
constexpr int32_t kMarkerEnd = 0x62727468;
// The access bits other than read and write: a request with any of them (mknod) is not berth's.
constexpr int32_t kNotReadWrite = 0xffff & ~static_cast<int32_t>(kAccRead | kAccWrite);

constexpr uint8_t R0 = 0, R1 = 1, R2 = 2, R3 = 3, R4 = 4, R5 = 5;

Insn insn(uint8_t code, uint8_t dst, uint8_t src, int16_t off, int32_t imm) {
  return Insn{code, static_cast<uint8_t>((src << 4) | (dst & 0x0f)), off, imm};
}
Insn mov64_imm(uint8_t dst, int32_t imm) {
  return insn(kClassAlu64 | kOpMov | kSrcK, dst, 0, 0, imm);
}
Insn mov32_reg(uint8_t dst, uint8_t src) {
  return insn(kClassAlu | kOpMov | kSrcX, dst, src, 0, 0);
}
Insn alu32_imm(uint8_t op, uint8_t dst, int32_t imm) {
  return insn(kClassAlu | op | kSrcK, dst, 0, 0, imm);
}
Insn ldx_w(uint8_t dst, uint8_t src, int16_t off) {
  return insn(kClassLdx | kModeMem | kSizeW, dst, src, off, 0);
}
Insn jmp_imm(uint8_t op, uint8_t dst, int32_t imm, int16_t off) {
  return insn(kClassJmp | op | kSrcK, dst, 0, off, imm);
}
Insn jmp_reg(uint8_t op, uint8_t dst, uint8_t src, int16_t off) {
  return insn(kClassJmp | op | kSrcX, dst, src, off, 0);
}
Insn exit_insn() {
  return insn(kClassJmp | kExit, 0, 0, 0, 0);
}

// R2 = device type, R3 = access, R4 = major, R5 = minor; R1 (the context) is left as it was,
// for the program that follows.
void load_context(std::vector<Insn>& out) {
  out.push_back(ldx_w(R2, R1, 0));
  out.push_back(alu32_imm(kOpAnd, R2, 0xffff));
  out.push_back(ldx_w(R3, R1, 0));
  out.push_back(alu32_imm(kOpRsh, R3, 16));
  out.push_back(ldx_w(R4, R1, 4));
  out.push_back(ldx_w(R5, R1, 8));
}

constexpr size_t kContextLoads = 6;
constexpr size_t kBlock = 6;

void allow_block(std::vector<Insn>& out, const Device& d) {
  out.push_back(jmp_imm(kJne, R2, static_cast<int32_t>(kDevChar), 5));
  out.push_back(jmp_imm(kJne, R4, static_cast<int32_t>(d.first), 4));
  out.push_back(jmp_imm(kJne, R5, static_cast<int32_t>(d.second), 3));
  out.push_back(jmp_imm(kJset, R3, kNotReadWrite, 2));
  out.push_back(mov64_imm(R0, 1));
  out.push_back(exit_insn());
}

std::optional<Device> read_block(const std::vector<Insn>& p, size_t at) {
  if (at + kBlock > p.size()) return std::nullopt;
  std::vector<Insn> probe;
  const Device d{static_cast<unsigned>(p[at + 1].imm), static_cast<unsigned>(p[at + 2].imm)};
  allow_block(probe, d);
  for (size_t i = 0; i < kBlock; ++i)
    if (!(p[at + i] == probe[i])) return std::nullopt;
  return d;
}

uint8_t insn_class(const Insn& i) {
  return i.code & 0x07;
}
uint8_t insn_op(const Insn& i) {
  return i.code & 0xf0;
}
bool is_ld_imm64(const Insn& i) {
  return i.code == (kClassLd | kModeImm | kSizeDw);
}

}  // namespace

std::vector<Insn> wrap(const std::set<Device>& devices, const std::vector<Insn>& inner) {
  std::vector<Insn> out;
  out.reserve(2 + kContextLoads + kBlock * devices.size() + inner.size());
  out.push_back(mov64_imm(R0, kMarkerStart));
  load_context(out);
  for (const auto& d : devices) allow_block(out, d);
  out.push_back(mov64_imm(R0, kMarkerEnd));
  out.insert(out.end(), inner.begin(), inner.end());
  return out;
}

std::optional<Wrapped> unwrap(const std::vector<Insn>& program) {
  std::vector<Insn> head;
  head.push_back(mov64_imm(R0, kMarkerStart));
  load_context(head);
  if (program.size() < head.size() + 1) return std::nullopt;
  for (size_t i = 0; i < head.size(); ++i)
    if (!(program[i] == head[i])) return std::nullopt;
  Wrapped w;
  size_t at = head.size();
  while (at < program.size() && !(program[at] == mov64_imm(R0, kMarkerEnd))) {
    auto d = read_block(program, at);
    if (!d) return std::nullopt;
    w.devices.insert(*d);
    at += kBlock;
  }
  if (at == program.size()) return std::nullopt;
  w.inner.assign(program.begin() + static_cast<std::ptrdiff_t>(at + 1), program.end());
  return w;
}

Status check_wrappable(const std::vector<Insn>& program) {
  auto refuse = [](size_t at, const std::string& why) {
    return make_error(ErrorCode::attach_failed,
                      "the container's device program cannot be extended safely (instruction " +
                          std::to_string(at) + " " + why +
                          "); berth wraps only programs made of context loads, arithmetic and "
                          "jumps, as container runtimes generate them");
  };
  if (program.empty()) return refuse(0, "missing: the program is empty");
  const auto n = static_cast<int64_t>(program.size());
  for (size_t i = 0; i < program.size(); ++i) {
    const Insn& x = program[i];
    const uint8_t cls = insn_class(x);
    if (cls == kClassLd) {
      if (!is_ld_imm64(x)) return refuse(i, "is a packet load");
      if (x.src() != 0) return refuse(i, "loads a map or another object");
      ++i;  // the second half of the 64-bit immediate
      continue;
    }
    if (cls != kClassJmp && cls != kClassJmp32) continue;
    const uint8_t op = insn_op(x);
    if (op == kCall) return refuse(i, "calls a helper, a tail call or a function");
    if (op == kExit) continue;
    const int64_t target = static_cast<int64_t>(i) + 1 + x.off;
    if (target < 0 || target >= n) return refuse(i, "jumps out of the program");
  }
  const Insn& last = program.back();
  if (!((insn_class(last) == kClassJmp) && (insn_op(last) == kExit || insn_op(last) == kJa)))
    return refuse(program.size() - 1, "is not an exit: the program would run into berth's end");
  return ok_status();
}

std::optional<bool> evaluate(const std::vector<Insn>& program, const Access& a, size_t max_steps) {
  std::array<uint64_t, 11> r{};
  std::array<bool, 11> is_ctx{};
  is_ctx[R1] = true;
  const std::array<uint32_t, 3> ctx{(a.access << 16) | a.type, a.major, a.minor};
  size_t pc = 0;
  for (size_t steps = 0; steps < max_steps; ++steps) {
    if (pc >= program.size()) return std::nullopt;
    const Insn& x = program[pc];
    const uint8_t cls = insn_class(x);
    const uint8_t d = x.dst();
    const uint8_t s = x.src();
    if (d > 10 || s > 10) return std::nullopt;
    if (cls == kClassLd) {
      if (!is_ld_imm64(x) || x.src() != 0 || pc + 1 >= program.size()) return std::nullopt;
      r[d] = static_cast<uint32_t>(x.imm) |
             (static_cast<uint64_t>(static_cast<uint32_t>(program[pc + 1].imm)) << 32);
      is_ctx[d] = false;
      pc += 2;
      continue;
    }
    if (cls == kClassLdx) {
      if ((x.code & 0xe0) != kModeMem || !is_ctx[s]) return std::nullopt;
      const uint8_t size = x.code & 0x18;
      const int width = size == kSizeW ? 4 : size == kSizeH ? 2 : size == kSizeB ? 1 : 0;
      if (width == 0 || x.off < 0 || x.off + width > 12) return std::nullopt;
      uint64_t v = 0;
      for (int b = 0; b < width; ++b) {
        const int byte = x.off + b;
        v |= static_cast<uint64_t>((ctx[static_cast<size_t>(byte / 4)] >> (8 * (byte % 4))) & 0xff)
             << (8 * b);
      }
      r[d] = v;
      is_ctx[d] = false;
      ++pc;
      continue;
    }
    if (cls == kClassAlu || cls == kClassAlu64) {
      const bool wide = cls == kClassAlu64;
      const uint8_t op = insn_op(x);
      if ((x.code & kSrcX) && is_ctx[s] && op != kOpMov) return std::nullopt;
      if (is_ctx[d] && op != kOpMov) return std::nullopt;
      uint64_t src = (x.code & kSrcX) ? r[s] : static_cast<uint64_t>(static_cast<int64_t>(x.imm));
      uint64_t dst = r[d];
      if (!wide) {
        src = static_cast<uint32_t>(src);
        dst = static_cast<uint32_t>(dst);
      }
      const unsigned shift_mask = wide ? 63 : 31;
      switch (op) {
        case kOpAdd:
          dst += src;
          break;
        case kOpSub:
          dst -= src;
          break;
        case kOpMul:
          dst *= src;
          break;
        case kOpDiv:
          dst = src == 0 ? 0 : dst / src;
          break;
        case kOpMod:
          dst = src == 0 ? dst : dst % src;
          break;
        case kOpOr:
          dst |= src;
          break;
        case kOpAnd:
          dst &= src;
          break;
        case kOpXor:
          dst ^= src;
          break;
        case kOpLsh:
          dst <<= (src & shift_mask);
          break;
        case kOpRsh:
          dst >>= (src & shift_mask);
          break;
        case kOpNeg:
          dst = ~dst + 1;
          break;
        case kOpMov:
          dst = src;
          if ((x.code & kSrcX) && is_ctx[s]) {
            if (!wide) return std::nullopt;
            is_ctx[d] = true;
            r[d] = 0;
            ++pc;
            continue;
          }
          break;
        case kOpArsh:
          dst = wide ? static_cast<uint64_t>(static_cast<int64_t>(dst) >> (src & 63))
                     : static_cast<uint32_t>(static_cast<int32_t>(dst) >> (src & 31));
          break;
        default:
          return std::nullopt;
      }
      r[d] = wide ? dst : static_cast<uint32_t>(dst);
      is_ctx[d] = false;
      ++pc;
      continue;
    }
    if (cls == kClassJmp || cls == kClassJmp32) {
      const uint8_t op = insn_op(x);
      if (op == kExit) {
        if (cls != kClassJmp || is_ctx[R0]) return std::nullopt;
        return r[R0] != 0;
      }
      if (op == kCall) return std::nullopt;
      bool take = true;
      if (op != kJa) {
        if (is_ctx[d] || ((x.code & kSrcX) && is_ctx[s])) return std::nullopt;
        uint64_t lhs = r[d];
        uint64_t rhs = (x.code & kSrcX) ? r[s] : static_cast<uint64_t>(static_cast<int64_t>(x.imm));
        int64_t slhs = static_cast<int64_t>(lhs);
        int64_t srhs = static_cast<int64_t>(rhs);
        if (cls == kClassJmp32) {
          lhs = static_cast<uint32_t>(lhs);
          rhs = static_cast<uint32_t>(rhs);
          slhs = static_cast<int32_t>(lhs);
          srhs = static_cast<int32_t>(rhs);
        }
        switch (op) {
          case kJeq:
            take = lhs == rhs;
            break;
          case kJne:
            take = lhs != rhs;
            break;
          case kJgt:
            take = lhs > rhs;
            break;
          case kJge:
            take = lhs >= rhs;
            break;
          case kJlt:
            take = lhs < rhs;
            break;
          case kJle:
            take = lhs <= rhs;
            break;
          case kJset:
            take = (lhs & rhs) != 0;
            break;
          case kJsgt:
            take = slhs > srhs;
            break;
          case kJsge:
            take = slhs >= srhs;
            break;
          case kJslt:
            take = slhs < srhs;
            break;
          case kJsle:
            take = slhs <= srhs;
            break;
          default:
            return std::nullopt;
        }
      }
      const int64_t next = static_cast<int64_t>(pc) + 1 + (take ? x.off : 0);
      if (next < 0) return std::nullopt;
      pc = static_cast<size_t>(next);
      continue;
    }
    return std::nullopt;  // stores: this evaluator has no stack
  }
  return std::nullopt;
}

std::vector<Insn> runtime_program(const std::vector<Rule>& rules, bool default_allow) {
  std::vector<Insn> out;
  load_context(out);
  for (const auto& rule : rules) {
    std::vector<Insn> conditions;
    // Each condition jumps to the next rule when it does not hold; the offsets are filled in once
    // the block's length is known.
    conditions.push_back(jmp_imm(kJne, R2, static_cast<int32_t>(rule.type), 0));
    const uint32_t all = kAccMknod | kAccRead | kAccWrite;
    if ((rule.access & all) != all) {
      conditions.push_back(mov32_reg(R0, R3));
      conditions.push_back(alu32_imm(kOpAnd, R0, static_cast<int32_t>(rule.access)));
      conditions.push_back(jmp_reg(kJne, R0, R3, 0));
    }
    if (rule.major >= 0) conditions.push_back(jmp_imm(kJne, R4, rule.major, 0));
    if (rule.minor >= 0) conditions.push_back(jmp_imm(kJne, R5, rule.minor, 0));
    const size_t block = conditions.size() + 2;
    for (size_t i = 0; i < conditions.size(); ++i)
      if (insn_class(conditions[i]) == kClassJmp)
        conditions[i].off = static_cast<int16_t>(block - i - 1);
    out.insert(out.end(), conditions.begin(), conditions.end());
    out.push_back(mov64_imm(R0, rule.allow ? 1 : 0));
    out.push_back(exit_insn());
  }
  out.push_back(mov64_imm(R0, default_allow ? 1 : 0));
  out.push_back(exit_insn());
  return out;
}

std::string describe(const std::set<Device>& devices) {
  std::string out;
  for (const auto& [major, minor] : devices) {
    if (!out.empty()) out += ", ";
    out += "c " + std::to_string(major) + ":" + std::to_string(minor) + " rw";
  }
  return out.empty() ? "no devices" : out;
}

}  // namespace berth::bpf
