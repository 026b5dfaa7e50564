#!/usr/bin/env bash
# Stop the one-node SLURM cluster that .ci/slurm/start-slurm.sh started: slurmd, slurmctld,
# slurmdbd, and MariaDB and munged where that script started them (not ones that were already
# running). Each daemon is ended by the process id in its pid file, never by name. Packages,
# configuration and accounting data stay, so the next start takes seconds.
set -euo pipefail

RUN=/run/lfwcnn-slurm
[[ $EUID -eq 0 ]] || { echo "stop-slurm: error: run as root" >&2; exit 1; }

# running PID: that process exists and is not a zombie (left to an init that does not reap)
running() {
    local state=""
    [[ -r /proc/$1/stat ]] && read -r _ _ state _ <"/proc/$1/stat" 2>/dev/null && [[ $state != Z ]]
}
# stop PIDFILE COMM: end that process if it still is COMM, and wait up to 20 s for it
stop() {
    local pid
    [[ -s $1 ]] && pid=$(<"$1") || return 0
    running "$pid" && [[ $(<"/proc/$pid/comm") == "$2" ]] || return 0
    kill "$pid"
    for _ in $(seq 200); do
        running "$pid" || { echo "stop-slurm: stopped $2 (pid $pid)"; return 0; }
        sleep 0.1
    done
    echo "stop-slurm: error: $2 (pid $pid) still runs 20 s after SIGTERM" >&2
    return 1
}

stop "$RUN/slurmd.pid" slurmd
stop "$RUN/slurmctld.pid" slurmctld
stop "$RUN/slurmdbd.pid" slurmdbd
if [[ -e $RUN/mariadbd.ours ]]; then
    stop /run/mysqld/lfwcnn-mariadbd.pid mariadbd
    rm -f "$RUN/mariadbd.ours"
fi
if [[ -e $RUN/munged.ours ]]; then
    stop /run/munge/munged.pid munged
    rm -f "$RUN/munged.ours"
fi
