#include "agent/host/child_process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "agent/host/unique_fd.hpp"

extern char** environ;

namespace berth::agent {
namespace asio = boost::asio;
using namespace asio::experimental::awaitable_operators;

namespace {

// The child, started with its stdout and stderr on `out_fd` (or appended to `output_path`),
// stdin on /dev/null and no other descriptor of berthd's. Returns its pid, or 0 with `error`.
pid_t spawn(std::vector<std::string>& argv, int out_fd, const std::string& output_path,
            std::vector<std::string>& extra_env, std::string& error) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  if (output_path.empty()) {
    posix_spawn_file_actions_adddup2(&actions, out_fd, STDOUT_FILENO);
    posix_spawn_file_actions_adddup2(&actions, out_fd, STDERR_FILENO);
  } else {
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, output_path.c_str(),
                                     O_WRONLY | O_CREAT | O_APPEND, 0600);
    posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  }
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  // Sockets and files Asio opened without O_CLOEXEC stay in berthd.
  posix_spawn_file_actions_addclosefrom_np(&actions, 3);
  std::vector<char*> args;
  args.reserve(argv.size() + 1);
  for (auto& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  std::vector<char*> envp;
  for (char** e = environ; *e; ++e) envp.push_back(*e);
  for (auto& e : extra_env) envp.push_back(e.data());
  envp.push_back(nullptr);
  pid_t pid = 0;
  int rc = ::posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    error = "cannot run " + argv[0] + ": " + std::strerror(rc);
    return 0;
  }
  return pid;
}

}  // namespace

ChildResult run_blocking(std::vector<std::string> argv, std::chrono::milliseconds timeout) {
  ChildResult result;
  int fds[2];
  if (argv.empty() || ::pipe2(fds, O_CLOEXEC) != 0) {
    result.error = argv.empty() ? "no command" : std::string("pipe: ") + std::strerror(errno);
    return result;
  }
  UniqueFd read_end(fds[0]);
  UniqueFd write_end(fds[1]);
  std::vector<std::string> no_env;
  const pid_t pid = spawn(argv, write_end.get(), {}, no_env, result.error);
  write_end.reset();
  if (pid == 0) return result;
  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  const auto until = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        until - std::chrono::steady_clock::now());
    pollfd p{read_end.get(), POLLIN, 0};
    const int n = left.count() > 0 ? ::poll(&p, 1, static_cast<int>(left.count())) : 0;
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (pidfd) ::syscall(SYS_pidfd_send_signal, pidfd.get(), SIGKILL, nullptr, 0);
      result.error = argv[0] + " did not finish within " + std::to_string(timeout.count()) + " ms";
      break;
    }
    char buf[4096];
    const ssize_t got = ::read(read_end.get(), buf, sizeof buf);
    if (got <= 0) break;
    if (result.output.size() < (1u << 20)) result.output.append(buf, static_cast<size_t>(got));
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status) && result.error.empty()) result.exit_code = WEXITSTATUS(status);
  return result;
}

asio::awaitable<ChildResult> run_child(std::vector<std::string> argv,
                                       std::chrono::milliseconds timeout, std::string output_path,
                                       std::vector<std::string> extra_env) {
  auto ex = co_await asio::this_coro::executor;
  ChildResult result;
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    result.error = std::string("pipe: ") + std::strerror(errno);
    co_return result;
  }
  UniqueFd read_end(fds[0]);
  UniqueFd write_end(fds[1]);
  const pid_t pid = spawn(argv, write_end.get(), output_path, extra_env, result.error);
  write_end.reset();
  if (pid == 0) co_return result;
  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));

  asio::posix::stream_descriptor out(ex, read_end.release());
  asio::steady_timer deadline(ex, timeout);
  auto read_all = [&]() -> asio::awaitable<void> {
    char buf[4096];
    for (;;) {
      auto [ec, n] =
          co_await out.async_read_some(asio::buffer(buf), asio::as_tuple(asio::use_awaitable));
      result.output.append(buf, n);
      if (ec || result.output.size() > (1u << 20)) co_return;
    }
  };
  auto expire = [&]() -> asio::awaitable<void> {
    auto [ec] = co_await deadline.async_wait(asio::as_tuple(asio::use_awaitable));
    (void)ec;
  };
  // The child's end: output closed (the pipe), or its exit (an output file), within the timeout.
  std::optional<asio::posix::stream_descriptor> exit_watch;
  if (pidfd) exit_watch.emplace(ex, pidfd.release());
  auto exited = [&]() -> asio::awaitable<void> {
    if (!exit_watch) co_return;
    auto [ec] = co_await exit_watch->async_wait(asio::posix::stream_descriptor::wait_read,
                                                asio::as_tuple(asio::use_awaitable));
    (void)ec;
  };
  auto first =
      output_path.empty() ? co_await (read_all() || expire()) : co_await (exited() || expire());
  if (first.index() == 1) {
    if (exit_watch)
      ::syscall(SYS_pidfd_send_signal, exit_watch->native_handle(), SIGKILL, nullptr, 0);
    result.error = argv[0] + " did not finish within " + std::to_string(timeout.count()) + " ms";
  }
  // Wait for it through its pidfd without blocking.
  if (output_path.empty() || first.index() == 1) co_await exited();
  int status = 0;
  if (::waitpid(pid, &status, 0) == pid && WIFEXITED(status) && result.error.empty())
    result.exit_code = WEXITSTATUS(status);
  co_return result;
}

}  // namespace berth::agent
