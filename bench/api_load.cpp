#include "bench/api_load.hpp"

#include <atomic>
#include <mutex>
#include <thread>

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>

namespace berth::bench {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

struct KeepAliveClient::Impl {
  asio::io_context io;
  asio::local::stream_protocol::socket socket{io};
  beast::flat_buffer buffer;
  std::string body;
};

KeepAliveClient::KeepAliveClient(const std::string& path) : impl_(std::make_unique<Impl>()) {
  beast::error_code ec;
  impl_->socket.connect(asio::local::stream_protocol::endpoint(path), ec);
}

KeepAliveClient::~KeepAliveClient() = default;

const std::string& KeepAliveClient::last_body() const {
  return impl_->body;
}

unsigned KeepAliveClient::request(const std::string& method, const std::string& target,
                                  const std::string& body) {
  http::request<http::string_body> req{http::string_to_verb(method), target, 11};
  req.set(http::field::host, "berthd");
  req.keep_alive(true);
  req.body() = body;
  req.prepare_payload();
  beast::error_code ec;
  http::write(impl_->socket, req, ec);
  if (ec) return 0;
  http::response_parser<http::string_body> parser;
  parser.body_limit(64u << 20);
  http::read(impl_->socket, impl_->buffer, parser, ec);
  if (ec) return 0;
  impl_->body = parser.get().body();
  return parser.get().result_int();
}

LoadResult run_load(const std::string& socket, int concurrency, double seconds,
                    const std::function<bool(KeepAliveClient&, int, size_t)>& one) {
  std::atomic<bool> stop{false};
  std::mutex mu;
  std::vector<double> all;
  LoadResult result;
  result.concurrency = concurrency;
  std::vector<std::thread> workers;
  auto start = Clock::now();
  for (int w = 0; w < concurrency; ++w) {
    workers.emplace_back([&, w] {
      KeepAliveClient client(socket);
      std::vector<double> mine;
      size_t errors = 0;
      for (size_t i = 0; !stop.load(std::memory_order_relaxed); ++i) {
        auto t0 = Clock::now();
        if (!one(client, w, i)) ++errors;
        mine.push_back(ms_since(t0));
      }
      std::lock_guard lock(mu);
      all.insert(all.end(), mine.begin(), mine.end());
      result.errors += errors;
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop = true;
  for (auto& t : workers) t.join();
  result.seconds = ms_since(start) / 1000.0;
  result.requests = all.size();
  result.latency = summarize(all);
  return result;
}

}  // namespace berth::bench
