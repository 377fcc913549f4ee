#include "agent/app/github_config.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <set>

#include <nlohmann/json.hpp>

namespace berth::agent {
namespace {

Error field_error(const std::string& field, const std::string& why) {
  return make_error(ErrorCode::bad_request, "config field 'github." + field + "': " + why);
}

bool valid_listen(const std::string& text) {
  auto colon = text.rfind(':');
  return colon != std::string::npos && colon != 0 && colon + 1 < text.size() &&
         text.size() - colon <= 6 &&
         text.find_first_not_of("0123456789", colon + 1) == std::string::npos &&
         std::stoul(text.substr(colon + 1)) <= 65535;
}

Expected<std::string> read_secret(const std::string& path, const std::string& field) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return field_error(field, "cannot open " + path + ": " + std::strerror(errno));
  struct stat st {};
  std::string text;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return field_error(field, path + " is not a regular file");
  }
  if (st.st_mode & (S_IRWXG | S_IRWXO)) {
    ::close(fd);
    return field_error(
        field, path + " is readable by group or others (mode " + std::to_string(st.st_mode & 0777) +
                   " octal " +
                   [&] {
                     char b[8];
                     std::snprintf(b, sizeof b, "%03o", st.st_mode & 0777);
                     return std::string(b);
                   }() +
                   "); chmod 600 it");
  }
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0) text.append(buf, static_cast<size_t>(n));
  ::close(fd);
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
  if (text.empty()) return field_error(field, path + " is empty");
  return text;
}

}  // namespace

Expected<GithubConfig> parse_github_config(const nlohmann::json& j, const std::string& base_dir) {
  if (!j.is_object()) return field_error("", "must be an object");
  GithubConfig c;
  c.raw = j.dump();
  static const std::set<std::string> core_keys{"flavors",       "max_runners",     "reap_after_s",
                                               "max_runtime_s", "queue_timeout_s", "runner_prefix"};
  auto path = [&](std::string p) {
    if (!p.empty() && p.front() != '/' && !base_dir.empty())
      p = std::filesystem::weakly_canonical(std::filesystem::path(base_dir) / p).string();
    return p;
  };
  for (const auto& [k, v] : j.items()) {
    if (core_keys.count(k) || k == "$comment") continue;
    auto str = [&](std::string& into, bool is_path = false) -> Status {
      if (!v.is_string() || v.get<std::string>().empty())
        return field_error(k, "must be a non-empty string");
      into = is_path ? path(v.get<std::string>()) : v.get<std::string>();
      if (is_path && into.front() != '/') return field_error(k, "must be an absolute path");
      return ok_status();
    };
    auto num = [&](auto& into, uint64_t min, uint64_t max) -> Status {
      if (!v.is_number_unsigned() || v.get<uint64_t>() < min || v.get<uint64_t>() > max)
        return field_error(
            k, "must be an integer in " + std::to_string(min) + ".." + std::to_string(max));
      into = static_cast<std::remove_reference_t<decltype(into)>>(v.get<uint64_t>());
      return ok_status();
    };
    Status s = ok_status();
    if (k == "listen") {
      s = str(c.listen);
      if (s && !valid_listen(c.listen))
        return field_error(k, "must be \"ADDRESS:PORT\", e.g. \"127.0.0.1:8787\"");
    } else if (k == "tls") {
      if (!v.is_object() || !v.contains("cert") || !v.contains("key") || v.size() != 2 ||
          !v["cert"].is_string() || !v["key"].is_string())
        return field_error(k, "must be {\"cert\": PATH, \"key\": PATH}");
      c.tls_cert = path(v["cert"].get<std::string>());
      c.tls_key = path(v["key"].get<std::string>());
    } else if (k == "secret_file") {
      s = str(c.secret_file, true);
    } else if (k == "secret_file_previous") {
      s = str(c.secret_file_previous, true);
    } else if (k == "registration") {
      s = str(c.registration);
      if (s && c.registration != "none" && c.registration != "app" && c.registration != "token")
        return field_error(k, "must be \"none\", \"app\" or \"token\"");
    } else if (k == "api_url") {
      s = str(c.api_url);
      if (s && !c.api_url.starts_with("https://")) return field_error(k, "must be an https:// URL");
      while (s && c.api_url.ends_with('/')) c.api_url.pop_back();
    } else if (k == "app_id") {
      s = num(c.app_id, 1, UINT64_MAX);
    } else if (k == "installation_id") {
      s = num(c.installation_id, 1, UINT64_MAX);
    } else if (k == "private_key_file") {
      s = str(c.private_key_file, true);
    } else if (k == "token_file") {
      s = str(c.token_file, true);
    } else if (k == "ca_file") {
      s = str(c.ca_file, true);
    } else if (k == "scope") {
      s = str(c.scope);
      if (s && c.scope != "repo" && c.scope != "org")
        return field_error(k, "must be \"repo\" or \"org\"");
    } else if (k == "runner_group_id") {
      s = num(c.runner_group_id, 1, UINT64_MAX);
    } else if (k == "api_timeout_s") {
      s = num(c.api_timeout_s, 1, 120);
    } else if (k == "read_timeout_s") {
      s = num(c.read_timeout_s, 1, 60);
    } else if (k == "max_connections") {
      s = num(c.max_connections, 1, 4096);
    } else if (k == "rate_per_peer") {
      if (!v.is_number() || v.get<double>() <= 0)
        return field_error(k, "must be a positive number (requests per second)");
      c.rate_per_peer = v.get<double>();
    } else if (k == "sbatch" || k == "scancel" || k == "squeue") {
      s = str(k == "sbatch" ? c.sbatch : k == "scancel" ? c.scancel : c.squeue);
    } else {
      return field_error(k, "unknown field");
    }
    if (!s) return s.error();
  }
  auto settings = github::parse_settings(j);
  if (!settings) return settings.error();
  c.settings = std::move(*settings);
  if (c.listen.empty()) return field_error("listen", "is required");
  if (c.secret_file.empty())
    return field_error("secret_file", "is required: berthd verifies every delivery");
  if (c.settings.flavors.empty()) return field_error("flavors", "needs at least one flavor");
  if (c.registration == "app" && (c.app_id == 0 || c.private_key_file.empty()))
    return field_error("registration", "\"app\" needs app_id and private_key_file");
  if (c.registration == "token" && c.token_file.empty())
    return field_error("registration", "\"token\" needs token_file");
  return c;
}

Expected<std::vector<std::string>> read_secrets(const GithubConfig& c) {
  std::vector<std::string> out;
  auto current = read_secret(c.secret_file, "secret_file");
  if (!current) return current.error();
  out.push_back(*current);
  if (!c.secret_file_previous.empty()) {
    auto previous = read_secret(c.secret_file_previous, "secret_file_previous");
    if (!previous) return previous.error();
    out.push_back(*previous);
  }
  return out;
}

}  // namespace berth::agent
