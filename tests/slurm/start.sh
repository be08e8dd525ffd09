#!/usr/bin/env bash
# Start a private single-node SLURM (slurmctld + slurmd, and munged if none runs) on this machine,
# for tests/test_slurm.py. Idempotent: a second call finds the cluster up and only prints its env.
# Everything it writes lives in $JSARAG_SLURM_STATE (default /tmp/jsarag-slurm): slurm.conf, spool,
# state, logs, pid files; /etc/slurm is not touched. tests/slurm/stop.sh stops only what this
# script started and removes that folder. Missing packages are installed from Debian when run as
# root (CI); otherwise it exits 3 ("cannot install"), which the test turns into a skip.
# Prints `export SLURM_CONF=...` on stdout: the clients (sbatch, squeue) need it.
set -euo pipefail
STATE=${JSARAG_SLURM_STATE:-/tmp/jsarag-slurm}
MAXTIME=${JSARAG_SLURM_MAXTIME:-20}  # minutes: the partition's hard limit on every job
GPUS=2  # countable GPUs of the node, no devices (see gres.conf below)
log() { echo "[slurm/start] $*" >&2; }

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    log "SLURM is not installed and cannot be installed here (needs root and apt-get)"; exit 3
  fi
  log "installing slurmctld slurmd slurm-client munge from Debian"
  export DEBIAN_FRONTEND=noninteractive
  timeout 300 apt-get update -qq >&2 || { log "apt-get update failed"; exit 3; }
  timeout 600 apt-get install -y -qq slurmctld slurmd slurm-client munge >&2 || { log "apt-get install failed"; exit 3; }
fi
[ "$(id -u)" = 0 ] || { log "slurmd must run as root"; exit 3; }

mkdir -p "$STATE"/{spool,state,log}
chmod 755 "$STATE"
CONF=$STATE/slurm.conf
alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# munge: use a running munged, else start the system one and remember that we did
if ! pgrep -x munged >/dev/null; then
  KEY=/etc/munge/munge.key
  if [ ! -f "$KEY" ]; then
    (command -v mungekey >/dev/null && mungekey --create --keyfile "$KEY") || dd if=/dev/urandom of="$KEY" bs=1 count=1024 status=none
    touch "$STATE/created_munge_key"
  fi
  chown munge:munge "$KEY" && chmod 0400 "$KEY"
  mkdir -p /run/munge && chown munge:munge /run/munge && chmod 0755 /run/munge
  mkdir -p "$STATE/munge" && chown munge:munge "$STATE/munge"
  runuser -u munge -- munged --pid-file="$STATE/munge/munged.pid"
  for _ in $(seq 50); do [ -s "$STATE/munge/munged.pid" ] && break; sleep 0.1; done
  cp "$STATE/munge/munged.pid" "$STATE/munged.pid"
  log "started munged (pid $(cat "$STATE/munged.pid"))"
fi

if ! [ -f "$CONF" ]; then
  HOST=$(hostname -s)
  NODE=$(slurmd -C | head -1 | sed 's/ UpTime=.*//')
  MEM=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$NODE")
  cat > "$CONF.tmp" <<CONF
# written by tests/slurm/start.sh for the jsarag tests
ClusterName=jsarag-test
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$STATE/state
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$((MEM / 4))
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
SchedulerType=sched/backfill
ReturnToService=2
MinJobAge=300
KillWait=30
SlurmctldTimeout=30
SlurmdTimeout=30
MpiDefault=none
GresTypes=gpu
$NODE Gres=gpu:$GPUS NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=$MAXTIME State=UP
CONF
  # $GPUS countable GPUs without devices (no File=): a job asks for them as on a GPU cluster and its
  # ranks bind to them by rank; they train on the CPU (tests/test_slurm.py, the preemption test)
  echo "NodeName=$HOST Name=gpu File=/dev/null,/dev/zero" > "$STATE/gres.conf"
  mv "$CONF.tmp" "$CONF"
fi
# The plugin's job step drops SLURM_CONF before its inner srun, so the config must also be found
# at the default path: link it there unless a config is already there (then it must be ours).
ETC=/etc/slurm/slurm.conf
if [ ! -e "$ETC" ] && [ ! -L "$ETC" ]; then
  mkdir -p /etc/slurm && ln -s "$CONF" "$ETC" && log "linked $ETC -> $CONF"
elif [ "$(readlink "$ETC")" != "$CONF" ]; then
  log "$ETC exists and is not ours: this machine has its own SLURM config"; exit 1
fi
export SLURM_CONF=$CONF

if ! alive "$STATE/slurmctld.pid"; then
  slurmctld -f "$CONF" -i
  log "started slurmctld"
fi
if ! alive "$STATE/slurmd.pid"; then
  slurmd -f "$CONF"
  log "started slurmd"
fi
# up when the node is idle (a few seconds after start)
for _ in $(seq 60); do
  if timeout 5 sinfo -h -o %t 2>/dev/null | grep -qx "idle\|mix\|alloc"; then
    echo "export SLURM_CONF=$CONF"; exit 0
  fi
  timeout 5 scontrol update NodeName="$(hostname -s)" State=RESUME >/dev/null 2>&1 || true
  sleep 1
done
log "the node did not come up; see $STATE/log"; exit 1
