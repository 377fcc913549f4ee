#include "agent/app/github_registrar.hpp"

#include <chrono>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "net/github_jwt.hpp"
#include "net/https_client.hpp"

namespace berth::agent {
namespace asio = boost::asio;

namespace {

int64_t now_s() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Expected<std::string> read_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) return make_error(ErrorCode::internal, "cannot read " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string text = ss.str();
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
  return text;
}

std::map<std::string, std::string> api_headers(const std::string& bearer) {
  return {{"Accept", "application/vnd.github+json"},
          {"X-GitHub-Api-Version", "2022-11-28"},
          {"Authorization", "Bearer " + bearer},
          {"Content-Type", "application/json"}};
}

// "POST /path: 401 Bad credentials" from GitHub's error body {"message": ...}.
Error api_error(const std::string& what, const net::HttpsResponse& r) {
  auto j = nlohmann::json::parse(r.body, nullptr, false);
  std::string message = j.is_object() && j.contains("message") && j["message"].is_string()
                            ? j["message"].get<std::string>()
                            : r.body.substr(0, 200);
  return make_error(ErrorCode::internal,
                    "GitHub API " + what + ": " + std::to_string(r.status) + " " + message);
}

}  // namespace

asio::awaitable<Expected<std::string>> GithubRegistrar::token_for(uint64_t installation) {
  if (config_.registration == "token") co_return read_file(config_.token_file);
  const int64_t now = now_s();
  if (auto it = tokens_.find(installation); it != tokens_.end() && it->second.until > now)
    co_return it->second.token;
  auto key = read_file(config_.private_key_file);
  if (!key) co_return key.error();
  auto jwt = net::github_app_jwt(*key + "\n", config_.app_id, now);
  if (!jwt) co_return jwt.error();
  const std::string path = "/app/installations/" + std::to_string(installation) + "/access_tokens";
  auto r =
      co_await net::https_request("POST", config_.api_url + path, api_headers(*jwt), "{}",
                                  config_.ca_file, std::chrono::seconds(config_.api_timeout_s));
  if (!r) co_return r.error();
  if (r->status != 201 && r->status != 200) co_return api_error("POST " + path, *r);
  auto j = nlohmann::json::parse(r->body, nullptr, false);
  if (!j.is_object() || !j.contains("token") || !j["token"].is_string())
    co_return make_error(ErrorCode::internal, "GitHub API POST " + path + ": no token in reply");
  // Installation tokens last an hour; use one for 50 minutes at most.
  tokens_[installation] = {j["token"].get<std::string>(), now + 3000};
  co_return j["token"].get<std::string>();
}

asio::awaitable<Expected<std::string>> GithubRegistrar::jit_config(const github::Runner& r) {
  if (config_.registration == "none") co_return std::string();
  const uint64_t installation =
      config_.installation_id ? config_.installation_id : r.job.installation_id;
  if (config_.registration == "app" && installation == 0)
    co_return make_error(ErrorCode::internal,
                         "no installation id: the delivery has none and installation_id is unset");
  auto token = co_await token_for(installation);
  if (!token) co_return token.error();
  const std::string path = config_.scope == "org"
                               ? "/orgs/" + r.job.owner + "/actions/runners/generate-jitconfig"
                               : "/repos/" + r.job.repo + "/actions/runners/generate-jitconfig";
  nlohmann::json labels = nlohmann::json::array({"self-hosted"});
  for (const auto& l : r.job.labels)
    if (l != "self-hosted") labels.push_back(l);
  const nlohmann::json body = {{"name", r.name},
                               {"runner_group_id", config_.runner_group_id},
                               {"labels", labels},
                               {"work_folder", "_work"}};
  auto res =
      co_await net::https_request("POST", config_.api_url + path, api_headers(*token), body.dump(),
                                  config_.ca_file, std::chrono::seconds(config_.api_timeout_s));
  if (!res) co_return res.error();
  if (res->status != 201 && res->status != 200) {
    if (res->status == 401) tokens_.erase(installation);
    co_return api_error("POST " + path, *res);
  }
  auto j = nlohmann::json::parse(res->body, nullptr, false);
  if (!j.is_object() || !j.contains("encoded_jit_config") || !j["encoded_jit_config"].is_string())
    co_return make_error(ErrorCode::internal,
                         "GitHub API POST " + path + ": no encoded_jit_config in reply");
  co_return j["encoded_jit_config"].get<std::string>();
}

}  // namespace berth::agent
