#pragma once
// A load generator for the control API over its unix socket (wrk speaks TCP only): each worker
// thread holds one keep-alive connection and sends requests back to back.
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "bench/stats.hpp"

namespace berth::bench {

class KeepAliveClient {
 public:
  explicit KeepAliveClient(const std::string& socket);
  ~KeepAliveClient();
  // Returns the HTTP status, 0 on a transport error.
  unsigned request(const std::string& method, const std::string& target,
                   const std::string& body = {});
  const std::string& last_body() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

struct LoadResult {
  int concurrency = 0;
  double seconds = 0;
  size_t requests = 0;
  size_t errors = 0;
  Summary latency;
  double per_second() const { return seconds > 0 ? static_cast<double>(requests) / seconds : 0; }
};

// Runs `one(client, worker, i)` (one logical request, possibly several HTTP calls; returns false
// on error) from `concurrency` workers for `seconds`.
LoadResult run_load(const std::string& socket, int concurrency, double seconds,
                    const std::function<bool(KeepAliveClient&, int, size_t)>& one);

}  // namespace berth::bench
