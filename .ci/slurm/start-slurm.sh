#!/usr/bin/env bash
# Start a one-node SLURM cluster on this machine, installing it first where it is missing, so
# that tests/test_slurm.py can run the workflow with `--executor slurm` (docs/cluster.md).
#
#   munged -> mariadbd -> slurmdbd -> slurmctld -> slurmd
#
# slurmdbd (accounting, backed by MariaDB) is there because snakemake-executor-plugin-slurm
# follows its jobs with `sacct`, and the tests read sacct too. The cluster is named after
# `hostname -s`; it has one partition (LFWCNN_SLURM_PARTITION, default `main`) and one node
# with this machine's cores and 90 % of its memory. GPUs are a gres: the node's
# /dev/nvidia[0-9]* where there are some, else LFWCNN_SLURM_FAKE_GPUS (default 2) stand-in
# devices, so that `--gpus` and the CUDA_VISIBLE_DEVICES SLURM hands a job can be tested on a
# machine without a GPU (nothing runs on a stand-in; TensorFlow then finds no GPU).
#
# Idempotent: with everything up and the configuration unchanged it returns at once. Needs root
# and apt (Debian 12: slurm 22.05, munge, MariaDB 10.11). Stop with .ci/slurm/stop-slurm.sh.
# Logs: /var/log/lfwcnn-slurm/. Everything here is for a test machine, not a production site.
set -euo pipefail

STATE=/var/lib/lfwcnn-slurm
RUN=/run/lfwcnn-slurm
LOGS=/var/log/lfwcnn-slurm
ETC=/etc/slurm
MARKER="# Written by lfwcnn .ci/slurm/start-slurm.sh"
PARTITION=${LFWCNN_SLURM_PARTITION:-main}
FAKE_GPUS=${LFWCNN_SLURM_FAKE_GPUS:-2}
PACKAGES=(slurmctld slurmd slurm-client slurmdbd munge mariadb-server)
MYSQL_SOCKET=/run/mysqld/mysqld.sock
MARIADB_PID=/run/mysqld/lfwcnn-mariadbd.pid
started=$(date +%s%N)

say() { echo "start-slurm: $*"; }
die() {
    echo "start-slurm: error: $*" >&2
    exit 1
}
# die, showing the end of a daemon's log
die_log() {
    local log=$1
    shift
    echo "start-slurm: error: $*" >&2
    if [[ -s $log ]]; then
        echo "--- last lines of $log:" >&2
        tail -n 15 "$log" >&2
    fi
    exit 1
}
# wait_for SECONDS COMMAND...: poll every 0.1 s until COMMAND succeeds
wait_for() {
    local deadline
    deadline=$(($(date +%s) + $1))
    shift
    until "$@" >/dev/null 2>&1; do
        (($(date +%s) < deadline)) || return 1
        sleep 0.1
    done
}
# running PID: that process exists and is not a zombie (left to an init that does not reap)
running() {
    local state=""
    [[ -r /proc/$1/stat ]] && read -r _ _ state _ <"/proc/$1/stat" 2>/dev/null && [[ $state != Z ]]
}
# alive PIDFILE COMM: the process in PIDFILE runs and is COMM
alive() {
    local pid
    [[ -s $1 ]] && pid=$(<"$1") && running "$pid" && [[ $(<"/proc/$pid/comm") == "$2" ]]
}

# ---------------------------------------------------------------------------- install
[[ $EUID -eq 0 ]] || die "run as root: it installs packages and starts system daemons"
missing=()
for tool in munged mungekey mariadbd mariadb-admin slurmdbd slurmctld slurmd sbatch sacct sacctmgr; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
if ((${#missing[@]})); then
    command -v apt-get >/dev/null ||
        die "missing ${missing[*]} and no apt-get: install ${PACKAGES[*]} by hand"
    say "installing ${PACKAGES[*]} (missing: ${missing[*]})"
    # Packages must not start daemons of their own: this script starts them, configured.
    made_policy=""
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        made_policy=1
    fi
    apt_install() {
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
            -o Dpkg::Use-Pty=0 "${PACKAGES[@]}" >"$1" 2>&1
    }
    mkdir -p "$LOGS"
    # package lists may be missing or stale on a fresh machine: update once, then retry
    if ! apt_install "$LOGS/apt.log"; then
        apt-get update -q >"$LOGS/apt-update.log" 2>&1 ||
            die_log "$LOGS/apt-update.log" "apt-get update failed"
        apt_install "$LOGS/apt.log" || die_log "$LOGS/apt.log" "apt-get install ${PACKAGES[*]} failed"
    fi
    [[ -n $made_policy ]] && rm -f /usr/sbin/policy-rc.d
    for tool in "${missing[@]}"; do
        command -v "$tool" >/dev/null || die "$tool still missing after installing ${PACKAGES[*]}"
    done
fi

# ---------------------------------------------------------------------------- configuration
HOST=$(hostname -s)
CLUSTER=$(tr '[:upper:]' '[:lower:]' <<<"$HOST" | tr -c 'a-z0-9_\n' '_')
mkdir -p "$STATE/ctld" "$STATE/d" "$RUN" "$LOGS" "$ETC"
for conf in slurm.conf gres.conf slurmdbd.conf; do
    if [[ -s $ETC/$conf ]] && ! grep -qF "$MARKER" "$ETC/$conf"; then
        die "$ETC/$conf exists and was not written by this script: not overwriting a real" \
            "SLURM configuration (move it away to use the test cluster)"
    fi
done

# this machine as slurmd sees it (sockets, cores, threads, memory), with 10 % memory to spare
hardware=$(slurmd -C | head -n 1) || die "slurmd -C could not read this machine's hardware"
memory=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$hardware")
[[ -n $memory ]] || die "slurmd -C printed no RealMemory: $hardware"
layout=$(grep -o 'CPUs=[0-9]* .*ThreadsPerCore=[0-9]*' <<<"$hardware") ||
    die "slurmd -C printed no CPU layout: $hardware"

gpu_files=(/dev/nvidia[0-9]*)
if [[ -e ${gpu_files[0]} ]]; then
    gpus=${#gpu_files[@]}
    gres_file="/dev/nvidia[0-$((gpus - 1))]"
else
    [[ $FAKE_GPUS =~ ^[0-9]+$ ]] || die "LFWCNN_SLURM_FAKE_GPUS=$FAKE_GPUS is not a whole number"
    gpus=$FAKE_GPUS
    mkdir -p "$STATE/fake-gpu"
    for ((i = 0; i < gpus; i++)); do ln -sfn /dev/null "$STATE/fake-gpu/gpu$i"; done
    gres_file="$STATE/fake-gpu/gpu[0-$((gpus - 1))]"
fi

changed=()
# write_conf NAME MODE: stdin to $ETC/NAME, remembering whether it changed
write_conf() {
    local text
    text="$MARKER; rewritten on every run."$'\n'"$(cat)"
    if [[ ! -f $ETC/$1 ]] || [[ $(<"$ETC/$1") != "$text" ]]; then
        printf '%s\n' "$text" >"$ETC/$1"
        changed+=("$1")
    fi
    chmod "$2" "$ETC/$1"
}

node_gres=""
((gpus > 0)) && node_gres="Gres=gpu:$gpus"
write_conf slurm.conf 644 <<EOF
ClusterName=$CLUSTER
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
# no cgroups: processes are tracked by parent id and devices are not fenced; memory is
# polled every second and a step over its --mem is killed, as a real cluster would
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=task=1
JobAcctGatherParams=OverMemoryKill
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStorageTRES=gres/gpu
AccountingStoreFlags=job_comment
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
GresTypes=gpu
MpiDefault=none
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=60
InactiveLimit=0
KillWait=5
MinJobAge=300
DefMemPerCPU=1024
NodeName=$HOST NodeAddr=127.0.0.1 $layout RealMemory=$((memory * 9 / 10)) $node_gres State=UNKNOWN
PartitionName=$PARTITION Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF

if ((gpus > 0)); then
    write_conf gres.conf 644 <<<"NodeName=$HOST Name=gpu File=$gres_file"
else
    write_conf gres.conf 644 <<<"# no GPUs"
fi

write_conf slurmdbd.conf 600 <<EOF
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
SlurmUser=root
PidFile=$RUN/slurmdbd.pid
LogFile=$LOGS/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=root
StorageLoc=lfwcnn_slurm_acct
EOF

# ---------------------------------------------------------------------------- daemons
node_up() {
    local state
    state=$(sinfo -h -n "$HOST" -o %T 2>/dev/null) || return 1
    [[ $state =~ ^(idle|mixed|allocated|completing) ]]
}
stop_pid() {  # stop_pid PIDFILE COMM: end that one process and wait for it
    local pid
    alive "$1" "$2" || return 0
    pid=$(<"$1")
    kill "$pid"
    wait_for 20 eval "! running $pid" || die "$2 (pid $pid) did not stop"
}

if ((${#changed[@]} == 0)) && alive "$RUN/slurmdbd.pid" slurmdbd &&
    alive "$RUN/slurmctld.pid" slurmctld && alive "$RUN/slurmd.pid" slurmd && node_up; then
    say "cluster $CLUSTER already up (partition $PARTITION, node $HOST)"
    exit 0
fi
((${#changed[@]})) && say "configuration written: ${changed[*]}"

# munge: the key the packages made, or a new one
if [[ ! -s /etc/munge/munge.key ]]; then
    mungekey --create --keyfile=/etc/munge/munge.key || die "mungekey could not create a key"
    chown munge:munge /etc/munge/munge.key
    chmod 400 /etc/munge/munge.key
fi
if ! munge -n >/dev/null 2>&1; then
    install -d -o munge -g munge -m 755 /run/munge
    runuser -u munge -- munged --pid-file=/run/munge/munged.pid >"$LOGS/munged.out" 2>&1 ||
        die_log /var/log/munge/munged.log "munged did not start: $(cat "$LOGS/munged.out")"
    touch "$RUN/munged.ours"
    wait_for 10 munge -n || die_log /var/log/munge/munged.log "munged does not answer"
fi

# MariaDB for slurmdbd (root through the unix socket, which is how Debian sets it up)
if ! mariadb-admin --socket="$MYSQL_SOCKET" ping >/dev/null 2>&1; then
    if [[ ! -d /var/lib/mysql/mysql ]]; then
        mariadb-install-db --user=mysql --datadir=/var/lib/mysql >"$LOGS/mariadb-install.log" 2>&1 ||
            die_log "$LOGS/mariadb-install.log" "mariadb-install-db failed"
    fi
    install -d -o mysql -g mysql -m 755 /run/mysqld "$LOGS/mariadb"
    setsid mariadbd --user=mysql --skip-networking --socket="$MYSQL_SOCKET" \
        --pid-file="$MARIADB_PID" --log-error="$LOGS/mariadb/error.log" \
        --innodb-buffer-pool-size=64M </dev/null >"$LOGS/mariadb/mariadbd.out" 2>&1 &
    touch "$RUN/mariadbd.ours"
    wait_for 60 mariadb-admin --socket="$MYSQL_SOCKET" ping ||
        die_log "$LOGS/mariadb/error.log" "mariadbd does not answer on $MYSQL_SOCKET" \
            "$(tail -n 5 "$LOGS/mariadb/mariadbd.out")"
fi

# slurmdbd, then the cluster's record in it
if [[ " ${changed[*]} " == *" slurmdbd.conf "* ]]; then stop_pid "$RUN/slurmdbd.pid" slurmdbd; fi
if ! alive "$RUN/slurmdbd.pid" slurmdbd; then
    slurmdbd || die_log "$LOGS/slurmdbd.log" "slurmdbd did not start"
    wait_for 60 sacctmgr -n list cluster ||
        die_log "$LOGS/slurmdbd.log" "slurmdbd does not answer (sacctmgr list cluster)"
fi
if ! sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER"; then
    sacctmgr -i add cluster "$CLUSTER" >/dev/null || die "sacctmgr could not add cluster $CLUSTER"
fi

# slurmctld and slurmd: restarted when slurm.conf or gres.conf changed
if [[ " ${changed[*]} " =~ " slurm.conf "|" gres.conf " ]]; then
    stop_pid "$RUN/slurmd.pid" slurmd
    stop_pid "$RUN/slurmctld.pid" slurmctld
fi
if ! alive "$RUN/slurmctld.pid" slurmctld; then
    slurmctld || die_log "$LOGS/slurmctld.log" "slurmctld did not start"
fi
wait_for 30 scontrol ping || die_log "$LOGS/slurmctld.log" "slurmctld does not answer"
if ! alive "$RUN/slurmd.pid" slurmd; then
    slurmd || die_log "$LOGS/slurmd.log" "slurmd did not start"
fi
if ! wait_for 30 node_up; then
    # a node that was down (e.g. after a kill) comes back with resume
    scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 || true
    wait_for 10 node_up || die_log "$LOGS/slurmd.log" "node $HOST is not up:" \
        "$(sinfo -h -n "$HOST" -o '%T %E' 2>&1)"
fi

elapsed_ms=$((($(date +%s%N) - started) / 1000000))
say "cluster $CLUSTER up in $((elapsed_ms / 1000)).$(printf %03d $((elapsed_ms % 1000)))s: partition $PARTITION, node $HOST," \
    "$(sinfo -h -n "$HOST" -o '%c CPUs, %m MB, gres %G')"
