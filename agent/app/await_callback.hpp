#pragma once
// A call that reports through a callback, as something a coroutine awaits: `start(done)` begins
// it, and the coroutine resumes with done's arguments on its own executor, never inside the
// caller of `done` (the engine's dispatch, the worker's completion). `Signature` is done's,
// void(A, B...): the await yields nothing, A, or std::tuple<A, B...>.
#include <memory>
#include <type_traits>
#include <utility>

#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace berth::agent {

template <typename Signature, typename Start>
auto await_callback(Start start) {
  return boost::asio::async_initiate<decltype(boost::asio::use_awaitable), Signature>(
      [start = std::move(start)](auto handler) mutable {
        auto shared = std::make_shared<decltype(handler)>(std::move(handler));
        start([shared](auto&&... args) {
          auto ex = boost::asio::get_associated_executor(*shared);
          boost::asio::post(ex, [shared, ... a = std::decay_t<decltype(args)>(
                                             std::forward<decltype(args)>(args))]() mutable {
            (*shared)(std::move(a)...);
          });
        });
      },
      boost::asio::use_awaitable);
}

}  // namespace berth::agent
