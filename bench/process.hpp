#pragma once
// Runs a program with arguments, extra environment and stdin, and waits for it (no shell).
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

}  // namespace berth::bench
