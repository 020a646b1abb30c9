#!/usr/bin/env bash
# A one-node SLURM cluster and a PostgreSQL server on localhost: what CI's slow tests run
# against, and the recipe for trying emotion_lab's cluster paths on one machine.
#
#   sudo scripts/cluster.sh          # install (Debian), configure, start; prints the URLs
#   sinfo; squeue                    # the cluster answers
#   export EMOTION_LAB_POSTGRES_URL=postgresql://emotion_lab:emotion_lab@localhost/emotion_lab
#
# Idempotent: installs only what is missing, writes its config once (kept if present), starts
# only what is not running. CPU-only: no GPUs in the node's gres, so jobs ask for none
# (hydra.launcher.gpus_per_node=0). Accounting is off (it needs slurmdbd and MySQL); the job
# completion log, /var/log/slurm/jobcomp.log, records every finished job instead, and
# finished jobs stay visible to `scontrol show job` for an hour (MinJobAge).
set -euo pipefail
sudo=$([ "$(id -u)" = 0 ] || echo sudo)
as_user() { if [ "$(id -u)" = 0 ]; then runuser -u "$1" -- "${@:2}"; else sudo -u "$1" "${@:2}"; fi; }

packages=()
command -v slurmctld >/dev/null || packages+=(slurm-wlm)
command -v munged >/dev/null || packages+=(munge)
command -v pg_ctlcluster >/dev/null || packages+=(postgresql)
if [ ${#packages[@]} -gt 0 ]; then
  $sudo apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${packages[@]}" >/dev/null
fi

# munge: the key the daemons authenticate with
if [ ! -s /etc/munge/munge.key ]; then
  $sudo mungekey --create --keyfile=/etc/munge/munge.key 2>/dev/null \
    || $sudo dd if=/dev/urandom of=/etc/munge/munge.key bs=1k count=1 status=none
  $sudo chown munge:munge /etc/munge/munge.key && $sudo chmod 400 /etc/munge/munge.key
fi
if ! pgrep -x munged >/dev/null; then
  $sudo mkdir -p /run/munge && $sudo chown munge:munge /run/munge
  as_user munge /usr/sbin/munged
fi

# slurm: one node with this machine's CPUs and most of its memory; two 1-CPU jobs can run
# side by side (cons_tres, cores as the unit)
conf=/etc/slurm/slurm.conf
if [ ! -s "$conf" ]; then
  memory=$(( $(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo) - 1024 ))
  $sudo mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
  $sudo tee "$conf" >/dev/null <<CONF
ClusterName=emotionlab
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
JobRequeue=1
MinJobAge=3600
KillWait=30
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=/var/log/slurm/jobcomp.log
NodeName=localhost CPUs=$(nproc) RealMemory=$memory State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
fi
pgrep -x slurmctld >/dev/null || $sudo slurmctld
pgrep -x slurmd >/dev/null || $sudo slurmd
for _ in $(seq 30); do
  state=$(sinfo -h -N -o %t 2>/dev/null | head -1 || true)
  case "$state" in idle|mix|alloc) break ;; down*|drain*) $sudo scontrol update \
    nodename=localhost state=resume 2>/dev/null || true ;; esac
  sleep 1
done
sinfo -h -N -o %t | grep -Eq '^(idle|mix|alloc)' \
  || { echo "slurm did not come up: see /var/log/slurm/"; sinfo -N || true; exit 1; }

# postgresql: the server, a role and a database for shared Optuna studies
version=$(ls /etc/postgresql 2>/dev/null | sort -n | tail -1)
$sudo pg_ctlcluster "$version" main start 2>/dev/null || true
pg_isready -q -h localhost || { sleep 2; pg_isready -h localhost; }
psql_do() { (cd / && as_user postgres psql -qtAc "$1"); }
[ "$(psql_do "SELECT 1 FROM pg_roles WHERE rolname='emotion_lab'")" = 1 ] \
  || psql_do "CREATE ROLE emotion_lab LOGIN CREATEDB PASSWORD 'emotion_lab'"
[ "$(psql_do "SELECT 1 FROM pg_database WHERE datname='emotion_lab'")" = 1 ] \
  || psql_do "CREATE DATABASE emotion_lab OWNER emotion_lab"

echo "slurm: $(sinfo -h -o '%P %D node(s) %c CPUs %t')"
echo "postgresql: postgresql://emotion_lab:emotion_lab@localhost/emotion_lab"
