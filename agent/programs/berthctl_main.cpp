// berthctl: the command line for berthd's control API. Each command is one API call.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "agent/programs/berthctl_format.hpp"
#include "agent/programs/berthctl_frontdoors.hpp"
#include "net/http_client.hpp"

namespace {

constexpr const char* kUsage = R"(usage: berthctl [--socket PATH] [--json] COMMAND [ARGS]

Commands (each maps to one call of berthd's API, see docs/api.md):
  inventory                      devices by NUMA node, free or held by whom
  rescan                         read sysfs and /proc again now (after creating or destroying MIG
                                 instances, which send no uevent; SIGHUP to berthd does the same)
  list                           every berth
  runners                        CI runners from GitHub webhooks: queued (in order), starting,
                                 running, finished; flavor, job, runner name, berth, times
  show OWNER                     one berth
  create OWNER [options]         reserve a berth (repeating the same create is harmless)
      --gpus N | --gpu-ids LIST  N GPUs, or these GPUs (indexes or PCI addresses, comma separated)
      --vfs N                    N InfiniBand/RoCE virtual functions
      --numa single|prefer|any   NUMA policy (default single: everything on one node)
      --cpus numa|N              the whole NUMA node (default) or N CPUs
      --shared                   share the GPUs with other shared berths
      --pool NAME | --address CIDR   address of the (first) VF: from a pool, or given
      --gateway IP               default route via IP
      --route CIDR,via=IP        an extra route (repeatable)
      --ifname NAME              interface name inside the container (default ib0)
      --mtu N                    MTU inside the container
      --driver-check off|warn|refuse   compare the container's libcuda.so.1 with the host's
                                 driver at attach (default: the config's driver_check, warn)
      --standing --lxc NAME [--lxcpath P] | --runc ID | --apptainer NAME
                                 a standing berth (lab/<name>): attached whenever this container
                                 runs, detached when it stops, kept reserved until released
      --release-on-exit          (manual/ berths) release when the attached container exits;
                                 github/ berths always are, slurm/ berths wait for the epilog
  attach OWNER TARGET            attach into a running container, found now (never a cached pid):
      --pid PID                  a process in the container (its init, or any of its processes)
      --runc ID                  a runc (or crun: runc_root) container, by `runc state ID`
      --lxc NAME [--lxcpath P]   an LXC container, by `lxc-info -n NAME -H -p`
      --apptainer NAME           an apptainer instance, by `apptainer instance list --json`
  detach OWNER                   take everything back out of the container; the berth stays reserved
  release OWNER                  detach if attached, then free the berth
  events [--since SEQ] [--follow]   berth state changes, inventory, link and udev events and
                                 warnings, one per line (like ip monitor); --since SEQ starts
                                 after event SEQ (default: the oldest kept), --follow waits for
                                 new ones until interrupted; --json prints each event's JSON
  slurm prolog|epilog [--timeout S] [--config PATH]
                                 for slurmd's Prolog/Epilog, with the job's environment
                                 (SLURM_JOB_ID, SLURM_JOB_UID, SLURM_JOB_GPUS, ...): reserve the
                                 job's berth (Slurm's GPUs, the partition's profile), or release
                                 it; repeating either is harmless; waits up to S seconds
                                 (slurm.prolog_timeout_s of --config, default 30) for berthd
  standing-start (--lxc NAME [--lxcpath P] | --runc ID | --apptainer NAME)
                                 a container started: attach its standing berths now (for
                                 LXC's lxc.hook.start-host, packaging/lxc/)
  check-driver TARGET            the host's NVIDIA driver against the container's libcuda.so.1
                                 (TARGET as for attach); exit 0 when they match
  cdi spec [--output PATH]       the CDI spec (kind berth.dev/berth) of the reserved berths: one
                                 device per berth (slurm/42 -> berth.dev/berth=slurm-42); with
                                 --output, written atomically (e.g. /var/run/cdi/berth.json)
  oci-hook [--timeout S]         OCI createRuntime hook (runc, crun, podman): the container
                                 state on stdin; attaches the berth named by the annotation
                                 org.berth.owner, else BERTH_OWNER or SLURM_JOB_ID in the
                                 bundle's process.env; no owner: does nothing

OWNER is slurm/<jobid>, github/<job id>, manual/<name> or lab/<name>.
Socket: --socket PATH, else $BERTH_SOCKET, else /run/berth/berth.sock.
Exit status: 0 done, 1 berthd refused (the message says why), 2 usage error, 3 berthd unreachable.
(slurm prolog: non-zero means the node must not run the job; slurm epilog: non-zero means the
host could not be restored, and Slurm drains the node.)
)";

[[noreturn]] void usage_error(const std::string& msg) {
  std::fprintf(stderr, "berthctl: %s\n(see berthctl --help)\n", msg.c_str());
  std::exit(2);
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos <= s.size()) {
    auto next = s.find(sep, pos);
    if (next == std::string::npos) next = s.size();
    out.push_back(s.substr(pos, next - pos));
    pos = next + 1;
  }
  return out;
}

int to_int(const std::string& flag, const std::string& v) {
  char* end = nullptr;
  long n = std::strtol(v.c_str(), &end, 10);
  if (v.empty() || *end != '\0' || n < 0 || n > 1000000)
    usage_error(flag + " needs a number, got '" + v + "'");
  return static_cast<int>(n);
}

nlohmann::json create_body(const std::vector<std::string>& args) {
  nlohmann::json body = nlohmann::json::object();
  nlohmann::json net = nlohmann::json::object();
  nlohmann::json standing = nlohmann::json::object();
  bool is_standing = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= args.size()) usage_error(a + " needs a value");
      return args[++i];
    };
    if (a == "--gpus")
      body["gpus"] = to_int(a, value());
    else if (a == "--gpu-ids") {
      body["gpu_ids"] = nlohmann::json::array();
      for (const auto& id : split(value(), ',')) body["gpu_ids"].push_back(id);
    } else if (a == "--vfs")
      body["vfs"] = to_int(a, value());
    else if (a == "--numa")
      body["numa"] = value();
    else if (a == "--cpus") {
      auto v = value();
      body["cpus"] = v == "numa" ? nlohmann::json("numa") : nlohmann::json(to_int(a, v));
    } else if (a == "--shared")
      body["shared"] = true;
    else if (a == "--driver-check")
      body["driver_check"] = value();
    else if (a == "--standing")
      is_standing = true;
    else if (a == "--lxc" || a == "--lxcpath" || a == "--runc" || a == "--apptainer")
      standing[a.substr(2)] = value();
    else if (a == "--release-on-exit")
      body["release_on_exit"] = true;
    else if (a == "--pool")
      net["pool"] = value();
    else if (a == "--address")
      net["address"] = value();
    else if (a == "--gateway")
      net["gateway"] = value();
    else if (a == "--ifname")
      net["ifname"] = value();
    else if (a == "--mtu")
      net["mtu"] = to_int(a, value());
    else if (a == "--route") {
      auto parts = split(value(), ',');
      if (parts.size() != 2 || parts[1].rfind("via=", 0) != 0)
        usage_error("--route takes CIDR,via=IP");
      net["routes"].push_back({{"dst", parts[0]}, {"via", parts[1].substr(4)}});
    } else
      usage_error("create: unknown option '" + a + "'");
  }
  if (!net.empty()) body["network"] = net;
  if (is_standing != !standing.empty())
    usage_error(
        "a standing berth needs --standing and its container (--lxc NAME, --runc ID or "
        "--apptainer NAME)");
  if (is_standing) body["standing"] = standing;
  return body;
}

}  // namespace

int main(int argc, char** argv) {
  std::string socket =
      std::getenv("BERTH_SOCKET") ? std::getenv("BERTH_SOCKET") : "/run/berth/berth.sock";
  bool json = false;
  std::vector<std::string> args;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    if (a == "--json")
      json = true;
    else if (a == "--socket") {
      if (i + 1 >= argc) usage_error("--socket needs a path");
      socket = argv[++i];
    } else
      args.push_back(a);
  }
  if (args.empty()) usage_error("no command given");
  const std::string cmd = args[0];
  auto owner_arg = [&]() -> std::string {
    if (args.size() < 2 || args[1].rfind("--", 0) == 0) usage_error(cmd + " needs an OWNER");
    return args[1];
  };
  std::string method = "GET";
  std::string target;
  std::string body;
  if (cmd == "slurm") return berth::ctl::slurm_command(socket, args, json);
  if (cmd == "oci-hook") return berth::ctl::oci_hook(socket, args);
  if (cmd == "cdi") return berth::ctl::cdi_command(socket, args);
  if (cmd == "standing-start") {
    nlohmann::json b = nlohmann::json::object();
    for (size_t i = 1; i + 1 < args.size(); i += 2) {
      if (args[i] != "--lxc" && args[i] != "--lxcpath" && args[i] != "--runc" &&
          args[i] != "--apptainer")
        usage_error("standing-start (--lxc NAME [--lxcpath P] | --runc ID | --apptainer NAME)");
      b[args[i].substr(2)] = args[i + 1];
    }
    if (b.empty() || args.size() % 2 == 0)
      usage_error("standing-start (--lxc NAME [--lxcpath P] | --runc ID | --apptainer NAME)");
    auto res = berth::net::unix_request(socket, "POST", "/v1/standing/start", b.dump(),
                                        std::chrono::seconds(60));
    if (!res) {
      std::fprintf(stderr, "berthctl: %s\n", res.error().message.c_str());
      return 3;
    }
    std::fputs(res->body.c_str(), stdout);
    return res->status == 200 ? 0 : 1;
  }
  if (cmd == "check-driver") {
    std::string query;
    for (size_t i = 1; i + 1 < args.size(); i += 2) {
      static const std::map<std::string, std::string> keys{{"--pid", "pid"},
                                                           {"--runc", "runc"},
                                                           {"--lxc", "lxc"},
                                                           {"--lxcpath", "lxcpath"},
                                                           {"--apptainer", "apptainer"}};
      auto k = keys.find(args[i]);
      if (k == keys.end())
        usage_error(
            "check-driver (--pid P | --runc ID | --lxc NAME [--lxcpath P] | --apptainer NAME)");
      query += (query.empty() ? "?" : "&") + k->second + "=" + args[i + 1];
    }
    if (query.empty() || args.size() % 2 == 0)
      usage_error(
          "check-driver (--pid P | --runc ID | --lxc NAME [--lxcpath P] | --apptainer NAME)");
    auto res = berth::net::unix_request(socket, "GET", "/v1/check-driver" + query);
    if (!res) {
      std::fprintf(stderr, "berthctl: %s\n", res.error().message.c_str());
      return 3;
    }
    auto doc = nlohmann::json::parse(res->body, nullptr, false);
    if (json) std::fputs(res->body.c_str(), stdout);
    if (res->status != 200 || doc.is_discarded()) {
      std::fprintf(
          stderr, "berthctl: %s\n",
          doc.is_discarded() ? res->body.c_str() : doc["error"].value("message", "error").c_str());
      return 1;
    }
    if (!json)
      std::printf("%s: %s\n", doc.value("status", "").c_str(), doc.value("message", "").c_str());
    return doc.value("status", "") == "match" ? 0 : 1;
  }
  if (cmd == "events") {
    uint64_t since = 0;
    bool follow = false;
    for (size_t i = 1; i < args.size(); ++i) {
      if (args[i] == "--follow")
        follow = true;
      else if (args[i] == "--since" && i + 1 < args.size())
        since = static_cast<uint64_t>(to_int("--since", args[++i]));
      else
        usage_error("events [--since SEQ] [--follow]");
    }
    std::string path = "/v1/events?since=" + std::to_string(since) + (follow ? "" : "&follow=0");
    auto status = berth::net::unix_event_stream(socket, path, [&](const std::string& data) {
      if (json) {
        std::printf("%s\n", data.c_str());
      } else {
        auto ev = nlohmann::json::parse(data, nullptr, false);
        std::fputs(ev.is_discarded() ? (data + "\n").c_str() : berth::ctl::format_event(ev).c_str(),
                   stdout);
      }
      std::fflush(stdout);
      return true;
    });
    if (!status) {
      std::fprintf(stderr, "berthctl: %s\n", status.error().message.c_str());
      return 3;
    }
    return *status == 200 ? 0 : 1;
  }
  if (cmd == "rescan") {
    if (args.size() != 1) usage_error("rescan takes no arguments");
    method = "POST";
    target = "/v1/inventory/rescan";
  } else if (cmd == "inventory" || cmd == "list" || cmd == "runners") {
    if (args.size() != 1) usage_error(cmd + " takes no arguments");
    target = cmd == "inventory" ? "/v1/inventory" : cmd == "runners" ? "/v1/runners" : "/v1/berths";
  } else if (cmd == "show") {
    target = "/v1/berths/" + owner_arg();
    if (args.size() != 2) usage_error("show takes only OWNER");
  } else if (cmd == "create") {
    method = "PUT";
    target = "/v1/berths/" + owner_arg();
    body = create_body({args.begin() + 2, args.end()}).dump();
  } else if (cmd == "attach") {
    method = "POST";
    target = "/v1/berths/" + owner_arg() + "/attach";
    nlohmann::json b = nlohmann::json::object();
    for (size_t i = 2; i < args.size(); ++i) {
      const std::string& a = args[i];
      if (i + 1 >= args.size()) usage_error(a + " needs a value");
      if (a == "--pid")
        b["pid"] = to_int("--pid", args[++i]);
      else if (a == "--runc")
        b["runc"] = args[++i];
      else if (a == "--lxc")
        b["lxc"] = args[++i];
      else if (a == "--lxcpath")
        b["lxcpath"] = args[++i];
      else if (a == "--apptainer")
        b["apptainer"] = args[++i];
      else
        usage_error(
            "attach OWNER (--pid PID | --runc ID | --lxc NAME [--lxcpath P] | --apptainer NAME)");
    }
    if (b.empty())
      usage_error(
          "attach OWNER (--pid PID | --runc ID | --lxc NAME [--lxcpath P] | --apptainer NAME)");
    body = b.dump();
  } else if (cmd == "detach" || cmd == "release") {
    method = cmd == "detach" ? "POST" : "DELETE";
    target = "/v1/berths/" + owner_arg() + (cmd == "detach" ? "/detach" : "");
    if (args.size() != 2) usage_error(cmd + " takes only OWNER");
  } else {
    usage_error("unknown command '" + cmd + "'");
  }
  if (target.find('/', 11) == std::string::npos && target.rfind("/v1/berths/", 0) == 0)
    usage_error("OWNER must look like slurm/<jobid>, github/<id> or manual/<name>");

  auto res = berth::net::unix_request(socket, method, target, body);
  if (!res) {
    std::fprintf(stderr, "berthctl: %s\n", res.error().message.c_str());
    return 3;
  }
  nlohmann::json doc = nlohmann::json::parse(res->body, nullptr, false);
  if (res->status >= 400 || doc.is_discarded()) {
    if (json) std::fputs(res->body.c_str(), stdout);
    if (doc.is_discarded() || !doc.contains("error"))
      std::fprintf(stderr, "berthctl: HTTP %u: %s\n", res->status, res->body.c_str());
    else
      std::fprintf(stderr, "berthctl: %s: %s\n", doc["error"].value("code", "error").c_str(),
                   doc["error"].value("message", "").c_str());
    return 1;
  }
  if (json) {
    std::fputs(res->body.c_str(), stdout);
    return 0;
  }
  if (cmd == "rescan") {
    std::printf("%s: %zu GPUs, %zu VFs, %zu HCAs\n",
                doc.value("changed", false) ? "inventory changed" : "inventory unchanged",
                doc.value("gpus", size_t{0}), doc.value("vfs", size_t{0}),
                doc.value("hcas", size_t{0}));
    for (const auto& w : doc.value("warnings", nlohmann::json::array()))
      std::printf("warning: %s\n", w.get<std::string>().c_str());
  } else if (cmd == "inventory")
    std::fputs(berth::ctl::format_inventory(doc).c_str(), stdout);
  else if (cmd == "list")
    std::fputs(berth::ctl::format_berth_list(doc["berths"]).c_str(), stdout);
  else if (cmd == "runners")
    std::fputs(berth::ctl::format_runners(doc).c_str(), stdout);
  else
    std::fputs(berth::ctl::format_berth(doc["berth"]).c_str(), stdout);
  return 0;
}
