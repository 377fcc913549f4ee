#pragma once
// A runner's just-in-time registration at GitHub's REST API, on the reactor: as a GitHub App
// (JWT -> installation access token, cached until near its expiry) or with a token from a file,
// then POST .../actions/runners/generate-jitconfig for the runner's name and the job's labels.
// With registration "none" there is nothing to do and the JIT config is empty.
#include <cstdint>
#include <map>
#include <string>

#include <boost/asio/awaitable.hpp>

#include "agent/app/github_config.hpp"
#include "core/expected.hpp"
#include "core/github.hpp"

namespace berth::agent {

class GithubRegistrar {
 public:
  explicit GithubRegistrar(const GithubConfig& config) : config_(config) {}
  // The encoded JIT config for runner `r`, or why it could not be had (the API's status and
  // message, a timeout, a key that does not load).
  boost::asio::awaitable<Expected<std::string>> jit_config(const github::Runner& r);

 private:
  boost::asio::awaitable<Expected<std::string>> token_for(uint64_t installation);

  const GithubConfig& config_;
  struct Cached {
    std::string token;
    int64_t until = 0;
  };
  std::map<uint64_t, Cached> tokens_;
};

}  // namespace berth::agent
