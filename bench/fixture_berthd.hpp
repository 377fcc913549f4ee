#pragma once
// A berthd process on the bundled two-socket fixture, in a scratch directory, for benchmarks:
// started with extra config keys, waited for until it answers, stopped with SIGTERM.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "net/http_client.hpp"

namespace berth::bench {

class FixtureBerthd {
 public:
  FixtureBerthd(const std::string& name, const nlohmann::json& extra) {
    namespace fs = std::filesystem;
    dir = fs::temp_directory_path() / ("berth-bench-" + name + "-" + std::to_string(::getpid()));
    fs::remove_all(dir);
    fs::create_directories(dir);
    socket = (dir / "berth.sock").string();
    const std::string fixture = std::string(BERTH_FIXTURES) + "/two-socket";
    nlohmann::json config = {{"sysfs_root", fixture + "/sys"},
                             {"dev_root", fixture + "/dev"},
                             {"proc_root", fixture + "/proc"},
                             {"state_dir", (dir / "state").string()},
                             {"runtime_dir", (dir / "run").string()},
                             {"control_socket", socket},
                             {"log_level", "error"},
                             {"udev_source", "off"}};
    config.update(extra);
    std::ofstream(dir / "berthd.json") << config.dump();
    pid = ::fork();
    if (pid == 0) {
      ::execl(BERTHD_PATH, BERTHD_PATH, "--config", (dir / "berthd.json").c_str(), nullptr);
      ::_exit(127);
    }
    for (int i = 0; i < 400 && !net::unix_request(socket, "GET", "/v1/health"); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ~FixtureBerthd() {
    ::kill(pid, SIGTERM);
    ::waitpid(pid, nullptr, 0);
    std::filesystem::remove_all(dir);
  }
  FixtureBerthd(const FixtureBerthd&) = delete;
  FixtureBerthd& operator=(const FixtureBerthd&) = delete;

  std::filesystem::path dir;
  std::string socket;
  pid_t pid = 0;
};

}  // namespace berth::bench
