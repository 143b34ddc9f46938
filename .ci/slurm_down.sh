#!/usr/bin/env bash
# Stop the single-node Slurm cluster started by .ci/slurm_up.sh, by the pids in its pid
# files. A pid is signalled only while it still names the expected daemon, so a stale
# file (after a reboot) never kills an unrelated process.
set -euo pipefail

SLURM_DIR="${LLM_SWEEP_SLURM_DIR:-/tmp/llm_sweep_slurm}"
STOP_TIMEOUT_S=15

# A zombie (exited, not yet reaped by its parent) counts as stopped.
running() {
    [[ -e /proc/$1 ]] && ! grep -qs '^State:.*zombie' "/proc/$1/status"
}

stop_daemon() {
    local name=$1 pid_file="$SLURM_DIR/$1.pid" pid
    [[ -f $pid_file ]] || return 0
    pid="$(cat "$pid_file")"
    if [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$name" ]] && running "$pid"; then
        kill "$pid" 2>/dev/null || true
        local deadline=$((SECONDS + STOP_TIMEOUT_S))
        while running "$pid" && ((SECONDS < deadline)); do
            sleep 0.2
        done
        if running "$pid"; then
            echo "slurm_down.sh: $name (pid $pid) ignored SIGTERM for ${STOP_TIMEOUT_S}s; killing it" >&2
            kill -9 "$pid" 2>/dev/null || true
        fi
        echo "slurm: stopped $name (pid $pid)"
    fi
    rm -f "$pid_file"
}

# Compute node first, so the controller does not mark it down while going away.
stop_daemon slurmd
stop_daemon slurmctld
stop_daemon munged
