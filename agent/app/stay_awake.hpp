#pragma once
// Running an io_context so that, while a job of an attach or detach is out, its thread stays
// awake for a short while after each handler, polling, before it sleeps. The reactor and the
// worker hand each step to each other; when the other side is already awake the handoff needs
// no wake-up, which on a VM is an inter-processor interrupt and a trip through the hypervisor on
// each side (about 40 us a step on the 2-vCPU bench machine). Other work (a journal fsync, an
// API request) and an idle agent sleep as before, and the polling never lasts longer than
// `awake` after the last handler. 200 us covers the reactor's turn after a run (feeding a dozen
// outcomes to core and writing the next record takes it 70-150 us on the bench VM), so the
// worker is still awake for the job that follows; with 50 us it had gone to sleep and needed the
// wake-up (the in-process GPU cycle: 1.26-1.41 ms with 50 us, 1.03-1.26 ms with 150 or 400 us).
#include <chrono>
#include <thread>

#include <boost/asio/io_context.hpp>

namespace berth::agent {

inline constexpr std::chrono::microseconds kStayAwake{200};
// The reactor, while an operation's job is on the worker: long enough to cover the run of a GPU
// attach or detach's steps (0.2-0.5 ms), so that its outcome needs no wake-up either. A network
// step (a namespace move, 10-20 ms) outlasts it, and the reactor then sleeps.
inline constexpr std::chrono::microseconds kReactorStayAwake{1000};

// Returns when `io` runs out of work or is stopped, as io_context::run() does, or once `done()`
// is true after a handler. `stay()` says whether an operation's job is out (the thread polls)
// or not (it sleeps at once).
template <typename Done, typename Stay>
void run_staying_awake_until(boost::asio::io_context& io, Done done, Stay stay,
                             std::chrono::microseconds awake = kStayAwake) {
  using Clock = std::chrono::steady_clock;
  auto last = Clock::now();
  while (!done()) {
    if (io.poll_one() > 0) {
      last = Clock::now();
      continue;
    }
    if (io.stopped()) return;
    if (stay() && Clock::now() - last < awake) {
      std::this_thread::yield();
      continue;
    }
    if (io.run_one() == 0) return;  // sleeps until a handler is ready; 0 once out of work
    last = Clock::now();
  }
}

template <typename Stay>
void run_staying_awake(boost::asio::io_context& io, Stay stay,
                       std::chrono::microseconds awake = kStayAwake) {
  run_staying_awake_until(
      io, [] { return false; }, stay, awake);
}

}  // namespace berth::agent
