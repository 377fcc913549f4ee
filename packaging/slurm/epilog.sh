#!/bin/sh
# Slurm Epilog for berth (slurm.conf: Epilog=/usr/lib/berth/slurm/epilog.sh).
# Releases the job's berth: detaches whatever is still attached and frees GPUs, VFs, CPUs and
# pool addresses. Repeating it is harmless. A non-zero exit means the host could not be restored:
# Slurm drains the node, so that no other job gets a half-cleaned berth.
exec /usr/bin/berthctl slurm epilog "$@"
