// The control API over the unix socket, against a real berthd process on the two-socket fixture.
#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "agent/host/device_programs.hpp"
#include "core/cdi.hpp"
#include "net/http_client.hpp"
#include "tests/fakes/gpu_kinds_fixture.hpp"
#include "tests/host/host.hpp"

namespace berth::itest {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;

class ApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!skip_reason.empty()) GTEST_SKIP() << skip_reason;
    dir_ = fs::temp_directory_path() / ("berth-api-" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    fs::permissions(dir_, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                              fs::perms::others_read | fs::perms::others_exec);
    socket_ = (dir_ / "berth.sock").string();
    const std::string root = std::string(BERTH_FIXTURES) + "/two-socket";
    json config = {{"sysfs_root", root + "/sys"},
                   {"dev_root", root + "/dev"},
                   {"proc_root", root + "/proc"},
                   {"state_dir", (dir_ / "state").string()},
                   {"runtime_dir", (dir_ / "run").string()},
                   {"control_socket", socket_},
                   {"control_socket_mode", "0666"},
                   {"control_group", "users"},
                   {"cdi_spec", (dir_ / "cdi" / "berth.json").string()},
                   {"log_level", "warn"},
                   {"passthrough_iommu_groups", {70}},
                   {"pools",
                    {{{"name", "grid"},
                      {"subnet", "10.77.0.0/24"},
                      {"ranges", {"10.77.0.10-10.77.0.20"}},
                      {"gateway", "10.77.0.1"}}}}};
    config_ = (dir_ / "berthd.json").string();
    std::ofstream(config_) << config.dump(2);
    create_vf_standins();
    container_.emplace("berth-itest-api");
    ASSERT_TRUE(container_->started()) << container_->error();
    start();
  }
  void TearDown() override {
    stop();
    container_.reset();
    remove_vf_standins();
    fs::remove_all(dir_);
  }

  // `log`: berthd's log (its stderr) goes to that file instead of the test's.
  void start(const fs::path& log = {}) {
    pid_ = ::fork();
    if (pid_ == 0) {
      if (!log.empty()) {
        int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        ::dup2(fd, 2);
      }
      ::execl(BERTHD_PATH, BERTHD_PATH, "--config", config_.c_str(), nullptr);
      ::_exit(127);
    }
    for (int i = 0; i < 200; ++i) {
      if (net::unix_request(socket_, "GET", "/v1/health")) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    FAIL() << "berthd did not start listening on " << socket_;
  }
  void stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "berthd did not stop cleanly";
    pid_ = 0;
  }

  // Restarts berthd on a copy of the fixture's sysfs that the test can change, as hot-plug
  // changes a real /sys, with raw kernel uevents (no udevd here). Empty when the copy failed.
  fs::path restart_on_a_sysfs_copy() {
    stop();
    const fs::path sys = dir_ / "sys";
    if (sh("cp -a " + std::string(BERTH_FIXTURES) + "/two-socket/sys " + sys.string()).rc != 0)
      return {};
    json config = json::parse(std::ifstream(config_));
    config["sysfs_root"] = sys.string();
    config["udev_source"] = "kernel";
    std::ofstream(config_) << config.dump(2);
    start();
    return sys;
  }

  struct Reply {
    unsigned status = 0;
    json body;
  };
  Reply call(const std::string& method, const std::string& target, const std::string& body = {}) {
    auto r = net::unix_request(socket_, method, target, body);
    EXPECT_TRUE(r) << r.error().message;
    if (!r) return {};
    return {r->status, json::parse(r->body, nullptr, false)};
  }
  // Every record of the state and runtime directories, concatenated with their names.
  std::string ledger_files() {
    std::string all;
    for (const char* d : {"state", "run"}) {
      if (!fs::exists(dir_ / d)) continue;
      for (const auto& f : fs::recursive_directory_iterator(dir_ / d)) {
        if (!f.is_regular_file()) continue;
        std::ifstream in(f.path());
        all += f.path().string() + "\n" + std::string(std::istreambuf_iterator<char>(in), {});
      }
    }
    return all;
  }

  fs::path dir_;
  std::string socket_;
  std::string config_;
  pid_t pid_ = 0;
  std::optional<RuncContainer> container_;
  void crash_loop(int cycles, const json& target, const std::function<bool()>& rule_in);
};

const char* kRequest = R"({"gpus":1,"vfs":1,"network":{"pool":"grid"}})";

// Polls `check` every 10 ms for up to `ms`; true when it held.
bool within(int ms, const std::function<bool()>& check) {
  for (int i = 0; i < ms / 10; ++i) {
    if (check()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return check();
}

TEST_F(ApiTest, RoundTripsAndRepeatsAreHarmless) {
  auto c1 = call("PUT", "/v1/berths/slurm/77", kRequest);
  ASSERT_EQ(c1.status, 200u) << c1.body;
  EXPECT_EQ(c1.body["berth"]["state"], "reserved");
  EXPECT_EQ(c1.body["berth"]["vfs"][0]["addresses"][0], "10.77.0.10/24");
  auto c2 = call("PUT", "/v1/berths/slurm/77", kRequest);
  EXPECT_EQ(c2.status, 200u);
  EXPECT_EQ(c2.body, c1.body);

  const std::string pid = std::to_string(container_->pid());
  for (int i = 0; i < 2; ++i) {
    auto a = call("POST", "/v1/berths/slurm/77/attach", R"({"pid":)" + pid + "}");
    ASSERT_EQ(a.status, 200u) << a.body;
    EXPECT_EQ(a.body["berth"]["state"], "attached");
    EXPECT_EQ(a.body["berth"]["target"]["pid"], container_->pid());
  }
  EXPECT_EQ(container_->exec("ping -c 1 -W 2 10.77.0.1").rc, 0);
  for (int i = 0; i < 2; ++i) {
    auto d = call("POST", "/v1/berths/slurm/77/detach");
    ASSERT_EQ(d.status, 200u) << d.body;
    EXPECT_EQ(d.body["berth"]["state"], "reserved");
  }
  auto r = call("POST", "/v1/berths/slurm/77/attach", R"({"runc":")" + container_->id() + R"("})");
  ASSERT_EQ(r.status, 200u) << r.body;
  EXPECT_EQ(r.body["berth"]["target"]["runc_id"], container_->id());
  for (int i = 0; i < 2; ++i) {
    auto del = call("DELETE", "/v1/berths/slurm/77");
    ASSERT_EQ(del.status, 200u) << del.body;
    EXPECT_EQ(del.body["berth"]["state"], "released");
  }
  EXPECT_EQ(sh("ip -o link show bvf0x0").rc, 0) << "the VF stand-in is back on the host";
  auto inv = call("GET", "/v1/inventory");
  EXPECT_EQ(inv.status, 200u);
  EXPECT_EQ(inv.body["gpus"][0]["held_by"], json::array());
}

TEST_F(ApiTest, AnUnknownDriverCheckIsLoggedOnceNotAtEveryAttach) {
  // The busybox container has no libcuda.so.1: every attach's driver check is "unknown".
  const fs::path log = dir_ / "berthd.log";
  stop();
  start(log);
  ASSERT_FALSE(HasFatalFailure());
  ASSERT_EQ(call("PUT", "/v1/berths/manual/drv", R"({"gpus":1})").status, 200u);
  const std::string pid = std::to_string(container_->pid());
  for (int i = 0; i < 3; ++i) {
    auto a = call("POST", "/v1/berths/manual/drv/attach", R"({"pid":)" + pid + "}");
    ASSERT_EQ(a.status, 200u) << a.body;
    EXPECT_NE(a.body["berth"]["target"]["driver"].get<std::string>().find("unknown"),
              std::string::npos)
        << a.body;
    ASSERT_EQ(call("POST", "/v1/berths/manual/drv/detach").status, 200u);
  }
  ASSERT_EQ(call("DELETE", "/v1/berths/manual/drv").status, 200u);
  std::ifstream in(log);
  int lines = 0;
  for (std::string line; std::getline(in, line);)
    if (line.find("BERTH_DRIVER_CHECK") != std::string::npos) ++lines;
  EXPECT_EQ(lines, 1) << "three attaches with the driver check unknown:\n"
                      << [&] {
                           std::ifstream again(log);
                           return std::string((std::istreambuf_iterator<char>(again)), {});
                         }();
}

TEST_F(ApiTest, BadRequestsGetPreciseErrorsAndChangeNothing) {
  ASSERT_EQ(call("PUT", "/v1/berths/manual/keep", kRequest).status, 200u);
  const auto list_before = call("GET", "/v1/berths").body;
  const auto file_before = ledger_files();
  const std::string pid = std::to_string(container_->pid());
  struct Case {
    const char* method;
    std::string target;
    std::string body;
    unsigned status;
    const char* code;
    const char* says;
  };
  const std::vector<Case> cases{
      {"GET", "/v1/berths/manual/nobody", "", 404, "unknown_owner", "no berth manual/nobody"},
      {"POST", "/v1/berths/manual/nobody/attach", R"({"pid":)" + pid + "}", 404, "unknown_owner",
       "manual/nobody"},
      {"POST", "/v1/berths/manual/nobody/detach", "", 404, "unknown_owner", "manual/nobody"},
      {"DELETE", "/v1/berths/manual/nobody", "", 404, "unknown_owner", "manual/nobody"},
      {"PUT", "/v1/berths/manual/x", "{not json", 400, "bad_json", "not valid JSON"},
      {"PUT", "/v1/berths/manual/x", R"({"vfs":1,"network":{"address":"10.0.0.300/24"}})", 400,
       "bad_address", "10.0.0.300"},
      {"PUT", "/v1/berths/manual/x", R"({"gpus":9})", 422, "no_capacity", "cannot place 9 GPUs"},
      {"PUT", "/v1/berths/manual/x", R"({"gpus":1,"vfs":1,"network":{"pool":"nope"}})", 422,
       "unknown_pool", "nope"},
      {"PUT", "/v1/berths/manual/keep", R"({"gpus":2})", 409, "conflict", "different request"},
      {"PUT", "/v1/berths/k8s/x", kRequest, 400, "bad_request", "must be slurm/<id>"},
      {"POST", "/v1/berths/manual/keep/attach", R"({"pid":"1"})", 400, "bad_request", "'pid'"},
      {"POST", "/v1/berths/manual/keep/attach", R"({"pid":4000000})", 404, "target_not_found",
       "4000000"},
      {"POST", "/v1/berths/manual/keep/attach", R"({"pid":1,"runc":"x"})", 400, "bad_request",
       "exactly one"},
      {"POST", "/v1/berths/manual/keep/attach", R"({"runc":"no-such-container"})", 404,
       "target_not_found", "no-such-container"},
      {"POST", "/v1/berths/manual/keep/attach", R"({"pid":)" + std::to_string(::getpid()) + "}",
       400, "bad_request", "not a container"},
      {"POST", "/v1/berths/manual/keep/explode", "", 404, "not_found", "explode"},
      {"GET", "/v2/anything", "", 404, "not_found", "/v2/anything"},
      {"DELETE", "/v1/inventory", "", 405, "method_not_allowed", "GET"},
  };
  for (const auto& c : cases) {
    auto r = call(c.method, c.target, c.body);
    EXPECT_EQ(r.status, c.status) << c.method << " " << c.target << " " << c.body << " -> "
                                  << r.body;
    EXPECT_EQ(r.body["error"]["code"], c.code) << c.target << " " << c.body;
    EXPECT_NE(r.body["error"]["message"].get<std::string>().find(c.says), std::string::npos)
        << c.target << " " << c.body << " -> " << r.body;
  }
  EXPECT_EQ(call("GET", "/v1/berths").body, list_before);
  EXPECT_EQ(ledger_files(), file_before);
}

// A peer as another user: `gid` is its only group.
int as_peer(const std::string& socket, uid_t uid, gid_t gid, const std::string& method,
            const std::string& target, const std::string& body) {
  pid_t child = ::fork();
  if (child == 0) {
    if (::setgroups(0, nullptr) != 0 || ::setgid(gid) != 0 || ::setuid(uid) != 0) ::_exit(254);
    auto r = net::unix_request(socket, method, target, body);
    ::_exit(r ? static_cast<int>(r->status / 100) * 10 + (r->status == 403 ? 3 : 0) : 255);
  }
  int status = 0;
  ::waitpid(child, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST_F(ApiTest, OnlyRootAndTheControlGroupMayMutate) {
  group* users = ::getgrnam("users");
  ASSERT_NE(users, nullptr) << "Debian's 'users' group is missing";
  const uid_t nobody = 65534;
  const gid_t nogroup = 65534;
  EXPECT_EQ(as_peer(socket_, nobody, nogroup, "GET", "/v1/berths", ""), 20);
  EXPECT_EQ(as_peer(socket_, nobody, nogroup, "GET", "/v1/inventory", ""), 20);
  EXPECT_EQ(as_peer(socket_, nobody, nogroup, "PUT", "/v1/berths/manual/n", kRequest), 43);
  EXPECT_EQ(call("GET", "/v1/berths/manual/n").status, 404u)
      << "a refused create must leave nothing";
  EXPECT_EQ(as_peer(socket_, nobody, users->gr_gid, "PUT", "/v1/berths/manual/n", kRequest), 20);
  EXPECT_EQ(as_peer(socket_, nobody, nogroup, "DELETE", "/v1/berths/manual/n", ""), 43);
  EXPECT_EQ(call("GET", "/v1/berths/manual/n").body["berth"]["state"], "reserved");
}

// MIG instances come and go without a uevent (nvidia-smi mig -cgi/-dci change /proc only), so
// berthd reads the machine again on request (POST /v1/inventory/rescan, berthctl rescan) and on
// SIGHUP; a rescan asked for during another one still sees what changed before the request.
TEST_F(ApiTest, MigInstancesCreatedOrDestroyedAfterStartAreSeenOnRescanAndSighup) {
  stop();
  const fs::path node = dir_ / "mig-node";
  berth::testing::gpu_kinds_fixture(node);
  json config = json::parse(std::ifstream(config_));
  config["sysfs_root"] = (node / "sys").string();
  config["dev_root"] = (node / "dev").string();
  config["proc_root"] = (node / "proc").string();
  std::ofstream(config_) << config.dump(2);
  start();
  auto ids = [&] {
    std::set<std::string> out;
    const json inventory = call("GET", "/v1/inventory").body;  // kept: the loop reads into it
    for (const auto& g : inventory["gpus"]) out.insert(g.value("id", ""));
    return out;
  };
  ASSERT_TRUE(ids().count("0000:17:00.0/gi1/ci0")) << call("GET", "/v1/inventory").body.dump();
  ASSERT_FALSE(ids().count("0000:17:00.0/gi3/ci0"));
  // A new instance, as the driver shows it: capability files for gi3 and gi3/ci0, their nodes.
  const fs::path mig = node / "proc/driver/nvidia/capabilities/gpu0/mig";
  for (auto [dir, minor] : {std::pair<const char*, int>{"gi3", 34}, {"gi3/ci0", 35}}) {
    fs::create_directories(mig / dir);
    std::ofstream(mig / dir / "access")
        << "DeviceFileMinor: " << minor << "\nDeviceFileMode: 292\n";
    fs::create_symlink("/dev/tty" + std::to_string(minor),
                       node / "dev/nvidia-caps" / ("nvidia-cap" + std::to_string(minor)));
  }
  EXPECT_FALSE(ids().count("0000:17:00.0/gi3/ci0")) << "seen before any rescan";
  const uid_t nobody = 65534;
  EXPECT_EQ(as_peer(socket_, nobody, nobody, "POST", "/v1/inventory/rescan", ""), 43)
      << "a rescan is root's (or the control group's)";
  EXPECT_EQ(call("GET", "/v1/inventory/rescan").status, 405u);
  auto r = call("POST", "/v1/inventory/rescan");
  ASSERT_EQ(r.status, 200u) << r.body.dump();
  EXPECT_TRUE(r.body["changed"].get<bool>());
  EXPECT_TRUE(ids().count("0000:17:00.0/gi3/ci0")) << "the answer comes after the rescan";
  r = call("POST", "/v1/inventory/rescan");
  EXPECT_FALSE(r.body["changed"].get<bool>()) << "nothing changed since";
  // The new instance is placeable by its id.
  EXPECT_EQ(
      call("PUT", "/v1/berths/manual/mig3", R"({"gpu_ids": ["0000:17:00.0/gi3/ci0"]})").status,
      200u);
  EXPECT_EQ(call("DELETE", "/v1/berths/manual/mig3").status, 200u);
  // An instance destroyed, then SIGHUP: gone from the inventory without an API call.
  fs::remove_all(mig / "gi2");
  ::kill(pid_, SIGHUP);
  bool gone = false;
  for (int i = 0; i < 100 && !gone; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    gone = !ids().count("0000:17:00.0/gi2/ci0");
  }
  EXPECT_TRUE(gone) << "SIGHUP did not rescan";
  // berthctl rescan says what it found.
  auto ctl = sh(std::string(BERTHCTL_PATH) + " --socket " + socket_ + " rescan");
  EXPECT_EQ(ctl.rc, 0) << ctl.out;
  EXPECT_NE(ctl.out.find("inventory unchanged"), std::string::npos) << ctl.out;
}

// A raw HTTP exchange over TCP to 127.0.0.1:port; the status code, or 0.
unsigned tcp_status(int port, const std::string& request) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  unsigned status = 0;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      ::write(fd, request.data(), request.size()) == static_cast<ssize_t>(request.size())) {
    char buf[64] = {};
    if (::read(fd, buf, sizeof buf - 1) > 12) status = static_cast<unsigned>(std::atoi(buf + 9));
  }
  ::close(fd);
  return status;
}

TEST_F(ApiTest, TheTcpListenerIsReadOnlyAndServesMetricsAndThePageOnlyWhenAsked) {
  const int port = 20000 + ::getpid() % 20000;
  for (bool page : {false, true}) {
    stop();
    json c = json::parse(std::ifstream(config_));
    c["http"] = {{"listen", "127.0.0.1:" + std::to_string(port)}, {"status_page", page}};
    std::ofstream(config_) << c.dump(2);
    start();
    ASSERT_TRUE(within(
        2000, [&] { return tcp_status(port, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n") == 200; }));
    EXPECT_EQ(tcp_status(port, "GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n"), 200u);
    EXPECT_EQ(tcp_status(port,
                         "PUT /v1/berths/manual/t HTTP/1.1\r\nHost: x\r\nContent-Length: "
                         "2\r\n\r\n{}"),
              403u);
    EXPECT_EQ(tcp_status(port,
                         "POST /v1/slurm/prolog HTTP/1.1\r\nHost: x\r\nContent-Length: "
                         "2\r\n\r\n{}"),
              403u);
    EXPECT_EQ(tcp_status(port, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"), page ? 200u : 404u);
    EXPECT_EQ(tcp_status(port, "GET /v1/inventory HTTP/1.1\r\nHost: x\r\n\r\n"),
              page ? 200u : 404u);
    EXPECT_EQ(tcp_status(port, "GET /v1/cdi HTTP/1.1\r\nHost: x\r\n\r\n"), 404u);
    EXPECT_EQ(call("GET", "/v1/berths/manual/t").status, 404u);
  }
}

TEST_F(ApiTest, AFloodOfConnectionsThatNeverReadNeitherStallsBerthdNorFloodsItsLog) {
  const fs::path log = dir_ / "berthd.log";
  stop();
  start(log);  // berthd's log to a file this time, so its size can be measured
  ASSERT_FALSE(HasFatalFailure());
  auto cpu_ticks = [&] {
    std::ifstream in("/proc/" + std::to_string(pid_) + "/stat");
    std::string text((std::istreambuf_iterator<char>(in)), {});
    std::istringstream f(text.substr(text.rfind(')') + 2));
    std::string v;
    long ticks = 0;
    for (int i = 3; i <= 15 && f >> v; ++i)
      if (i >= 14) ticks += std::stol(v);
    return ticks;
  };
  const long cpu_before = cpu_ticks();
  const auto wall_before = std::chrono::steady_clock::now();
  // An unprivileged peer: thousands of connections, each pipelining requests, never reading.
  pid_t flooder = ::fork();
  if (flooder == 0) {
    if (::setgid(65534) != 0 || ::setuid(65534) != 0) ::_exit(1);
    std::string burst;
    for (int i = 0; i < 200; ++i) burst += "GET /v1/berths HTTP/1.1\r\nHost: x\r\n\r\n";
    // 2,000 connections (or as many as the descriptor limit allows), held open, never read.
    std::vector<int> held;
    for (int i = 0; i < 2000; ++i) {
      int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (fd < 0) break;
      sockaddr_un a{};
      a.sun_family = AF_UNIX;
      std::strncpy(a.sun_path, socket_.c_str(), sizeof a.sun_path - 1);
      if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        ::close(fd);
        continue;
      }
      ::fcntl(fd, F_SETFL, O_NONBLOCK);
      (void)!::write(fd, burst.data(), burst.size());
      held.push_back(fd);
    }
    ::pause();
    ::_exit(0);
  }
  long worst_ms = 0;
  int answered = 0;
  for (int i = 0; i < 50; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    auto r = net::unix_request(socket_, "GET", "/v1/health", {}, std::chrono::seconds(2));
    auto ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
            .count();
    worst_ms = std::max<long>(worst_ms, ms);
    if (r && r->status == 200) ++answered;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  const long cpu_during = cpu_ticks() - cpu_before;
  const long wall_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                           std::chrono::steady_clock::now() - wall_before)
                           .count();
  ::kill(flooder, SIGKILL);
  ::waitpid(flooder, nullptr, 0);
  EXPECT_EQ(answered, 50) << "root's health checks went unanswered during the flood";
  EXPECT_LT(worst_ms, 1000) << "root waited " << worst_ms << " ms";
  const long hz = ::sysconf(_SC_CLK_TCK);
  const long cpu_ms = cpu_during * 1000 / hz;
  std::cout << "flood: root's slowest health check " << worst_ms << " ms; berthd used " << cpu_ms
            << " ms CPU in " << wall_ms << " ms; log " << fs::file_size(log) << " bytes\n";
  // A server that spins uses a whole core for the whole flood; half of one is the bound, so a
  // sanitizer build's slower code still fits and a spin never does.
  EXPECT_LT(cpu_ms, wall_ms / 2) << "berthd spun during the flood";
  EXPECT_LT(fs::file_size(log), 64u << 10) << "the flood filled the log";
  EXPECT_NE(sh("grep -c BERTH_HTTP_CONNECTION_CAP " + log.string()).out, "0\n")
      << "the refused connections were not reported";
  // Back to normal once it stops.
  EXPECT_TRUE(within(2000, [&] {
    auto r = net::unix_request(socket_, "GET", "/v1/berths");
    return r && r->status == 200;
  }));
}

TEST_F(ApiTest, BerthctlMapsOntoTheApi) {
  const std::string ctl = std::string(BERTHCTL_PATH) + " --socket " + socket_ + " ";
  auto create =
      sh(ctl + "create manual/cli --gpus 1 --vfs 1 --pool grid --route 10.9.0.0/16,via=10.77.0.1");
  EXPECT_EQ(create.rc, 0) << create.out;
  EXPECT_NE(create.out.find("state:   reserved"), std::string::npos) << create.out;
  EXPECT_NE(create.out.find("route:   10.9.0.0/16 via 10.77.0.1"), std::string::npos) << create.out;
  auto list = sh(ctl + "list");
  EXPECT_NE(list.out.find("manual/cli  reserved"), std::string::npos) << list.out;
  auto js = sh(ctl + "--json show manual/cli");
  EXPECT_EQ(json::parse(js.out)["berth"]["owner"], "manual/cli");
  auto attach = sh(ctl + "attach manual/cli --runc " + container_->id());
  EXPECT_EQ(attach.rc, 0) << attach.out;
  EXPECT_NE(container_->exec("ip route").out.find("10.9.0.0/16 via 10.77.0.1 dev ib0"),
            std::string::npos);
  EXPECT_EQ(sh(ctl + "release manual/cli").rc, 0);
  auto missing = sh(ctl + "show manual/none");
  EXPECT_EQ(missing.rc, 1);
  EXPECT_NE(missing.out.find("unknown_owner: no berth manual/none"), std::string::npos)
      << missing.out;
  EXPECT_EQ(sh(std::string(BERTHCTL_PATH) + " --socket /nonexistent/sock list").rc, 3);
  EXPECT_EQ(sh(ctl + "create").rc, 2);
  EXPECT_EQ(sh(ctl + "attach manual/cli --pod 3").rc, 2);
  EXPECT_EQ(sh(ctl + "--help").rc, 0);
}

TEST_F(ApiTest, LedgerSurvivesARestartAndACorruptOneStopsTheAgent) {
  ASSERT_EQ(call("PUT", "/v1/berths/slurm/5", kRequest).status, 200u);
  stop();
  start();
  auto b = call("GET", "/v1/berths/slurm/5");
  EXPECT_EQ(b.status, 200u);
  EXPECT_EQ(b.body["berth"]["state"], "reserved");
  stop();
  std::ofstream(dir_ / "state/berths/slurm/5.json") << "{\"owner\":\"slurm/5\",";
  auto run = sh(std::string(BERTHD_PATH) + " --config " + config_);
  EXPECT_NE(run.rc, 0);
  EXPECT_NE(run.out.find("is corrupt"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("state/berths/slurm/5.json"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("column"), std::string::npos) << "names the offset: " << run.out;
  EXPECT_NE(run.out.find("--recover"), std::string::npos) << run.out;
  // --recover sets the record aside, says so, and starts.
  pid_ = ::fork();
  if (pid_ == 0) {
    int null = ::open((dir_ / "recover.log").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ::dup2(null, 2);
    ::execl(BERTHD_PATH, BERTHD_PATH, "--config", config_.c_str(), "--recover", nullptr);
    ::_exit(127);
  }
  ASSERT_TRUE(within(5000, [&] { return net::unix_request(socket_, "GET", "/v1/health").ok(); }));
  std::ifstream log(dir_ / "recover.log");
  const std::string said(std::istreambuf_iterator<char>(log), {});
  EXPECT_NE(said.find("set aside"), std::string::npos) << said;
  EXPECT_TRUE(fs::exists(dir_ / "state/quarantine/slurm-5.json"));
  EXPECT_EQ(call("GET", "/v1/berths/slurm/5").status, 404u);
}

TEST_F(ApiTest, ARestartReadoptsALiveContainerWithoutTouchingIt) {
  ASSERT_EQ(call("PUT", "/v1/berths/slurm/6", kRequest).status, 200u);
  ASSERT_EQ(
      call("POST", "/v1/berths/slurm/6/attach", json{{"runc", container_->id()}}.dump()).status,
      200u);
  auto inside = [&] {
    return container_->exec("stat -L -c '%i' /proc/self/ns/net; ls -li /dev; ip -o addr").out +
           container_->device_rules();
  };
  const std::string before = inside();
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
  pid_ = 0;
  start();
  EXPECT_EQ(call("GET", "/v1/berths/slurm/6").body["berth"]["state"], "attached");
  EXPECT_EQ(inside(), before) << "re-adoption changed the container";
  EXPECT_EQ(call("GET", "/v1/health").body["watched_containers"], 1);
  // Still watched: its exit detaches it.
  ASSERT_EQ(sh("kill -9 " + std::to_string(container_->pid())).rc, 0);
  EXPECT_TRUE(within(1000, [&] {
    return call("GET", "/v1/berths/slurm/6").body["berth"]["state"] == "reserved";
  }));
}

TEST_F(ApiTest, AContainerGoneWhileBerthdWasDownIsDetachedAtStart) {
  ASSERT_EQ(call("PUT", "/v1/berths/github/8", kRequest).status, 200u);
  ASSERT_EQ(
      call("POST", "/v1/berths/github/8/attach", json{{"runc", container_->id()}}.dump()).status,
      200u);
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
  pid_ = 0;
  ASSERT_EQ(sh("kill -9 " + std::to_string(container_->pid())).rc, 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  start();
  auto b = call("GET", "/v1/berths/github/8").body["berth"];
  EXPECT_EQ(b["state"], "released") << b.dump();
  EXPECT_FALSE(container_->allows_device(10, 229)) << container_->device_rules();
}

TEST_F(ApiTest, ANewBootIdForgetsAttachmentsAndKeepsReservationsByPolicy) {
  ASSERT_EQ(call("PUT", "/v1/berths/slurm/9", kRequest).status, 200u);
  ASSERT_EQ(call("PUT", "/v1/berths/github/9", R"({"gpus": 1})").status, 200u);
  ASSERT_EQ(
      call("POST", "/v1/berths/slurm/9/attach", json{{"runc", container_->id()}}.dump()).status,
      200u);
  ASSERT_EQ(
      call("POST", "/v1/berths/github/9/attach", json{{"runc", container_->id()}}.dump()).status,
      200u);
  stop();
  std::ofstream(dir_ / "state/boot_id") << "00000000-0000-0000-0000-000000000000\n";
  start();
  EXPECT_EQ(call("GET", "/v1/berths/slurm/9").body["berth"]["state"], "reserved");
  EXPECT_EQ(call("GET", "/v1/berths/github/9").body["berth"]["state"], "released");
  // Nothing was undone on the host (after a real reboot there is nothing to undo): the stand-in
  // VF is still inside the living container, which this test then cleans up itself.
  EXPECT_EQ(container_->exec("ip link show ib0").rc, 0);
}

TEST_F(ApiTest, AVfBackOnTheHostUnderAForeignNameIsRestored) {
  // A sysfs tree where the host link "bforeign0" is the netdev of VF 0000:1a:00.1 (bvf0x0 in the
  // fixture): the way a physical VF shows up when its container's namespace dies.
  stop();
  const fs::path sys = dir_ / "sys";
  ASSERT_EQ(sh("cp -a " + std::string(BERTH_FIXTURES) + "/two-socket/sys " + sys.string()).rc, 0);
  ASSERT_TRUE(fs::exists(sys / "bus/pci/devices/0000:1a:00.1/net/bvf0x0"));
  fs::create_directories(sys / "class/net/bforeign0");
  fs::create_symlink("../../../bus/pci/devices/0000:1a:00.1", sys / "class/net/bforeign0/device");
  json config = json::parse(std::ifstream(config_));
  config["sysfs_root"] = sys.string();
  std::ofstream(config_) << config.dump(2);
  start();
  // The VF, up and with an address, comes back under a foreign name: berthd sees the link event
  // and restores its name, sets it down and flushes its addresses.
  ASSERT_EQ(sh("ip addr add 10.55.0.5/24 dev bvf0x0 && ip link set bvf0x0 up").rc, 0);
  ASSERT_EQ(sh("ip link set bvf0x0 down && ip link set bvf0x0 name bforeign0").rc, 0);
  EXPECT_TRUE(within(1000, [&] {
    return sh("ip link show bvf0x0").rc == 0 && sh("ip -o addr show dev bvf0x0").out.empty() &&
           sh("ip -o link show bvf0x0 | grep -c ',UP'").out == "0\n";
  })) << sh("ip -o link; ip -o addr").out;
  EXPECT_NE(sh("ip link show bforeign0").rc, 0);
}

TEST_F(ApiTest, CheckConfigNamesTheBadField) {
  EXPECT_EQ(sh(std::string(BERTHD_PATH) + " --check-config " + config_).rc, 0);
  std::ofstream(dir_ / "bad.json") << R"({"pools": [{"name": "grid", "subnet": "10.77.0.0/33"}]})";
  auto bad = sh(std::string(BERTHD_PATH) + " --check-config " + (dir_ / "bad.json").string());
  EXPECT_EQ(bad.rc, 1);
  EXPECT_NE(
      bad.out.find("config field 'pools': pool 'grid': '10.77.0.0/33' has a bad prefix length"),
      std::string::npos)
      << bad.out;
  auto second = sh(std::string(BERTHD_PATH) + " --config " + config_);
  EXPECT_NE(second.rc, 0);
  EXPECT_NE(second.out.find("another berthd is listening"), std::string::npos) << second.out;
}

// One metric's value in a scrape, by its full name with labels; -1 when absent.
double metric(const std::string& scrape, const std::string& series) {
  std::istringstream in(scrape);
  for (std::string line; std::getline(in, line);)
    if (line.rfind(series + " ", 0) == 0) return std::stod(line.substr(series.size() + 1));
  return -1;
}

TEST_F(ApiTest, MetricsCountExactlyTheOperationsAndPassPromtool) {
  auto scrape = [&] {
    auto r = net::unix_request(socket_, "GET", "/metrics");
    EXPECT_TRUE(r && r->status == 200);
    return r ? r->body : std::string();
  };
  const std::string before = scrape();
  ASSERT_EQ(call("PUT", "/v1/berths/manual/m1", kRequest).status, 200u);
  ASSERT_EQ(
      call("POST", "/v1/berths/manual/m1/attach", json{{"runc", container_->id()}}.dump()).status,
      200u);
  const std::string during = scrape();
  ASSERT_EQ(call("POST", "/v1/berths/manual/m1/detach").status, 200u);
  ASSERT_EQ(call("DELETE", "/v1/berths/manual/m1").status, 200u);
  const std::string after = scrape();
  for (const char* op : {"create", "attach", "detach", "release"}) {
    const std::string series =
        std::string("berth_operation_duration_seconds_count{op=\"") + op + "\"}";
    EXPECT_EQ(metric(after, series) - metric(before, series), 1) << series;
  }
  EXPECT_EQ(metric(during, "berth_berths{state=\"attached\"}"), 1);
  EXPECT_EQ(metric(during, "berth_devices{kind=\"gpu\",state=\"held\"}"), 1);
  EXPECT_EQ(metric(during, "berth_devices{kind=\"vf\",state=\"held\"}"), 1);
  EXPECT_EQ(metric(after, "berth_berths{state=\"attached\"}"), 0);
  EXPECT_EQ(metric(after, "berth_berths{state=\"released\"}"), 1);
  EXPECT_EQ(metric(after, "berth_devices{kind=\"gpu\",state=\"held\"}"), 0);
  EXPECT_EQ(metric(after, "berth_devices{kind=\"gpu\",state=\"free\"}"), 8);
  EXPECT_EQ(metric(after, "berth_build_info{version=\"0.1.0\"}"), 1);
  EXPECT_GE(metric(after, "berth_netlink_resyncs_total"), 0);
  EXPECT_EQ(after.find("manual/m1"), std::string::npos) << "no per-berth labels";
  if (sh("command -v promtool").rc != 0) {
    std::cout << "promtool is not installed (Debian 'prometheus'): the format check did not run\n";
    return;
  }
  std::ofstream(dir_ / "scrape.txt") << after;
  auto check = sh("promtool check metrics < " + (dir_ / "scrape.txt").string());
  EXPECT_EQ(check.rc, 0) << check.out;
}

TEST_F(ApiTest, TheCdiSpecListsExactlyTheReservedBerthsAfterEveryChange) {
  const fs::path file = dir_ / "cdi" / "berth.json";
  auto spec = [&] {
    std::ifstream in(file);
    return json::parse(in, nullptr, false);
  };
  auto names = [&] {
    std::set<std::string> out;
    auto s = spec();
    EXPECT_EQ(berth::cdi_check(s), "") << s.dump(1);
    if (s.contains("devices"))
      for (const auto& d : s["devices"]) out.insert(d["name"].get<std::string>());
    return out;
  };
  EXPECT_TRUE(within(1000, [&] { return fs::exists(file); }));
  EXPECT_EQ(names(), std::set<std::string>{});
  ASSERT_EQ(call("PUT", "/v1/berths/slurm/61", R"({"gpus": 2})").status, 200u);
  EXPECT_TRUE(within(1000, [&] { return names() == std::set<std::string>{"slurm-61"}; }));
  ASSERT_EQ(call("PUT", "/v1/berths/manual/c2", kRequest).status, 200u);
  EXPECT_TRUE(within(1000, [&] {
    return names() == std::set<std::string>{"manual-c2", "slurm-61"};
  }));
  auto s = spec();
  for (const auto& d : s["devices"])
    if (d["name"] == "slurm-61") {
      EXPECT_EQ(d["containerEdits"]["deviceNodes"].size(), 3u) << d.dump();  // 2 GPUs + ctl
    }
  // berthctl prints the same spec, and writes it where it is told.
  auto out = sh(std::string(BERTHCTL_PATH) + " --socket " + socket_ + " cdi spec --output " +
                (dir_ / "by-ctl.json").string());
  EXPECT_EQ(out.rc, 0) << out.out;
  EXPECT_EQ(json::parse(std::ifstream(dir_ / "by-ctl.json"), nullptr, false), spec());
  ASSERT_EQ(call("DELETE", "/v1/berths/slurm/61").status, 200u);
  EXPECT_TRUE(within(1000, [&] { return names() == std::set<std::string>{"manual-c2"}; }));
  ASSERT_EQ(call("DELETE", "/v1/berths/manual/c2").status, 200u);
  EXPECT_TRUE(within(1000, [&] { return names().empty(); }));
  if (sh("command -v podman").rc != 0)
    std::cout << "podman is not installed here: `podman run --device berth.dev/berth=...` did "
                 "not run; the spec was checked against the CDI rules only\n";
}

TEST_F(ApiTest, AContainerKilledWithABerthIsDetachedAtOnceByOwnerPolicy) {
  auto cgroup_state = [&] {
    const std::string cpuset = container_->cpuset_dir();
    return container_->device_rules() +
           sh("cat " + cpuset + "/cpuset.cpus " + cpuset + "/cpuset.mems").out;
  };
  const std::string before = cgroup_state();
  ASSERT_EQ(
      call("PUT", "/v1/berths/slurm/31", R"({"gpus": 1, "vfs": 1, "network": {"pool": "grid"}})")
          .status,
      200u);
  auto attached =
      call("POST", "/v1/berths/slurm/31/attach", json{{"runc", container_->id()}}.dump());
  ASSERT_EQ(attached.status, 200u) << attached.body.dump();
  const std::string vf = attached.body["berth"]["vfs"][0]["netdev"];
  EXPECT_NE(sh("ip link show " + vf).rc, 0) << "the VF is inside the container";
  EXPECT_NE(cgroup_state(), before) << "the attach changed the container's cgroups";
  ASSERT_EQ(sh("kill -9 " + std::to_string(container_->pid())).rc, 0);
  // No polling in berthd: its pidfd wakes it; the berth is back to reserved within 1 s.
  EXPECT_TRUE(within(1000, [&] {
    return call("GET", "/v1/berths/slurm/31").body["berth"]["state"] == "reserved";
  })) << call("GET", "/v1/berths/slurm/31").body.dump();
  auto b = call("GET", "/v1/berths/slurm/31").body["berth"];
  EXPECT_TRUE(b["target"].is_null());
  EXPECT_EQ(b["steps_applied"], 0);
  // The veth stand-in went with the namespace: reported, not an error.
  EXPECT_FALSE(b.contains("leftovers")) << b.dump();
  // The dead container's cgroup is still there (until runc delete), without berth's rules.
  EXPECT_EQ(cgroup_state(), before);
}

TEST_F(ApiTest, AGithubBerthIsReleasedWhenItsContainerExits) {
  ASSERT_EQ(
      call("PUT", "/v1/berths/github/77", R"({"gpus": 1, "vfs": 1, "network": {"pool": "grid"}})")
          .status,
      200u);
  ASSERT_EQ(
      call("POST", "/v1/berths/github/77/attach", json{{"runc", container_->id()}}.dump()).status,
      200u);
  ASSERT_EQ(sh("kill -9 " + std::to_string(container_->pid())).rc, 0);
  EXPECT_TRUE(within(1000, [&] {
    return call("GET", "/v1/berths/github/77").body["berth"]["state"] == "released";
  })) << call("GET", "/v1/berths/github/77").body.dump();
  // Its pool address is free again: a new berth gets the first address of the range.
  ASSERT_EQ(call("PUT", "/v1/berths/slurm/78", R"({"vfs": 1, "network": {"pool": "grid"}})").status,
            200u);
  EXPECT_EQ(call("GET", "/v1/berths/slurm/78").body["berth"]["vfs"][0]["addresses"][0],
            "10.77.0.10/24");
}

TEST_F(ApiTest, RealLinkEventsReachTheLinkViewAndTheEventStreamWithoutPolling) {
  // The periodic resync is an hour away: only notifications can tell berthd.
  stop();
  json config = json::parse(std::ifstream(config_));
  config["netlink_resync_s"] = 3600;
  std::ofstream(config_) << config.dump(2);
  start();
  auto events = sh("timeout 3 curl -sN --unix-socket " + socket_ + " http://berth/v1/events > " +
                   (dir_ / "events.txt").string() + " 2>&1 &");
  (void)events;
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  auto has_link = [&](const std::string& name, const std::function<bool(const json&)>& pred) {
    const json links = call("GET", "/v1/links").body["links"];
    for (const auto& l : links)
      if (l["name"] == name) return pred(l);
    return false;
  };
  ASSERT_EQ(sh("ip link add bevt0 type veth peer name bevt0p").rc, 0);
  EXPECT_TRUE(within(1000, [&] { return has_link("bevt0", [](const json&) { return true; }); }));
  ASSERT_EQ(sh("ip link set bevt0 name bevt1").rc, 0);
  EXPECT_TRUE(within(1000, [&] { return has_link("bevt1", [](const json&) { return true; }); }));
  ASSERT_EQ(sh("ip addr add 10.99.0.1/24 dev bevt1 && ip link set bevt1 up").rc, 0);
  EXPECT_TRUE(within(1000, [&] {
    return has_link("bevt1", [](const json& l) {
      return l["addresses"].size() == 1 && l["addresses"][0] == "10.99.0.1/24";
    });
  }));
  ASSERT_EQ(sh("ip link set bevt1 down").rc, 0);
  EXPECT_TRUE(within(
      1000, [&] { return has_link("bevt1", [](const json& l) { return l["up"] == false; }); }));
  ASSERT_EQ(sh("ip link del bevt1").rc, 0);
  EXPECT_TRUE(within(1000, [&] { return !has_link("bevt1", [](const json&) { return true; }); }));
  std::this_thread::sleep_for(std::chrono::milliseconds(3000));
  std::ifstream in(dir_ / "events.txt");
  const std::string stream(std::istreambuf_iterator<char>(in), {});
  for (const char* what :
       {"\"name\":\"bevt0\"", "\"name\":\"bevt1\"", "10.99.0.1/24", "\"change\":\"removed\""})
    EXPECT_NE(stream.find(what), std::string::npos) << what << " not in the event stream:\n"
                                                    << stream.substr(0, 2000);
}

TEST_F(ApiTest, AfterANetlinkOverrunTheLinkViewEqualsAFreshDump) {
  stop();
  json config = json::parse(std::ifstream(config_));
  config["netlink_resync_s"] = 3600;
  config["netlink_rcvbuf"] = 4096;
  std::ofstream(config_) << config.dump(2);
  start();
  for (int run = 0; run < 5; ++run) {
    // 2,400 link creations and deletions in one batch: far more than 4 KiB of notifications.
    std::string batch;
    for (int i = 0; i < 600; ++i)
      batch += "link add bovr" + std::to_string(i) + " type veth peer name bovr" +
               std::to_string(i) + "p\n";
    for (int i = 0; i < 600; ++i) batch += "link del bovr" + std::to_string(i) + "\n";
    for (int i = 0; i < 100; ++i)
      batch += "link add bovk" + std::to_string(i) + " type veth peer name bovk" +
               std::to_string(i) + "p\n";
    std::ofstream(dir_ / "batch") << batch;
    // berthd is held still during the burst (as a busy agent would be), so its 4 KiB socket
    // overruns for certain instead of by chance.
    ::kill(pid_, SIGSTOP);
    const auto burst = sh("ip -batch " + (dir_ / "batch").string());
    ::kill(pid_, SIGCONT);
    ASSERT_EQ(burst.rc, 0) << burst.out;
    auto kernel = [&] {
      std::set<std::string> names;
      for (const auto& l : json::parse(sh("ip -j link show").out))
        names.insert(l["ifname"].get<std::string>());
      return names;
    };
    auto berthd = [&] {
      std::set<std::string> names;
      const json links = call("GET", "/v1/links").body["links"];
      for (const auto& l : links) names.insert(l["name"].get<std::string>());
      return names;
    };
    EXPECT_TRUE(within(3000, [&] { return kernel() == berthd(); })) << "run " << run;
    EXPECT_GT(call("GET", "/v1/health").body.value("netlink_overruns", 0), run)
        << "the burst did not overrun the receive buffer";
    std::string del;
    for (int i = 0; i < 100; ++i) del += "link del bovk" + std::to_string(i) + "\n";
    std::ofstream(dir_ / "batch") << del;
    sh("ip -batch " + (dir_ / "batch").string());
  }
}

TEST_F(ApiTest, SigtermDuringAnAttachFinishesItAndExitsCleanly) {
  ASSERT_EQ(
      call("PUT", "/v1/berths/slurm/41", R"({"gpus": 1, "vfs": 1, "network": {"pool": "grid"}})")
          .status,
      200u);
  std::thread attach([&] {
    auto r = net::unix_request(socket_, "POST", "/v1/berths/slurm/41/attach",
                               json{{"runc", container_->id()}}.dump());
    (void)r;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  const auto t0 = std::chrono::steady_clock::now();
  stop();  // SIGTERM; expects exit status 0
  attach.join();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
  start();
  auto state = call("GET", "/v1/berths/slurm/41").body["berth"]["state"];
  EXPECT_TRUE(state == "attached" || state == "reserved" || state == "failed") << state;
}

TEST_F(ApiTest, SighupAppliesALiveChangeAndRefusesTheRest) {
  const json config = json::parse(std::ifstream(config_));
  const uint64_t seq = call("GET", "/v1/health").body["events"];
  auto reload = [&](const std::string& text) {
    std::ofstream(config_, std::ios::trunc) << text;
    ::kill(pid_, SIGHUP);
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
  };
  json live = config;
  live["log_level"] = "debug";
  reload(live.dump(2));
  reload("{not json");
  json restart = config;
  restart["control_socket_mode"] = "0600";
  reload(restart.dump(2));
  EXPECT_EQ(call("GET", "/v1/health").status, 200u);  // still running, on the old config
  const auto mode = fs::status(socket_).permissions();
  EXPECT_EQ(mode & fs::perms::others_write, fs::perms::others_write) << "socket mode changed live";
  const std::string said =
      sh("BERTH_SOCKET=" + socket_ + " " + BERTHCTL_PATH + " events --since " + std::to_string(seq))
          .out;
  EXPECT_NE(said.find("config reloaded"), std::string::npos) << said;
  EXPECT_NE(said.find("reload refused: " + config_), std::string::npos) << said;
  EXPECT_NE(said.find("'mode' changed (needs a restart)"), std::string::npos) << said;
  std::ofstream(config_, std::ios::trunc) << config.dump(2);
}

TEST_F(ApiTest, AReaderThatNeverReadsIsDroppedAndNeverSlowsBerthd) {
  // A raw connection that asks for the stream and then reads nothing.
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", socket_.c_str());
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  int small = 4096;
  ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  const std::string get = "GET /v1/events HTTP/1.1\r\nHost: b\r\n\r\n";
  ASSERT_EQ(::write(fd, get.data(), get.size()), static_cast<ssize_t>(get.size()));
  // 2,500 events (berth releases) while it does not read: more than a reader may fall behind
  // (1,024) plus what the socket buffers hold. berthd answers every call meanwhile.
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 2500; ++i) {
    ASSERT_EQ(
        call("PUT", "/v1/berths/manual/r" + std::to_string(i), R"({"cpus": 1, "shared": true})")
            .status,
        200u);
    ASSERT_EQ(call("DELETE", "/v1/berths/manual/r" + std::to_string(i)).status, 200u);
  }
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(120));
  EXPECT_EQ(call("GET", "/v1/health").status, 200u);
  // The reader was dropped: its connection ends once what was written is drained.
  std::string got;
  char buf[65536];
  timeval tv{2, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  bool ended = false;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < deadline) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n == 0) {
      ended = true;
      break;
    }
    if (n < 0) break;
    got.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  EXPECT_NE(got.find("text/event-stream"), std::string::npos);
  EXPECT_TRUE(ended) << "the slow reader was not dropped; read " << got.size() << " bytes";
}

// berthd is SIGKILLed at a random moment of an attach or a detach into a real runc container and
// started again, over and over. After each restart the host and the container hold exactly what
// the ledger says: the VF and the GPU rule and node inside iff the berth is attached.
// BERTH_CRASH_CYCLES sets the count (200 here; scripts/soak-crash.sh runs 1,000).
// The loop of CrashLoop* below: `target` is the attach body, `rule` says whether the GPU's device
// rule is in force for the container.
void ApiTest::crash_loop(int cycles, const json& target, const std::function<bool()>& rule_in) {
  ASSERT_EQ(
      call("PUT", "/v1/berths/slurm/90", R"({"gpus": 1, "vfs": 1, "network": {"pool": "grid"}})")
          .status,
      200u);
  // The kill lands anywhere in an attach or a detach, and past their end: the window is twice
  // the longer of one timed attach and detach, so a slower build (the sanitized one) gets as
  // many kills after an attach finished as a plain one does, and a just restarted berthd (whose
  // first attach is slower than the timed one) still some.
  auto timed = [&](const std::string& path, const std::string& body) {
    const auto t0 = std::chrono::steady_clock::now();
    EXPECT_EQ(call("POST", path, body).status, 200u) << path;
    return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() -
                                                                 t0);
  };
  const auto longest = std::max(timed("/v1/berths/slurm/90/attach", target.dump()),
                                timed("/v1/berths/slurm/90/detach", ""));
  const auto window = static_cast<unsigned>(longest.count() * 2) + 1;
  std::mt19937 rng(12345);
  int leaked_netdevs = 0, stray_rules = 0, stray_nodes = 0, lost = 0, wrong = 0, attached_count = 0;
  for (int i = 0; i < cycles; ++i) {
    const bool attach = call("GET", "/v1/berths/slurm/90").body["berth"]["state"] != "attached";
    const std::string path = attach ? "/v1/berths/slurm/90/attach" : "/v1/berths/slurm/90/detach";
    const std::string body = attach ? target.dump() : "";
    std::thread request([&] {
      auto r = net::unix_request(socket_, "POST", path, body);
      (void)r;
    });
    std::this_thread::sleep_for(std::chrono::microseconds(rng() % window));
    ::kill(pid_, SIGKILL);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = 0;
    request.join();
    start();
    json b = call("GET", "/v1/berths/slurm/90").body["berth"];
    if (b.is_null()) {
      ++lost;
      ASSERT_EQ(call("PUT", "/v1/berths/slurm/90",
                     R"({"gpus": 1, "vfs": 1, "network": {"pool": "grid"}})")
                    .status,
                200u);
      continue;
    }
    const std::string state = b["state"];
    if (state == "failed") {  // an attach cut off is rolled back to failed; detach clears it
      if (b.contains("leftovers")) ++wrong;
      call("POST", "/v1/berths/slurm/90/detach");
      b = call("GET", "/v1/berths/slurm/90").body["berth"];
    }
    const bool attached = b["state"] == "attached";
    attached_count += attached;
    if (b["state"] != "attached" && b["state"] != "reserved") ++wrong;
    const auto inside = container_->exec("ip -o link; ls /dev");
    const bool vf_inside = inside.out.find("ib0") != std::string::npos;
    const bool vf_on_host = sh("ip link show bvf0x0").rc == 0;
    const bool node = inside.out.find("nvidia0") != std::string::npos;
    if (vf_inside != attached || vf_on_host == attached) ++leaked_netdevs;
    if (rule_in() != attached) ++stray_rules;
    if (node != attached) ++stray_nodes;
  }
  std::printf(
      "crash loop: %d cycles (kills within %u us), %d ended attached; leaked netdevs %d, device "
      "rules without a berth %d, device nodes without a berth %d, berths lost %d, wrong states "
      "%d\n",
      cycles, window, attached_count, leaked_netdevs, stray_rules, stray_nodes, lost, wrong);
  EXPECT_EQ(leaked_netdevs, 0);
  EXPECT_EQ(stray_rules, 0);
  EXPECT_EQ(stray_nodes, 0);
  EXPECT_EQ(lost, 0);
  EXPECT_EQ(wrong, 0);
  // Both halves of the window were hit: kills after an attach finished, and kills within one.
  if (cycles >= 20) {
    EXPECT_GT(attached_count, 0) << "no kill came after an attach had finished";
    EXPECT_LT(attached_count, cycles) << "no kill came within an attach or a detach";
  }
}

// berthd is SIGKILLed at a random moment of an attach or a detach into a real runc container and
// started again, over and over. After each restart the host and the container hold exactly what
// the ledger says: the VF and the GPU rule and node inside iff the berth is attached.
// BERTH_CRASH_CYCLES sets the count (200 here; scripts/soak-crash.sh runs 1,000).
TEST_F(ApiTest, CrashLoopLeaksNothingAndLosesNothing) {
  const char* env = std::getenv("BERTH_CRASH_CYCLES");
  crash_loop(env ? std::atoi(env) : 200, json{{"runc", container_->id()}},
             [&] { return container_->allows_device(10, 229); });
}

// The same on cgroup v2: runc in pure v2 mode with its own device program, berth's program in
// its place while attached. A kill between berth's program swap and its record, or after a
// restart that no longer holds the runtime's original, must still leave the program that allows
// the GPU exactly while the berth is attached (checked by evaluating what is attached).
TEST_F(ApiTest, CrashLoopOnCgroupV2LeaksNoProgramAndLosesNothing) {
  if (auto why = missing_for(CgroupMode::v2); !why.empty()) GTEST_SKIP() << why;
  container_.reset();
  container_.emplace("berth-itest-api-v2", "/berth-test", CgroupMode::v2);
  ASSERT_TRUE(container_->started()) << container_->error();
  const char* env = std::getenv("BERTH_CRASH_CYCLES");
  agent::DevicePrograms programs(agent::find_unified_mount("/sys/fs/cgroup"));
  const std::string cg = container_->cgroup();
  // No program at all would allow the GPU too: counted as "in", never as taken away.
  crash_loop(env ? std::atoi(env) / 2 : 100, json{{"pid", container_->pid()}},
             [&] { return container_->allows_device(10, 229); });
  // Released: one program is left on the container's cgroup, runc's (or the same instructions
  // loaded again after a restart), and none of berth's.
  EXPECT_EQ(call("DELETE", "/v1/berths/slurm/90").status, 200u);
  auto ids = programs.attached(cg);
  ASSERT_TRUE(ids) << ids.error().message;
  EXPECT_EQ(ids->size(), 1u);
  auto allows = programs.allows(cg, 10, 229);
  ASSERT_TRUE(allows);
  EXPECT_FALSE(allows->value_or(true));
}

TEST_F(ApiTest, UeventsReachBerthdAndAGpuThatFallsOffTheBusDegradesItsBerth) {
  const fs::path sys = restart_on_a_sysfs_copy();
  ASSERT_FALSE(sys.empty());
  ASSERT_EQ(call("PUT", "/v1/berths/slurm/11", R"({"gpus": 1})").status, 200u);
  auto a = call("POST", "/v1/berths/slurm/11/attach", json{{"runc", container_->id()}}.dump());
  ASSERT_EQ(a.status, 200u) << a.body.dump();
  const std::string pci = a.body["berth"]["gpus"][0]["pci"];
  const uint64_t seq = call("GET", "/v1/health").body["events"];
  // The GPU leaves the bus; the kernel's uevent (a real one: echo change > a misc device's
  // uevent) makes berthd read sysfs again through the same discovery code.
  fs::rename(sys / "bus/pci/devices" / pci, dir_ / "gpu-away");
  ASSERT_EQ(sh("echo change > /sys/class/misc/fuse/uevent").rc, 0);
  EXPECT_TRUE(within(2000, [&] {
    return call("GET", "/v1/berths/slurm/11").body["berth"]["state"] == "degraded";
  })) << call("GET", "/v1/berths/slurm/11").body.dump();
  auto b = call("GET", "/v1/berths/slurm/11").body["berth"];
  EXPECT_NE(b.value("reason", "").find(pci), std::string::npos) << b.dump();
  // The GPU comes back (another such uevent); still degraded until it is attached again, then
  // attached.
  fs::rename(dir_ / "gpu-away", sys / "bus/pci/devices" / pci);
  ASSERT_EQ(sh("echo change > /sys/class/misc/fuse/uevent").rc, 0);
  EXPECT_TRUE(within(2000, [&] {
    return call("GET", "/v1/berths/slurm/11").body["berth"].value("reason", "").find("back") !=
           std::string::npos;
  })) << call("GET", "/v1/berths/slurm/11").body.dump();
  auto again = call("POST", "/v1/berths/slurm/11/attach", json{{"runc", container_->id()}}.dump());
  EXPECT_EQ(again.status, 200u) << again.body.dump();
  EXPECT_EQ(again.body["berth"]["state"], "attached");
  // What berthd received, in its event stream.
  // follow=0: the replay ends the stream, so a slow (sanitized) run gets all of it.
  auto stream = sh("timeout 10 curl -sN --unix-socket " + socket_ +
                   " 'http://berth/v1/events?follow=0&since=" + std::to_string(seq) + "'")
                    .out;
  EXPECT_NE(stream.find("\"type\":\"udev\""), std::string::npos) << stream.substr(0, 1500);
  EXPECT_NE(stream.find("\"state\":\"degraded\""), std::string::npos);
  EXPECT_NE(stream.find("\"type\":\"inventory\""), std::string::npos);
}

TEST_F(ApiTest, AStandingBerthIsAttachedAgainWhenItsGpuComesBack) {
  const fs::path sys = restart_on_a_sysfs_copy();
  ASSERT_FALSE(sys.empty());
  auto c = call("PUT", "/v1/berths/lab/12",
                json{{"gpus", 1}, {"standing", {{"runc", container_->id()}}}}.dump());
  ASSERT_EQ(c.status, 200u) << c.body.dump();
  auto state = [&] { return call("GET", "/v1/berths/lab/12").body["berth"]["state"]; };
  EXPECT_TRUE(within(3000, [&] { return state() == "attached"; })) << "not attached on create";
  const std::string pci = c.body["berth"]["gpus"][0]["pci"];
  fs::rename(sys / "bus/pci/devices" / pci, dir_ / "gpu-away");
  ASSERT_EQ(sh("echo change > /sys/class/misc/fuse/uevent").rc, 0);
  EXPECT_TRUE(within(2000, [&] { return state() == "degraded"; })) << state();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(state(), "degraded") << "attached again while its GPU is still gone";
  fs::rename(dir_ / "gpu-away", sys / "bus/pci/devices" / pci);
  ASSERT_EQ(sh("echo change > /sys/class/misc/fuse/uevent").rc, 0);
  EXPECT_TRUE(within(3000, [&] { return state() == "attached"; }))
      << "not attached again without a call: " << call("GET", "/v1/berths/lab/12").body.dump();
  EXPECT_EQ(call("DELETE", "/v1/berths/lab/12").status, 200u);
}

TEST_F(ApiTest, BerthctlEventsPrintsTheStreamLikeIpMonitor) {
  const uint64_t seq = call("GET", "/v1/health").body["events"];
  ASSERT_EQ(call("PUT", "/v1/berths/manual/ev", R"({"gpus": 1})").status, 200u);
  ASSERT_EQ(call("DELETE", "/v1/berths/manual/ev").status, 200u);
  auto out = sh("BERTH_SOCKET=" + socket_ + " " + BERTHCTL_PATH + " events --since " +
                std::to_string(seq));
  EXPECT_EQ(out.rc, 0) << out.out;
  EXPECT_NE(out.out.find("berth manual/ev released"), std::string::npos) << out.out;
  auto follow =
      sh("BERTH_SOCKET=" + socket_ + " timeout 1 " + BERTHCTL_PATH + " events --follow --json");
  EXPECT_EQ(follow.rc, 124) << "--follow keeps reading until stopped: " << follow.out;
}

TEST_F(ApiTest, SriovNumvfsGoingFrom0To8To0ChangesTheInventory) {
  stop();
  const fs::path sys = dir_ / "sys";
  ASSERT_EQ(sh("cp -a " + std::string(BERTH_FIXTURES) + "/two-socket/sys " + sys.string()).rc, 0);
  const fs::path pf = sys / "bus/pci/devices/0000:1a:00.0";
  const fs::path away = dir_ / "vfs-away";
  fs::create_directories(away);
  // The PF as it is with sriov_numvfs = 0: no virtfn links, no VF devices.
  auto set_vfs = [&](bool present) {
    for (int i = 0; i < 8; ++i) {
      const std::string link = "virtfn" + std::to_string(i);
      const std::string vf =
          fs::read_symlink(present ? away / link : pf / link).filename().string();
      if (present) {
        fs::rename(away / vf, sys / "bus/pci/devices" / vf);
        fs::rename(away / link, pf / link);
      } else {
        fs::rename(sys / "bus/pci/devices" / vf, away / vf);
        fs::rename(pf / link, away / link);
      }
    }
    std::ofstream(pf / "sriov_numvfs") << (present ? "8\n" : "0\n");
  };
  set_vfs(false);
  json config = json::parse(std::ifstream(config_));
  config["sysfs_root"] = sys.string();
  config["udev_source"] = "kernel";
  std::ofstream(config_) << config.dump(2);
  start();
  auto vfs = [&] { return call("GET", "/v1/inventory").body["vfs"].size(); };
  EXPECT_EQ(vfs(), 8u);
  // 0 -> 8: the uevents of the new devices (here a real "change" uevent of another device, which
  // no udevd acts on) bring a rescan.
  set_vfs(true);
  ASSERT_EQ(sh("echo change > /sys/class/misc/fuse/uevent").rc, 0);
  EXPECT_TRUE(within(2000, [&] { return vfs() == 16u; })) << vfs();
  // 8 -> 0.
  set_vfs(false);
  ASSERT_EQ(sh("echo change > /sys/class/misc/fuse/uevent").rc, 0);
  EXPECT_TRUE(within(2000, [&] { return vfs() == 8u; })) << vfs();
}

// Moving a VF into a container and back is a remove and an add of its netdev each way: berthd
// reads sysfs again for neither (it did at every attach and detach, ahead of their next steps),
// whoever moves it, nor for a veth pair made and deleted; an event that may change the
// inventory still brings a rescan.
TEST_F(ApiTest, VfsMovedBetweenNamespacesBringNoRescan) {
  json config = json::parse(std::ifstream(config_));
  if (config.value("udev_source", "auto") != "kernel") {
    stop();
    config["udev_source"] = "kernel";  // raw uevents, as on a host without udevd
    std::ofstream(config_) << config.dump(2);
    start();
  }
  auto rescans = [&] { return call("GET", "/v1/health").body.value("rescans", uint64_t{0}); };
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // any rescan of the start
  const auto before = rescans();
  ASSERT_EQ(call("PUT", "/v1/berths/slurm/13", kRequest).status, 200u);
  const json target = {{"runc", container_->id()}};
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(call("POST", "/v1/berths/slurm/13/attach", target.dump()).status, 200u);
    ASSERT_EQ(call("POST", "/v1/berths/slurm/13/detach").status, 200u);
  }
  ASSERT_EQ(call("DELETE", "/v1/berths/slurm/13").status, 200u);
  // Another tool moves a free VF in and out.
  const std::string pid = std::to_string(container_->pid());
  ASSERT_EQ(sh("ip link set bvf0x1 netns " + pid + " name net7").rc, 0);
  ASSERT_EQ(sh("nsenter -t " + pid + " -n ip link set net7 netns 1 name bvf0x1").rc, 0);
  // A virtual link (a container runtime's veth pair) is not a device of the inventory's kinds.
  ASSERT_EQ(sh("ip link add bnr0 type veth peer name bnr0p && ip link del bnr0").rc, 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(400));  // past the 100 ms debounce
  EXPECT_EQ(rescans(), before);
  ASSERT_EQ(sh("echo change > /sys/class/misc/fuse/uevent").rc, 0);
  EXPECT_TRUE(within(2000, [&] { return rescans() == before + 1; })) << rescans();
}

TEST_F(ApiTest, AVfThatGoesDownOrGetsAForeignAddressInsideTheContainerDegradesItsBerth) {
  ASSERT_EQ(call("PUT", "/v1/berths/slurm/12", kRequest).status, 200u);
  const json target = {{"runc", container_->id()}};
  ASSERT_EQ(call("POST", "/v1/berths/slurm/12/attach", target.dump()).status, 200u);
  auto state = [&] { return call("GET", "/v1/berths/slurm/12").body["berth"]; };
  EXPECT_TRUE(within(1000, [&] { return call("GET", "/v1/health").body["watched_links"] == 1; }));
  // Someone in the container's network namespace sets the VF down (the busybox container itself
  // has no CAP_NET_ADMIN).
  const std::string in_ns = "nsenter -t " + std::to_string(container_->pid()) + " -n ";
  ASSERT_EQ(sh(in_ns + "ip link set ib0 down").rc, 0);
  EXPECT_TRUE(within(1000, [&] { return state()["state"] == "degraded"; })) << state().dump();
  EXPECT_NE(state().value("reason", "").find("went down"), std::string::npos) << state().dump();
  // Attached again to the same container: detached and attached as one operation.
  auto again = call("POST", "/v1/berths/slurm/12/attach", target.dump());
  ASSERT_EQ(again.status, 200u) << again.body.dump();
  EXPECT_EQ(container_->exec("ip -o link show ib0 | grep -q ',UP'").rc, 0);
  EXPECT_TRUE(within(1000, [&] { return call("GET", "/v1/health").body["watched_links"] == 1; }));
  // Someone gives it an address berth did not.
  ASSERT_EQ(sh(in_ns + "ip addr add 10.123.0.7/24 dev ib0").rc, 0);
  EXPECT_TRUE(within(1000, [&] { return state()["state"] == "degraded"; })) << state().dump();
  EXPECT_NE(state().value("reason", "").find("10.123.0.7/24"), std::string::npos) << state().dump();
  // Detach still restores the host.
  EXPECT_EQ(call("POST", "/v1/berths/slurm/12/detach").status, 200u);
  EXPECT_EQ(sh("ip link show bvf0x0").rc, 0);
}

// systemd's notify protocol, with a datagram socket standing in for systemd's NOTIFY_SOCKET.
TEST_F(ApiTest, NotifiesReadyOnlyWhenListeningPingsTheWatchdogAndSaysStopping) {
  stop();
  const std::string notify_path = (dir_ / "notify").string();
  const int ns = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", notify_path.c_str());
  ASSERT_EQ(::bind(ns, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  timeval tv{0, 200000};
  ::setsockopt(ns, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  pid_ = ::fork();
  if (pid_ == 0) {
    ::setenv("NOTIFY_SOCKET", notify_path.c_str(), 1);
    ::setenv("WATCHDOG_USEC", "200000", 1);
    ::setenv("WATCHDOG_PID", std::to_string(::getpid()).c_str(), 1);
    ::execl(BERTHD_PATH, BERTHD_PATH, "--config", config_.c_str(), nullptr);
    ::_exit(127);
  }
  auto receive = [&]() -> std::string {
    char buf[4096];
    ssize_t n = ::recv(ns, buf, sizeof buf, 0);
    return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
  };
  std::string first;
  for (int i = 0; i < 50 && first.empty(); ++i) first = receive();
  ASSERT_NE(first.find("READY=1"), std::string::npos) << first;
  // At READY=1 the control socket already accepts.
  EXPECT_TRUE(net::unix_request(socket_, "GET", "/v1/health").ok());
  EXPECT_NE(first.find("STATUS=0 berths"), std::string::npos) << first;
  int pings = 0;
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(1);
  while (std::chrono::steady_clock::now() < until)
    if (receive().find("WATCHDOG=1") != std::string::npos) ++pings;
  EXPECT_GE(pings, 6) << "every 100 ms for WatchdogSec=200ms";
  EXPECT_LE(pings, 14);
  ::kill(pid_, SIGTERM);
  bool stopping = false;
  for (int i = 0; i < 25 && !stopping; ++i)
    stopping = receive().find("STOPPING=1") != std::string::npos;
  EXPECT_TRUE(stopping);
  int status = 0;
  ::waitpid(pid_, &status, 0);
  pid_ = 0;
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  ::close(ns);
  start();
}

}  // namespace
}  // namespace berth::itest
