#!/bin/sh
# Slurm Prolog for berth (slurm.conf: Prolog=/usr/lib/berth/slurm/prolog.sh, PrologFlags=Alloc).
# Reserves the job's berth: exactly the GPUs Slurm gave the job, with the VFs and CPUs of their
# NUMA node(s) as the partition's profile in /etc/berth/berthd.json asks. A non-zero exit drains
# the node and requeues the job, which is what must happen when the node cannot give the job its
# devices; the reason is the one line berthctl prints on stderr (in slurmd's log).
exec /usr/bin/berthctl slurm prolog "$@"
