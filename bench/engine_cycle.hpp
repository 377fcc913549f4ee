#pragma once
// The GPU-only attach+detach without the API: berthd's engine, host actuator, worker thread and
// attachment records in-process, driven by events, against a real container. What is left of
// the API cycle once the HTTP round trips and the client's connects are taken away.
#include <string>

#include "bench/stats.hpp"

namespace berth::bench {

struct EngineCycles {
  Summary runs;        // as berthd runs: an operation's steps back to back on the worker
  Summary one_by_one;  // each step to the worker and back to core alone
};

// A berth of 1 GPU (its 2 device nodes, their device rules, the cpuset) on the fixture at
// `fixture` (sys/, dev/, proc/), attached to `pid` and detached, `cycles` times each way, the
// ways taking turns. Records go to `state_dir` and `runtime_dir`.
EngineCycles engine_gpu_cycles(const std::string& fixture, const std::string& state_dir,
                               const std::string& runtime_dir, int pid, int cycles);

// The same berth's steps run straight through the host actuator (no engine, no records, no
// worker): what the steps themselves cost, container open included.
Summary actuator_gpu_cycles(const std::string& fixture, int pid, int cycles);

}  // namespace berth::bench
