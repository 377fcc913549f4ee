#pragma once
// An Actuator that changes nothing: it records steps and fails the ones a test asks it to.
#include <functional>
#include <string>
#include <vector>

#include "agent/app/actuator.hpp"

namespace berth::testing {

class FakeActuator : public agent::Actuator {
 public:
  agent::StepOutcome run(const Step& step, const Target&, bool rollback) override {
    log.push_back((rollback ? "undo: " : "") + describe(step));
    if (!rollback && fail_forward_at >= 0 && forward_count++ == fail_forward_at)
      return {false, "", "injected failure"};
    return {true, "", ""};
  }

  void idle() override { ++idle_calls; }

  // Answers with `held_note`; each question goes to `asked` ("pid P M:m M:m").
  std::string still_open(const Target& target,
                         const std::vector<std::pair<unsigned, unsigned>>& devices) override {
    std::string question = "pid " + std::to_string(target.pid);
    for (const auto& [major, minor] : devices)
      question += " " + std::to_string(major) + ":" + std::to_string(minor);
    asked.push_back(question);
    return held_note;
  }

  std::string held_note;
  std::vector<std::string> asked;
  std::vector<std::string> log;
  int idle_calls = 0;
  int fail_forward_at = -1;  // 0-based index of the forward step to fail
  int forward_count = 0;
};

// Wraps another actuator and fails its k-th forward step (0-based) without running it.
class FailingActuator : public agent::Actuator {
 public:
  FailingActuator(agent::Actuator& inner, int fail_at) : inner_(inner), fail_at_(fail_at) {}
  agent::StepOutcome run(const Step& step, const Target& target, bool rollback) override {
    if (!rollback && forward_++ == fail_at_)
      return {false, "", "injected failure at " + describe(step)};
    return inner_.run(step, target, rollback);
  }
  void idle() override { inner_.idle(); }
  std::string still_open(const Target& target,
                         const std::vector<std::pair<unsigned, unsigned>>& devices) override {
    return inner_.still_open(target, devices);
  }

 private:
  agent::Actuator& inner_;
  int fail_at_;
  int forward_ = 0;
};

}  // namespace berth::testing
