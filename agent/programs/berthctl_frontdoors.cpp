#include "agent/programs/berthctl_frontdoors.hpp"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <thread>

#include <nlohmann/json.hpp>

#include "net/http_client.hpp"

namespace berth::ctl {
namespace {
using nlohmann::json;
using Clock = std::chrono::steady_clock;

struct Options {
  std::chrono::milliseconds timeout{30000};
  bool timeout_given = false;
  std::string config;
};

bool parse_options(const std::vector<std::string>& args, size_t first, Options& o) {
  for (size_t i = first; i < args.size(); ++i) {
    if (args[i] == "--timeout" && i + 1 < args.size()) {
      char* end = nullptr;
      double s = std::strtod(args[++i].c_str(), &end);
      if (*end != '\0' || s <= 0 || s > 3600) return false;
      o.timeout = std::chrono::milliseconds(static_cast<long>(s * 1000));
      o.timeout_given = true;
    } else if (args[i] == "--config" && i + 1 < args.size()) {
      o.config = args[++i];
    } else {
      return false;
    }
  }
  return true;
}

// slurm.prolog_timeout_s from berthd's config, when berthctl can read it.
void timeout_from_config(Options& o) {
  if (o.timeout_given) return;
  std::string path = o.config;
  if (path.empty()) path = std::getenv("BERTH_CONFIG") ? std::getenv("BERTH_CONFIG") : "";
  if (path.empty()) path = "/etc/berth/berthd.json";
  std::ifstream in(path);
  if (!in) return;
  auto j = json::parse(in, nullptr, false);
  if (j.is_object() && j.contains("slurm") && j["slurm"].is_object() &&
      j["slurm"].contains("prolog_timeout_s") &&
      j["slurm"]["prolog_timeout_s"].is_number_unsigned())
    o.timeout = std::chrono::seconds(j["slurm"]["prolog_timeout_s"].get<unsigned>());
}

struct Outcome {
  int status = 3;  // exit status
  json doc;
  std::string message;  // for stderr when status != 0
};

// One call, retried while berthd is unreachable or the berth is busy, until the deadline.
Outcome call_until(const std::string& socket, const std::string& method, const std::string& target,
                   const std::string& body, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  Outcome out;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return out;
    auto res = net::unix_request(socket, method, target, body, left);
    if (!res) {
      out = {3, {}, "berthd unreachable: " + res.error().message};
    } else {
      auto doc = json::parse(res->body, nullptr, false);
      if (doc.is_discarded())
        return {1, {}, "HTTP " + std::to_string(res->status) + ": " + res->body};
      if (res->status < 400) return {0, doc, {}};
      std::string code = doc.contains("error") ? doc["error"].value("code", "error") : "error";
      std::string msg = doc.contains("error") ? doc["error"].value("message", "") : res->body;
      out = {1, doc, code + ": " + msg};
      if (code != "busy") return out;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

json job_environment() {
  json env = json::object();
  for (const char* key : {"SLURM_JOB_ID", "SLURM_JOB_UID", "SLURM_JOB_USER", "SLURM_JOB_PARTITION",
                          "SLURM_JOB_GPUS", "CUDA_VISIBLE_DEVICES"})
    if (const char* v = std::getenv(key)) env[key] = v;
  return env;
}

std::string summary(const json& berth) {
  if (!berth.is_object()) return "";
  std::string s = berth.value("owner", "?") + " " + berth.value("state", "?");
  if (berth.contains("gpus") && !berth["gpus"].empty()) {
    s += " gpus";
    for (const auto& g : berth["gpus"]) s += " " + g.value("pci", "");
  }
  if (berth.contains("vfs"))
    for (const auto& v : berth["vfs"]) s += " vf " + v.value("pci", "");
  s += " cpus " + berth.value("cpus", "");
  return s;
}

}  // namespace

int slurm_command(const std::string& socket, const std::vector<std::string>& args, bool json_out) {
  Options o;
  if (args.size() < 2 || (args[1] != "prolog" && args[1] != "epilog") ||
      !parse_options(args, 2, o)) {
    std::fputs("berthctl: usage: berthctl slurm prolog|epilog [--timeout S] [--config PATH]\n",
               stderr);
    return 2;
  }
  timeout_from_config(o);
  const json env = job_environment();
  const std::string job = env.value("SLURM_JOB_ID", "?");
  auto out = call_until(socket, "POST", "/v1/slurm/" + args[1], env.dump(), o.timeout);
  if (out.status != 0) {
    // slurmd keeps no output of a prolog: one line on stderr, for the admin reading slurmd's log.
    std::fprintf(stderr, "berth %s: job %s: %s%s\n", args[1].c_str(), job.c_str(),
                 out.message.empty() ? "no answer from berthd" : out.message.c_str(),
                 out.status == 3 ? (" (waited " + std::to_string(o.timeout.count() / 1000) +
                                    " s; is berthd running? systemctl status berthd)")
                                       .c_str()
                                 : "");
    return out.status;
  }
  if (json_out)
    std::printf("%s\n", out.doc.dump().c_str());
  else if (out.doc.contains("berth") && out.doc["berth"].is_object())
    std::printf("berth %s: %s\n", args[1].c_str(), summary(out.doc["berth"]).c_str());
  else
    std::printf("berth %s: %s\n", args[1].c_str(), out.doc.value("message", "").c_str());
  return 0;
}

int oci_hook(const std::string& socket, const std::vector<std::string>& args) {
  Options o;
  if (!parse_options(args, 1, o)) {
    std::fputs("berthctl: usage: berthctl oci-hook [--timeout S] < state.json\n", stderr);
    return 2;
  }
  std::string text((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
  auto state = json::parse(text, nullptr, false);
  if (!state.is_object() || !state.contains("pid") || !state["pid"].is_number_integer()) {
    std::fputs("berth oci-hook: stdin is not an OCI container state with a pid\n", stderr);
    return 1;
  }
  const int pid = state["pid"].get<int>();
  const std::string bundle = state.value("bundle", "");
  std::string owner;
  if (state.contains("annotations") && state["annotations"].is_object())
    owner = state["annotations"].value("org.berth.owner", "");
  json config;
  if (!bundle.empty()) {
    std::ifstream in(std::filesystem::path(bundle) / "config.json");
    if (in) config = json::parse(in, nullptr, false);
  }
  if (owner.empty() && config.is_object() && config.contains("process") &&
      config["process"].contains("env") && config["process"]["env"].is_array()) {
    std::string job;
    for (const auto& e : config["process"]["env"]) {
      if (!e.is_string()) continue;
      auto v = e.get<std::string>();
      if (v.rfind("BERTH_OWNER=", 0) == 0) owner = v.substr(12);
      if (v.rfind("SLURM_JOB_ID=", 0) == 0) job = v.substr(13);
    }
    if (owner.empty() && !job.empty()) owner = "slurm/" + job;
  }
  if (owner.empty()) return 0;  // not a container of berth's

  json body = {{"pid", pid}};
  // Before pivot_root the container's root is its bundle's rootfs, seen from its own mounts.
  if (::geteuid() == 0 && config.is_object() && config.contains("root") &&
      config["root"].contains("path") && config["root"]["path"].is_string()) {
    std::filesystem::path root = config["root"]["path"].get<std::string>();
    if (root.is_relative()) root = std::filesystem::path(bundle) / root;
    std::error_code ec;
    auto canonical = std::filesystem::canonical(root, ec);
    if (!ec) body["rootfs"] = canonical.string();
  }
  auto out = call_until(socket, "POST", "/v1/berths/" + owner + "/attach", body.dump(), o.timeout);
  if (out.status != 0) {
    std::fprintf(stderr, "berth oci-hook: container %s (pid %d) not given %s: %s\n",
                 state.value("id", "?").c_str(), pid, owner.c_str(),
                 out.message.empty() ? "no answer from berthd" : out.message.c_str());
    return out.status;
  }
  return 0;
}

int cdi_command(const std::string& socket, const std::vector<std::string>& args) {
  std::string output;
  if (args.size() == 4 && args[1] == "spec" && args[2] == "--output") output = args[3];
  if (!(args.size() == 2 && args[1] == "spec") && output.empty()) {
    std::fputs("berthctl: usage: berthctl cdi spec [--output PATH]\n", stderr);
    return 2;
  }
  auto res = net::unix_request(socket, "GET", "/v1/cdi", {}, std::chrono::seconds(10));
  if (!res) {
    std::fprintf(stderr, "berthctl: %s\n", res.error().message.c_str());
    return 3;
  }
  auto doc = json::parse(res->body, nullptr, false);
  if (res->status != 200 || doc.is_discarded()) {
    std::fprintf(stderr, "berthctl: HTTP %u: %s\n", res->status, res->body.c_str());
    return 1;
  }
  const std::string text = doc.dump(2) + "\n";
  if (output.empty()) {
    std::fputs(text.c_str(), stdout);
    return 0;
  }
  const std::string tmp = output + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << text;
    if (!out.flush()) {
      std::fprintf(stderr, "berthctl: cannot write %s\n", tmp.c_str());
      return 1;
    }
  }
  if (std::rename(tmp.c_str(), output.c_str()) != 0) {
    std::perror(("berthctl: rename to " + output).c_str());
    std::remove(tmp.c_str());
    return 1;
  }
  return 0;
}

}  // namespace berth::ctl
