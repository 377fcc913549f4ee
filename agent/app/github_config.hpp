#pragma once
// The "github" section of berthd's config: the webhook listener, its secrets, the flavors and
// limits (core/github.hpp), how runners are registered, and the tools they run under.
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "core/expected.hpp"
#include "core/github.hpp"

namespace berth::agent {

struct GithubConfig {
  std::string listen;                // ADDRESS:PORT of the webhook listener
  std::string tls_cert, tls_key;     // both or neither: HTTPS; neither: HTTP behind a proxy
  std::string secret_file;           // required
  std::string secret_file_previous;  // optional: the secret being rotated out
  github::Settings settings;
  // Registration: "none" (the runner registers itself), "app" (GitHub App: JWT -> installation
  // token -> JIT config) or "token" (a token from token_file -> JIT config).
  std::string registration = "none";
  std::string api_url = "https://api.github.com";
  uint64_t app_id = 0;
  std::string private_key_file;
  uint64_t installation_id = 0;  // 0: the delivery's installation.id
  std::string token_file;
  std::string scope = "repo";  // repo: /repos/{owner}/{repo}/..., org: /orgs/{owner}/...
  uint64_t runner_group_id = 1;
  std::string ca_file;  // CA bundle for api_url; empty: the system's
  unsigned api_timeout_s = 10;
  size_t max_connections = 64;
  unsigned read_timeout_s = 10;  // a whole request; slower senders are dropped
  double rate_per_peer = 200;    // requests per second per sender address
  std::string sbatch = "sbatch", scancel = "scancel", squeue = "squeue";
  std::string raw;  // the section as given: any change to it needs a restart
};

// `base_dir`: where relative paths are taken from. Errors name the field.
Expected<GithubConfig> parse_github_config(const nlohmann::json& j, const std::string& base_dir);

// The secrets, read now: refused when a file is missing, empty, or readable by group or others.
Expected<std::vector<std::string>> read_secrets(const GithubConfig& c);

}  // namespace berth::agent
