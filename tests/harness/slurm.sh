# A single-node Slurm cluster for tests (sourced): munge, slurmctld and slurmd as root, GRES gpu
# backed by `mknod c 195 N` files, berth's prolog and epilog in slurm.conf.
#   slurm_start DIR PROLOG EPILOG [GPUS]   start it all under DIR (its state, logs, config)
#   slurm_stop                             stop what slurm_start started (safe to call twice)
#   slurm_wait_state JOBID STATE... [SECS] wait until squeue/sacct-less scontrol shows a state
# Needs root and Debian's slurm-wlm and munge; slurm_skip_reason says why not, or is empty.
# shellcheck shell=bash

slurm_skip_reason() {
  [ "$(id -u)" = 0 ] || { echo "needs root"; return; }
  for b in slurmctld slurmd munged sbatch scontrol; do
    command -v "$b" >/dev/null 2>&1 || [ -x "/usr/sbin/$b" ] || { echo "$b is not installed (apt-get install slurm-wlm munge)"; return; }
  done
}

SLURM_DIR=
slurm_start() {
  local dir=$1 prolog=$2 epilog=$3 gpus=${4:-8}
  SLURM_DIR=$dir
  mkdir -p "$dir"/{state,spool,run,dev,munge}
  local i node
  for ((i = 0; i < gpus; i++)); do
    [ -e "$dir/dev/nvidia$i" ] || mknod "$dir/dev/nvidia$i" c 195 "$i"
  done
  node=$(hostname -s)
  # munge, private to this cluster: its own key, socket and pid file.
  dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
  chown -R munge:munge "$dir/munge" && chmod 755 "$dir/munge" && chmod 400 "$dir/munge/munge.key"
  runuser -u munge -- /usr/sbin/munged --key-file="$dir/munge/munge.key" \
    --socket="$dir/munge/munge.sock" --pid-file="$dir/munge/munged.pid" \
    --log-file="$dir/munge/munged.log" --seed-file="$dir/munge/seed" || return 1
  local cpus mem
  cpus=$(nproc)
  mem=$(awk '/MemTotal/ {print int($2 / 1024 / 2)}' /proc/meminfo)
  cat >"$dir/slurm.conf" <<CONF
ClusterName=berthtest
SlurmctldHost=$node
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$dir/munge/munge.sock
CredType=cred/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd.pid
SlurmctldPort=16817
SlurmdPort=16818
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
GresTypes=gpu
PrologFlags=Alloc
Prolog=$prolog
Epilog=$epilog
KillWait=2
MinJobAge=300
InactiveLimit=0
OverTimeLimit=0
MessageTimeout=30
NodeName=$node CPUs=$cpus RealMemory=$mem Gres=gpu:$gpus State=UNKNOWN
PartitionName=gpu Nodes=$node Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
CONF
  cat >"$dir/gres.conf" <<CONF
NodeName=$node Name=gpu File=$dir/dev/nvidia[0-$((gpus - 1))]
CONF
  export SLURM_CONF=$dir/slurm.conf
  /usr/sbin/slurmctld -i -f "$dir/slurm.conf" || return 1
  /usr/sbin/slurmd -f "$dir/slurm.conf" || return 1
  for ((i = 0; i < 100; i++)); do
    if scontrol show node "$node" 2>/dev/null | grep -qE 'State=(IDLE|MIXED|ALLOCATED)'; then
      return 0
    fi
    sleep 0.2
  done
  echo "slurm_start: node $node did not come up" >&2
  tail -20 "$dir/slurmctld.log" "$dir/slurmd.log" >&2
  return 1
}

slurm_stop() {
  [ -n "$SLURM_DIR" ] || return 0
  local f
  for f in slurmd slurmctld; do
    [ -f "$SLURM_DIR/run/$f.pid" ] && kill "$(cat "$SLURM_DIR/run/$f.pid")" 2>/dev/null
  done
  sleep 0.5
  for f in slurmd slurmctld; do
    [ -f "$SLURM_DIR/run/$f.pid" ] && kill -9 "$(cat "$SLURM_DIR/run/$f.pid")" 2>/dev/null
  done
  [ -f "$SLURM_DIR/munge/munged.pid" ] && kill "$(cat "$SLURM_DIR/munge/munged.pid")" 2>/dev/null
  rm -f "$SLURM_DIR"/run/*.pid
  SLURM_DIR=
  return 0
}

# The job's state as slurmctld has it (PENDING, RUNNING, COMPLETED, CANCELLED, TIMEOUT, ...).
slurm_job_state() {
  scontrol -o show job "$1" 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p'
}

slurm_wait_state() {  # JOBID SECS STATE...
  local job=$1 secs=$2 i s
  shift 2
  for ((i = 0; i < secs * 5; i++)); do
    s=$(slurm_job_state "$job")
    for want in "$@"; do [ "$s" = "$want" ] && return 0; done
    sleep 0.2
  done
  echo "job $job is '$s', not $*" >&2
  return 1
}
