#!/usr/bin/env bash
# A real SLURM on this one host, for the tests (tests/integration/test_slurm.py) and for trying the
# sbatch templates: Debian's slurmctld + slurmd + munge, one controller and two slurmd "nodes"
# (n1, n2, distinct ports) on this machine, everything under $PLMSCALE_SLURM_DIR (default
# /tmp/plmscale-slurm). Idempotent: a second call finds the daemons answering and returns.
# Installs the packages when missing (root, Debian). Prints the SLURM_CONF to export.
set -euo pipefail
DIR=${PLMSCALE_SLURM_DIR:-/tmp/plmscale-slurm}
CONF=$DIR/slurm.conf
# The node names must resolve, as on a real cluster: ranks find rank 0 by its node's name.
grep -qE '^127\.0\.0\.1[[:space:]]+n1 n2$' /etc/hosts || echo "127.0.0.1 n1 n2" >> /etc/hosts
if [ -f "$CONF" ] && SLURM_CONF=$CONF timeout 10 sinfo -h >/dev/null 2>&1; then
    echo "$CONF"; exit 0
fi
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >&2
    apt-get install -y -q --no-install-recommends slurmctld slurmd slurm-client munge >&2
fi
mkdir -p "$DIR"/state "$DIR"/spool "$DIR"/log /etc/munge /var/run/munge /var/log/munge /var/lib/munge
# munge: a key of its own; --force because the Debian directories' owners are not checked here.
[ -s /etc/munge/munge.key ] || dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
chmod 400 /etc/munge/munge.key
pgrep -x munged >/dev/null || munged --force
HOST=$(hostname -s)
CPUS=$(nproc)
cat > "$CONF" <<CONF
ClusterName=plmscale
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
SlurmctldPort=16817
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool/%n
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd-%n.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
ReturnToService=2
JobRequeue=1
KillWait=30
MinJobAge=3600
NodeName=n[1-2] NodeHostname=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS State=UNKNOWN Port=[16818-16819]
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
CONF
export SLURM_CONF=$CONF
slurmctld -c -f "$CONF" >&2  # -c: no jobs left over from an earlier start
slurmd -f "$CONF" -N n1 >&2
slurmd -f "$CONF" -N n2 >&2
for _ in $(seq 60); do
    if [ "$(sinfo -h -o '%t' 2>/dev/null | sort -u | tr -d '\n')" = "idle" ]; then echo "$CONF"; exit 0; fi
    sleep 1
done
echo "start_slurm.sh: the nodes did not become idle; see $DIR/log" >&2
sinfo >&2 || true
exit 1
