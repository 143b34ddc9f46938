#!/usr/bin/env bash
# Start a single-node Slurm cluster on this machine (controller and compute node in one)
# so the test suite submits real jobs with sbatch. Run as root on Debian 12. Does nothing
# when a node already serves jobs; otherwise (re)starts the daemons from a clean state.
# Stop it with .ci/slurm_down.sh.
set -euo pipefail

SLURM_DIR="${LLM_SWEEP_SLURM_DIR:-/tmp/llm_sweep_slurm}"
SLURM_CONF=/etc/slurm/slurm.conf
CONF_MARKER="# Written by llm_sweep's .ci/slurm_up.sh"
READY_TIMEOUT_S=30
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# True while the pid file (default: ours) names a live process of that daemon. A killed
# daemon lingers as a zombie until reaped: it keeps its name but serves nothing.
daemon_alive() {
    local name=$1 pid_file=${2:-$SLURM_DIR/$1.pid} pid
    [[ -f $pid_file ]] || return 1
    pid="$(cat "$pid_file")"
    [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$name" ]] &&
        ! grep -qs '^State:.*zombie' "/proc/$pid/status"
}

# True when some node is idle, partly or fully allocated: the cluster takes jobs.
serving() {
    command -v sinfo >/dev/null || return 1
    # Our cluster needs all three daemons. Without slurmd, sinfo still says idle for minutes;
    # without slurmctld or munged, it hangs retrying (10 s and ~50 s).
    if [[ -f $SLURM_CONF ]] && grep -qF "$CONF_MARKER" "$SLURM_CONF" &&
        ! { daemon_alive slurmctld && daemon_alive slurmd &&
            daemon_alive munged /run/munge/munged.pid; }; then
        return 1
    fi
    local states
    states="$(timeout 20 sinfo -h -o %t 2>/dev/null)" || return 1
    grep -qxE 'idle|mix|alloc' <<<"$states"
}

if serving; then
    echo "slurm: already up ($(sinfo -h -o '%P %D node(s) %t' | tr '\n' ' '))"
    exit 0
fi
if [[ $EUID -ne 0 ]]; then
    echo "slurm_up.sh: run as root (it installs packages and starts daemons)" >&2
    exit 1
fi
# Never overwrite the configuration of a real cluster whose nodes are merely busy or down.
if [[ -f $SLURM_CONF ]] && ! grep -qF "$CONF_MARKER" "$SLURM_CONF"; then
    echo "slurm_up.sh: $SLURM_CONF was not written by this script; refusing to replace it" >&2
    exit 1
fi

install_packages() {
    local missing=0 tool
    for tool in slurmctld slurmd sinfo munged; do
        command -v "$tool" >/dev/null || missing=1
    done
    [[ $missing -eq 0 ]] && return
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
        slurmctld slurmd slurm-client munge >/dev/null
}

munge_works() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

start_munge() {
    install -d -o munge -g munge -m 700 /etc/munge /var/lib/munge /var/log/munge
    install -d -o munge -g munge -m 755 /run/munge
    if [[ ! -s /etc/munge/munge.key ]]; then
        head -c 1024 /dev/urandom >/etc/munge/munge.key
    fi
    chown munge:munge /etc/munge/munge.key
    chmod 400 /etc/munge/munge.key
    # Probe munged only when it runs: the munge client retries a dead socket for seconds.
    daemon_alive munged /run/munge/munged.pid && munge_works && return
    su -s /bin/sh munge -c "/usr/sbin/munged --force"
    local _
    for _ in $(seq 50); do
        munge_works && break
        sleep 0.1
    done
    munge_works || { echo "slurm_up.sh: munged did not start; see /var/log/munge" >&2; exit 1; }
    # Recorded so that slurm_down.sh stops only the munged started here.
    cp /run/munge/munged.pid "$SLURM_DIR/munged.pid"
}

write_slurm_conf() {
    local host cpus mem_mib
    host="$(hostname)"
    cpus="$(nproc)"
    # slurmd drains a node that reports less memory than configured: stay 5% under.
    mem_mib=$(awk '/^MemTotal:/ {printf "%d", $2 / 1024 * 0.95}' /proc/meminfo)
    mkdir -p "$(dirname "$SLURM_CONF")"
    cat >"$SLURM_CONF" <<EOF
$CONF_MARKER: a single-node test cluster.
ClusterName=local
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
MailProg=/bin/true
AuthType=auth/munge
# A requeued job waits cred_expire seconds before it may start again (default 120), and
# the schedulers wake every 60 s / 30 s by default: keep the test cluster responsive.
AuthInfo=cred_expire=5
SchedulerParameters=sched_interval=2,bf_interval=2
# submitit jobs ignore SIGTERM: a cancelled job dies at SIGKILL, KillWait (default 30 s) later.
KillWait=5
StateSaveLocation=$SLURM_DIR/state
SlurmdSpoolDir=$SLURM_DIR/spool
SlurmctldPidFile=$SLURM_DIR/slurmctld.pid
SlurmdPidFile=$SLURM_DIR/slurmd.pid
SlurmctldLogFile=$SLURM_DIR/slurmctld.log
SlurmdLogFile=$SLURM_DIR/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mib State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
EOF
}

print_logs() {
    local log
    for log in "$SLURM_DIR/slurmctld.log" "$SLURM_DIR/slurmd.log"; do
        echo "----- $log" >&2
        tail -n 40 "$log" >&2 2>/dev/null || echo "(missing)" >&2
    done
}

install_packages
# Daemons left from an earlier start are not serving: restart them on fresh state, since
# jobs saved by a cluster that went away only confuse the tests.
bash "$HERE/slurm_down.sh" >/dev/null
rm -rf "$SLURM_DIR/state" "$SLURM_DIR/spool" "$SLURM_DIR"/*.log
mkdir -p "$SLURM_DIR/state" "$SLURM_DIR/spool"
start_munge
write_slurm_conf
/usr/sbin/slurmctld
/usr/sbin/slurmd

deadline=$((SECONDS + READY_TIMEOUT_S))
until serving; do
    if ((SECONDS >= deadline)); then
        echo "slurm_up.sh: no idle node after ${READY_TIMEOUT_S}s; sinfo: $(sinfo -h 2>&1 || true)" >&2
        print_logs
        exit 1
    fi
    sleep 0.5
done
echo "slurm: cluster 'local' up on $(hostname): $(nproc) CPUs, partition debug," \
    "state and logs in $SLURM_DIR"
