#pragma once
// Runs a program with arguments, extra environment and stdin, and waits for it (no shell); and
// reads the CPU time another process has used.
#include <sys/types.h>

#include <string>
#include <vector>

namespace berth::bench {

struct ProcessResult {
  int exit_code = -1;
  std::string output;
};

ProcessResult run_process(const std::vector<std::string>& argv,
                          const std::vector<std::string>& env = {},
                          const std::string& stdin_text = {});

// User plus system CPU time of `pid` so far, in seconds (/proc/PID/stat); 0 when unreadable.
double process_cpu_seconds(pid_t pid);

}  // namespace berth::bench
