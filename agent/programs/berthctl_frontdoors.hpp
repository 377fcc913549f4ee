#pragma once
// berthctl's front doors for other programs: Slurm's prolog and epilog, and the OCI runtime hook.
// Each returns the process's exit status.
#include <string>
#include <vector>

namespace berth::ctl {

// `berthctl slurm prolog|epilog [--timeout S] [--config PATH]`, with the job's environment.
// Exit status: 0 done (or nothing to do); 1 berthd refused (the node must not run the job, or
// could not be restored); 2 usage; 3 berthd unreachable within the timeout.
int slurm_command(const std::string& socket, const std::vector<std::string>& args, bool json);

// `berthctl oci-hook [--timeout S]`: the container's state on stdin (createRuntime stage).
// Exit status: 0 attached or no owner found; 1 the attach failed; 3 berthd unreachable.
int oci_hook(const std::string& socket, const std::vector<std::string>& args);

// `berthctl cdi spec [--output PATH]`: the CDI spec from berthd, printed or written atomically.
int cdi_command(const std::string& socket, const std::vector<std::string>& args);

}  // namespace berth::ctl
