#!/usr/bin/env bash
# A multi-node Slurm test cluster on this one machine: N "nodes", each a network namespace (and
# UTS namespace: its own hostname) made here, joined by a veth bridge made here; one slurmctld
# (in the host namespace, on the bridge's address) serves them all, and each node runs its own
# slurmd. Only these test addresses are used: 10.77.0.254 (bridge, controller), 10.77.0.1…N.
#
#   scripts/virtual-cluster.sh start     # namespaces, bridge, munged, slurmctld, N slurmd; waits until all idle
#   scripts/virtual-cluster.sh status
#   scripts/virtual-cluster.sh stop      # daemons, then namespaces and bridge
#   scripts/virtual-cluster.sh run NODE CMD...   # a command inside node NODE's namespaces (e.g. vn1 sbatch …)
#   scripts/virtual-cluster.sh kill-node NODE    # node loss: kill -9 of everything on NODE (its slurmd,
#                                                # slurmstepd, job ranks); `start` brings it back
#   VC_NODES=4 scripts/virtual-cluster.sh start  # node count (default 3)
#
# Slurm commands for this cluster need SLURM_CONF=/etc/slurm-virtual/slurm.conf (ports 6917/6918,
# ClusterName cnlvc; the one-node cluster of scripts/slurm-cluster.sh keeps /etc/slurm and
# 6817/6818, and both can run at once). Open MPI over TCP between the nodes: the jobs get
# OMPI_MCA_btl_tcp_if_include=10.77.0.0/24 (sbatch --export=ALL passes it on).
# Needs root, iproute2, util-linux (unshare, nsenter) and scripts/setup.sh --slurm.
set -euo pipefail

NODES=${VC_NODES:-3}
CONF_DIR=/etc/slurm-virtual
export SLURM_CONF=$CONF_DIR/slurm.conf
NET=10.77.0
BRIDGE=cnlvc0
CTLD_ADDR=$NET.254
STATE_DIR=/var/spool/slurmctld-virtual
SPOOL_DIR=/var/spool/slurmd-virtual
LOG_DIR=/var/log/slurm-virtual
RUN_DIR=/run/cnl-virtual-cluster
NODE_TMP=/var/tmp/cnl-virtual-node
CTLD_PID=$RUN_DIR/slurmctld.pid
MUNGE_KEY=/etc/munge/munge.key
MUNGE_PID=/run/munge/munged.pid
HOST=$(hostname -s)

say() { echo "virtual-cluster: $*"; }
die() { echo "virtual-cluster: error: $*" >&2; exit 1; }

alive() {
    [ -s "$1" ] || return 1
    local pid; pid=$(cat "$1" 2>/dev/null) && [ -n "$pid" ] || return 1
    kill -0 "$pid" 2>/dev/null && ! grep -q '^State:[[:space:]]*Z' "/proc/$pid/status" 2>/dev/null
}

# A daemon with no descriptor of ours beyond 0-2 (see scripts/slurm-cluster.sh: a test harness's
# pipe held open by a daemon is never closed).
detached() (
    for fd in /proc/$BASHPID/fd/*; do
        fd=${fd##*/}
        [ "$fd" -gt 2 ] && eval "exec $fd>&-" 2>/dev/null
    done
    "$@"
)

need_tools() {
    [ "$(id -u)" -eq 0 ] || die "must run as root (network namespaces, daemons as root)"
    for t in ip unshare nsenter munged munge unmunge slurmctld slurmd sinfo scontrol; do
        command -v "$t" >/dev/null || die "'$t' not found: run scripts/setup.sh --slurm (iproute2, util-linux for ip/unshare/nsenter)"
    done
}

munge_ok() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

start_munge() {
    munge_ok && return
    if [ ! -s "$MUNGE_KEY" ]; then
        mkdir -p "$(dirname "$MUNGE_KEY")"
        dd if=/dev/urandom of="$MUNGE_KEY" bs=1 count=1024 status=none
    fi
    chown munge:munge "$MUNGE_KEY"; chmod 0400 "$MUNGE_KEY"
    mkdir -p /run/munge /var/lib/munge /var/log/munge
    chown munge:munge /run/munge /var/lib/munge /var/log/munge
    rm -f /run/munge/munge.socket.2 /run/munge/munge.socket.2.lock
    detached runuser -u munge -- munged --force || die "munged failed to start"
    for _ in $(seq 50); do munge_ok && return; sleep 0.2; done
    die "munged started but 'munge -n | unmunge' fails"
}

node_name() { echo "vn$1"; }
# Not `ip netns list | grep -q`: under pipefail grep -q's early exit can kill the writer with
# SIGPIPE and fail the pipeline although the name was found (it did in CI, where `make test`'s
# stdbuf makes every child's stdout line-buffered, so `ip` writes once per namespace).
has_netns() { [ -e "/run/netns/$1" ]; }
netns() { echo "cnlvc$1"; }
# The pid of the process that holds node i's namespaces (a `sleep infinity` made by `unshare`).
holder_pid_file() { echo "$RUN_DIR/vn$1.holder"; }
slurmd_pid_file() { echo "$RUN_DIR/slurmd-vn$1.pid"; }

# Runs a command inside node i: its network namespace and its UTS namespace (hostname vn<i>).
in_node() {
    local i=$1; shift
    local holder; holder=$(cat "$(holder_pid_file "$i")")
    nsenter --target "$holder" --uts --net --mount -- "$@"
}

make_network() {
    mkdir -p "$RUN_DIR"
    if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
        ip link add "$BRIDGE" type bridge
        ip addr add "$CTLD_ADDR/24" dev "$BRIDGE"
        ip link set "$BRIDGE" up
    fi
    for i in $(seq 1 "$NODES"); do
        local ns; ns=$(netns "$i")
        # A namespace without its veth (left by an interrupted stop) is made again from scratch,
        # with a new holder: its slurmd would have no network.
        if has_netns "$ns" && ! ip link show "$ns-h" >/dev/null 2>&1; then
            say "$(node_name "$i"): namespace without its veth: making it again"
            if alive "$(holder_pid_file "$i")"; then kill "$(cat "$(holder_pid_file "$i")")" 2>/dev/null || true; fi
            rm -f "$(holder_pid_file "$i")"
            ip netns del "$ns"
        fi
        if ! has_netns "$ns"; then
            ip netns add "$ns"
            ip link add "$ns-h" type veth peer name eth0 netns "$ns"
            ip link set "$ns-h" master "$BRIDGE" up
            ip netns exec "$ns" ip addr add "$NET.$i/24" dev eth0
            ip netns exec "$ns" ip link set eth0 up
            ip netns exec "$ns" ip link set lo up
        fi
        # A UTS namespace for the hostname, held open by one sleeping process inside the netns.
        if ! alive "$(holder_pid_file "$i")"; then
            # and a mount namespace in which NODE_TMP is the node's own directory: Slurm's PMIx
            # plugin makes its per-step directories under TmpFS, by job id, and nodes sharing one
            # /tmp would collide there (everything else, /tmp included, stays shared).
            mkdir -p "$NODE_TMP" "$SPOOL_DIR/$(node_name "$i")/tmp"
            detached nsenter --net="/run/netns/$ns" unshare --uts --mount --propagation private \
                sh -c "hostname $(node_name "$i") && mount --bind $SPOOL_DIR/$(node_name "$i")/tmp $NODE_TMP && exec sleep infinity" </dev/null >/dev/null 2>&1 &
            local pid=""
            for _ in $(seq 50); do
                for p in $(ip netns pids "$ns"); do
                    [ "$(cat "/proc/$p/comm" 2>/dev/null)" = sleep ] && [ "$(nsenter --target "$p" --uts hostname 2>/dev/null)" = "$(node_name "$i")" ] && pid=$p
                done
                [ -n "$pid" ] && break
                sleep 0.1
            done
            [ -n "$pid" ] || die "could not make the UTS namespace of $(node_name "$i")"
            echo "$pid" >"$(holder_pid_file "$i")"
        fi
    done
}

remove_network() {
    for i in $(seq 1 "$NODES"); do
        local f; f=$(holder_pid_file "$i")
        if alive "$f"; then
            kill "$(cat "$f")" 2>/dev/null || true
            for _ in $(seq 50); do alive "$f" || break; sleep 0.1; done
        fi
        rm -f "$f"
        local ns; ns=$(netns "$i")
        has_netns "$ns" && ip netns del "$ns"
        ip link show "$ns-h" >/dev/null 2>&1 && ip link del "$ns-h"
    done
    ip link show "$BRIDGE" >/dev/null 2>&1 && ip link del "$BRIDGE"
    return 0
}

write_conf() {
    mkdir -p "$CONF_DIR"
    {
        echo "# generated by scripts/virtual-cluster.sh (rewritten by every start)"
        echo "ClusterName=cnlvc"
        echo "SlurmctldHost=$HOST($CTLD_ADDR)"
        echo "SlurmUser=root"
        echo "SlurmdUser=root"
        echo "AuthType=auth/munge"
        echo "CredType=cred/munge"
        echo "SlurmctldPort=6917"
        echo "SlurmdPort=6918"
        echo "StateSaveLocation=$STATE_DIR"
        echo "SlurmdSpoolDir=$SPOOL_DIR/%n"
        echo "TmpFS=$NODE_TMP"
        echo "SlurmctldPidFile=$CTLD_PID"
        echo "SlurmdPidFile=$RUN_DIR/slurmd-%n.pid"
        echo "SlurmctldLogFile=$LOG_DIR/slurmctld.log"
        echo "SlurmdLogFile=$LOG_DIR/slurmd-%n.log"
        echo "ProctrackType=proctrack/linuxproc"
        echo "TaskPlugin=task/none"
        echo "MpiDefault=pmix"
        echo "SelectType=select/cons_tres"
        echo "SelectTypeParameters=CR_CPU"
        echo "SchedulerType=sched/backfill"
        echo "JobRequeue=1"
        echo "ReturnToService=2"
        echo "SlurmdTimeout=10"
        echo "KillWait=30"
        echo "MinJobAge=300"
        echo "InactiveLimit=0"
        echo "AccountingStorageType=accounting_storage/none"
        echo "JobAcctGatherType=jobacct_gather/none"
        echo "JobCompType=jobcomp/none"
        for i in $(seq 1 "$NODES"); do
            echo "NodeName=$(node_name "$i") NodeAddr=$NET.$i NodeHostname=$(node_name "$i") CPUs=2 RealMemory=2000 State=UNKNOWN"
        done
        echo "PartitionName=vc Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4"
    } >"$SLURM_CONF.tmp"
    mv "$SLURM_CONF.tmp" "$SLURM_CONF"
}

stop_daemons() {
    if alive "$CTLD_PID"; then scontrol shutdown >/dev/null 2>&1 || true; fi
    for _ in $(seq 50); do
        local any=0
        alive "$CTLD_PID" && any=1
        for i in $(seq 1 "$NODES"); do alive "$(slurmd_pid_file "$i")" && any=1; done
        [ $any = 0 ] && break
        sleep 0.2
    done
    for f in "$CTLD_PID" $(for i in $(seq 1 "$NODES"); do slurmd_pid_file "$i"; done); do
        if alive "$f"; then kill -9 "$(cat "$f")" 2>/dev/null || true; fi
    done
}

start() {
    need_tools
    start_munge
    mkdir -p "$STATE_DIR" "$SPOOL_DIR" "$LOG_DIR" "$RUN_DIR"
    make_network
    write_conf
    if ! alive "$CTLD_PID"; then
        say "starting slurmctld on $CTLD_ADDR:6917"
        detached slurmctld -f "$SLURM_CONF" || die "slurmctld failed to start (see $LOG_DIR/slurmctld.log)"
    fi
    for _ in $(seq 100); do scontrol ping 2>/dev/null | grep UP >/dev/null && break; sleep 0.2; done
    scontrol ping 2>/dev/null | grep UP >/dev/null || die "slurmctld does not answer (see $LOG_DIR/slurmctld.log)"
    for i in $(seq 1 "$NODES"); do
        if ! alive "$(slurmd_pid_file "$i")"; then
            mkdir -p "$SPOOL_DIR/$(node_name "$i")"
            say "starting slurmd on $(node_name "$i") ($NET.$i)"
            detached in_node "$i" slurmd -f "$SLURM_CONF" || die "slurmd on $(node_name "$i") failed (see $LOG_DIR/slurmd-$(node_name "$i").log)"
        fi
    done
    local up=0
    for n in $(seq 150); do
        up=$(sinfo -h -N -o '%N %t' 2>/dev/null | awk '$2 ~ /^(idle|mix|alloc)$/' | wc -l)
        [ "$up" -ge "$NODES" ] && break
        if [ "$n" -eq 25 ]; then scontrol update NodeName="vn[1-$NODES]" State=RESUME >/dev/null 2>&1 || true; fi
        sleep 0.2
    done
    [ "$up" -ge "$NODES" ] || die "only $up of $NODES nodes are up after 30 s: $(sinfo -h -N -o '%N %t %E' | tr '\n' ';')"
    say "up: $NODES nodes ($(sinfo -h -N -o '%N' | tr '\n' ' ')) in partition vc; SLURM_CONF=$SLURM_CONF"
}

stop() {
    [ "$(id -u)" -eq 0 ] || die "must run as root"
    stop_daemons
    remove_network
    say "stopped"
}

status() {
    local rc=0
    if alive "$CTLD_PID"; then echo "slurmctld: running (pid $(cat "$CTLD_PID"))"; else echo "slurmctld: not running"; rc=1; fi
    for i in $(seq 1 "$NODES"); do
        if alive "$(slurmd_pid_file "$i")"; then echo "slurmd $(node_name "$i"): running (pid $(cat "$(slurmd_pid_file "$i")"))"; else echo "slurmd $(node_name "$i"): not running"; rc=1; fi
    done
    if [ $rc -eq 0 ]; then sinfo -N 2>/dev/null || true; squeue 2>/dev/null || true; fi
    return $rc
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    run) shift; node=${1:?usage: $0 run vn<i> CMD...}; shift; in_node "${node#vn}" "$@" ;;
    kill-node)
        node=${2:?usage: $0 kill-node vn<i>}; i=${node#vn}
        holder=$(cat "$(holder_pid_file "$i")")
        victims=$(ip netns pids "$(netns "$i")" | grep -vx "$holder" || true)
        [ -n "$victims" ] && kill -9 $victims
        say "killed $node: $(echo $victims | wc -w) processes (slurmd, steps, ranks)" ;;
    *) echo "usage: $0 start|stop|status|run NODE CMD...|kill-node NODE" >&2; exit 2 ;;
esac
