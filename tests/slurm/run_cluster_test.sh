#!/usr/bin/env bash
# Prove profiles/slurm on a real Slurm cluster: one node, on this machine, on loopback only.
#
#   sudo tests/slurm/run_cluster_test.sh        (root: it starts munged, slurmctld and slurmd)
#
# 1. Installs Debian's Slurm and MUNGE packages if they are missing, writes a one-node config
#    (tests/slurm/slurm.conf.in) into a temporary folder that holds all state, spool and logs.
# 2. Phase 1, a GPU node (one GPU backed by /dev/null, no CUDA): runs the workflow locally, then
#    through `--profile profiles/slurm`; checks that every job went through Slurm, that training
#    jobs got the GPU in the GPU partition, fell back to the CPU, and gave the local numbers.
# 3. Phase 2, a GPU-less node: the plain profile's training job is refused by sbatch (the failure
#    users would see); with the documented MERFLOW_SLURM_GPUS=0 it runs on the CPU, same numbers.
# Every daemon it started is stopped by PID on exit, also on failure.
#
# The workflow here is a stand-in with the real rule names (tests/slurm/Snakefile). With
# MERFLOW_SLURM_WORKFLOW_CONFIG=<reduced config> phase 1 also runs merflow's own workflow, locally
# and through the profile, and requires equal metrics.
#
# Environment: MERFLOW_SLURM_TIMEOUT (s, per Snakemake run; 600), MERFLOW_SLURM_KEEP=1 keeps the
# temporary folder, MERFLOW_SLURM_CTLD_PORT / MERFLOW_SLURM_SLURMD_PORT (6817 / 6818).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE="$REPO/tests/slurm"
VENV_BIN="$REPO/.venv/bin"
TIMEOUT=${MERFLOW_SLURM_TIMEOUT:-600}
CTLD_PORT=${MERFLOW_SLURM_CTLD_PORT:-6817}
SLURMD_PORT=${MERFLOW_SLURM_SLURMD_PORT:-6818}
NODE=$(hostname -s)
# The plugin's in-job `srun` drops SLURM_CONF from its environment, so the job steps find the
# test config only at Slurm's default path: a symlink there, removed on exit.
SYSTEM_CONF=/etc/slurm/slurm.conf
# Test-only flags: fast status checks (the profile's own value suits real queues) and every job's
# Slurm log kept, for inspection with MERFLOW_SLURM_KEEP=1.
WORK=$(mktemp -d /tmp/merflow-slurm.XXXXXX)
# Everything the test writes stays under $WORK: Slurm's job logs too (not the checkout's .snakemake).
TEST_FLAGS=(--slurm-init-seconds-before-status-checks 1 --slurm-keep-successful-logs
    --slurm-logdir "$WORK/slurm-logs")
chmod 755 "$WORK"
declare -a STARTED_PIDS=() SLURM_PIDS=()
OWN_SYSTEM_CONF=0
CLUSTER="" # the current cluster's folder: config, state, logs

log() { printf '[slurm-test %s] %s\n' "$(date +%T)" "$*" >&2; }
fail() {
    log "FAILED: $*"
    exit 1
}

cleanup() {
    local status=$?
    set +e
    ((${#SLURM_PIDS[@]} > 0)) && timeout 20 scancel --quiet --full --user=root 2>/dev/null
    stop_slurm
    stop_pids
    if [[ $OWN_SYSTEM_CONF == 1 && $(readlink "$SYSTEM_CONF") == "$WORK"/* ]]; then
        rm -f "$SYSTEM_CONF"
    fi
    if [[ $status != 0 && -n $CLUSTER ]]; then
        for f in "$CLUSTER"/log/slurmctld.log "$CLUSTER"/log/slurmd.log; do
            [[ -f $f ]] && { log "last lines of $f:"; tail -n 15 "$f" >&2; }
        done
    fi
    if [[ ${MERFLOW_SLURM_KEEP:-0} == 1 || $status != 0 ]]; then
        log "kept $WORK for inspection"
    else
        rm -rf "$WORK"
    fi
    exit $status
}

# Stop the daemons (and munged) started here, newest first, each by its PID.
stop_pids() {
    local i pid
    for ((i = ${#STARTED_PIDS[@]} - 1; i >= 0; i--)); do
        pid=${STARTED_PIDS[i]}
        kill "$pid" 2>/dev/null || continue
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    done
    STARTED_PIDS=()
}

require_root() {
    [[ $(id -u) == 0 ]] || fail "run as root: it installs packages and starts Slurm's daemons"
}

install_packages() {
    local missing=()
    for cmd in slurmctld slurmd sbatch munged setpriv; do
        command -v "$cmd" >/dev/null || missing+=("$cmd")
    done
    ((${#missing[@]} == 0)) && return
    log "installing slurmctld slurmd slurm-client munge (missing: ${missing[*]})"
    apt-get update -qq >"$WORK/apt.log" 2>&1 || fail "apt-get update failed: see $WORK/apt.log"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        slurmctld slurmd slurm-client munge util-linux >>"$WORK/apt.log" 2>&1 ||
        fail "apt-get install failed: see $WORK/apt.log"
}

check_prerequisites() {
    [[ -x $VENV_BIN/snakemake ]] || fail "no $VENV_BIN/snakemake: run 'make setup' first"
    "$VENV_BIN/snakemake" --help 2>/dev/null | grep -q -- '--slurm-status-command' ||
        fail "snakemake-executor-plugin-slurm is not installed in $REPO/.venv"
    for port in "$CTLD_PORT" "$SLURMD_PORT"; do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            fail "port $port on 127.0.0.1 is taken (another Slurm?): set MERFLOW_SLURM_*_PORT"
        fi
    done
    if [[ -e $SYSTEM_CONF || -L $SYSTEM_CONF ]]; then
        # A symlink left by a killed earlier run points into a folder that no longer exists.
        if [[ -L $SYSTEM_CONF && $(readlink "$SYSTEM_CONF") == /tmp/merflow-slurm.* &&
            ! -e $SYSTEM_CONF ]]; then
            rm -f "$SYSTEM_CONF"
        else
            fail "$SYSTEM_CONF exists: this machine has a Slurm config of its own; not replacing it"
        fi
    fi
}

# munged on a socket of its own (slurm.conf's AuthInfo), with a fresh key: no system MUNGE used.
start_munge() {
    install -d -m 755 -o munge -g munge "$WORK/munge"
    install -d -m 700 -o munge -g munge "$WORK/munge-key"
    head -c 1024 /dev/urandom >"$WORK/munge-key/munge.key"
    chown munge:munge "$WORK/munge-key/munge.key"
    chmod 400 "$WORK/munge-key/munge.key"
    setpriv --reuid=munge --regid=munge --init-groups munged --foreground \
        --socket="$WORK/munge/munge.socket" --key-file="$WORK/munge-key/munge.key" \
        --pid-file="$WORK/munge/munged.pid" --seed-file="$WORK/munge-key/munged.seed" \
        --log-file="$WORK/munge-key/munged.log" --origin=127.0.0.1 \
        >"$WORK/munged.out" 2>&1 &
    STARTED_PIDS+=($!)
    wait_for 10 "munged" test -S "$WORK/munge/munge.socket"
}

# wait_for SECONDS WHAT COMMAND...: poll COMMAND every 0.2 s until it succeeds.
wait_for() {
    local seconds=$1 what=$2
    shift 2
    for _ in $(seq $((seconds * 5))); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    fail "$what not ready after ${seconds}s"
}

# write_config NAME GPUS: a cluster folder $WORK/cluster-NAME with slurm.conf, gres.conf (GPUS
# fake GPUs), state and logs; SLURM_CONF points the clients at it.
write_config() {
    local gpus=$2 node_gres=""
    CLUSTER="$WORK/cluster-$1"
    mkdir -p "$CLUSTER/state/ctld" "$CLUSTER/state/d" "$CLUSTER/log"
    export SLURM_CONF="$CLUSTER/slurm.conf"
    if ((gpus > 0)); then
        node_gres="Gres=gpu:$gpus"
        for ((i = 0; i < gpus; i++)); do
            ln -sfn /dev/null "$CLUSTER/gpu$i"
            echo "NodeName=$NODE Name=gpu File=$CLUSTER/gpu$i" >>"$CLUSTER/gres.conf"
        done
    else
        : >"$CLUSTER/gres.conf"
    fi
    local cpus
    cpus=$(nproc)
    ((cpus < 2)) && cpus=2
    sed -e "s|@HOSTNAME@|$NODE|g" -e "s|@CTLD_PORT@|$CTLD_PORT|g" \
        -e "s|@SLURMD_PORT@|$SLURMD_PORT|g" -e "s|@MUNGE_SOCKET@|$WORK/munge/munge.socket|g" \
        -e "s|@STATE_DIR@|$CLUSTER/state|g" -e "s|@LOG_DIR@|$CLUSTER/log|g" \
        -e "s|@CPUS@|$cpus|g" -e "s|@MEMORY_MB@|16000|g" -e "s|@NODE_GRES@|$node_gres|g" \
        "$HERE/slurm.conf.in" >"$SLURM_CONF"
    if grep -v '^#' "$SLURM_CONF" | grep -q '@[A-Z_]*@'; then
        fail "unfilled placeholder in $SLURM_CONF"
    fi
}

start_slurm() {
    mkdir -p "$(dirname "$SYSTEM_CONF")"
    ln -sfn "$SLURM_CONF" "$SYSTEM_CONF"
    OWN_SYSTEM_CONF=1
    slurmctld -D -i -f "$SLURM_CONF" >"$CLUSTER/log/slurmctld.out" 2>&1 &
    SLURM_PIDS+=($!)
    wait_for 20 "slurmctld" scontrol ping
    slurmd -D -f "$SLURM_CONF" -N "$NODE" >"$CLUSTER/log/slurmd.out" 2>&1 &
    SLURM_PIDS+=($!)
    wait_for 30 "node $NODE (idle)" node_is_idle
    check_loopback_only
}

node_is_idle() { [[ $(sinfo --noheader --nodes="$NODE" --format=%T | sort -u) == idle ]]; }

# Slurm's daemons listen on 127.0.0.1 and nowhere else.
check_loopback_only() {
    command -v ss >/dev/null || return 0
    local wide
    wide=$(ss -Hltnp | grep -E '"(slurmctld|slurmd)"' | awk '{print $4}' |
        grep -v '^127\.0\.0\.1:' || true)
    [[ -z $wide ]] || fail "Slurm listens beyond loopback: $wide"
}

stop_slurm() {
    local i pid
    for ((i = ${#SLURM_PIDS[@]} - 1; i >= 0; i--)); do
        pid=${SLURM_PIDS[i]}
        kill "$pid" 2>/dev/null || continue
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    done
    SLURM_PIDS=()
}

# Wait until the queue is empty, then stop the daemons (no job steps left behind).
drain_and_stop_slurm() {
    scancel --quiet --full --user=root || true
    wait_for 30 "an empty queue" queue_is_empty
    stop_slurm
}
queue_is_empty() { [[ -z $(squeue --noheader --states=PENDING,RUNNING,COMPLETING) ]]; }

# snakemake_run LABEL ARGS...: Snakemake started from the repository root as a user starts it
# (so the workflow profile profiles/default applies too), bounded in time; output in LABEL.log.
snakemake_run() {
    local label=$1
    shift
    log "snakemake ($label): $*"
    local start=$SECONDS status=0
    (cd "$REPO" && timeout -k 20 "$TIMEOUT" "$VENV_BIN/snakemake" "$@") >"$WORK/$label.log" 2>&1 ||
        status=$?
    log "snakemake ($label): exit $status after $((SECONDS - start)) s"
    return $status
}

# standin_run LABEL DIR ARGS...: the stand-in workflow (tests/slurm/Snakefile), working in DIR.
standin_run() {
    local label=$1 dir=$2
    shift 2
    snakemake_run "$label" -s "$HERE/Snakefile" --directory "$dir" "$@"
}

# The real workflow on a reduced config ($MERFLOW_SLURM_WORKFLOW_CONFIG), locally and through the
# profile, each into its own results_dir; then every metrics.json must be equal.
real_workflow_runs() {
    local preset=$MERFLOW_SLURM_WORKFLOW_CONFIG
    [[ -f $preset ]] || fail "MERFLOW_SLURM_WORKFLOW_CONFIG=$preset: no such file"
    snakemake_run real-local --cores 2 --resources gpu=1 --configfile "$preset" \
        --directory "$WORK/real-local" --config results_dir="$WORK/real-local/results" ||
        fail "local run: see $WORK/real-local.log"
    MERFLOW_SLURM_GPU_PARTITION=gpu snakemake_run real-slurm --profile profiles/slurm \
        "${TEST_FLAGS[@]}" --configfile "$preset" --directory "$WORK/real-slurm" \
        --config results_dir="$WORK/real-slurm/results" ||
        fail "Slurm run of the workflow: see $WORK/real-slurm.log"
    check --log "$WORK/real-slurm.log" --results "$WORK/real-slurm" \
        --reference "$WORK/real-local" --compare '**/metrics.json' --gpus 1 --gpu-partition gpu ||
        fail "the workflow on Slurm (see $WORK)"
}

check() {
    "$VENV_BIN/python" "$HERE/check_run.py" --ctld-log "$CLUSTER/log/slurmctld.log" "$@"
}

main() {
    trap cleanup EXIT
    trap 'exit 130' INT TERM
    require_root
    install_packages
    check_prerequisites
    export PATH="$VENV_BIN:$PATH"
    unset MERFLOW_SLURM_PARTITION MERFLOW_SLURM_GPU_PARTITION MERFLOW_SLURM_ACCOUNT \
        MERFLOW_SLURM_GPUS MERFLOW_SLURM_GPU_MODEL
    start_munge

    log "local reference run"
    standin_run local "$WORK/local" --cores 2 --resources gpu=1 || fail "local run failed: see $WORK/local.log"

    log "phase 1: a node with one GPU; training goes to the 'gpu' partition"
    write_config gpu 1
    start_slurm
    MERFLOW_SLURM_GPU_PARTITION=gpu standin_run gpu "$WORK/gpu" \
        --profile profiles/slurm "${TEST_FLAGS[@]}" || fail "Slurm run failed: see $WORK/gpu.log"
    check --log "$WORK/gpu.log" --results "$WORK/gpu/results" --reference "$WORK/local/results" \
        --gpus 1 --gpu-partition gpu --records --side-by-side || fail "phase 1 (see $WORK)"
    if [[ -n ${MERFLOW_SLURM_WORKFLOW_CONFIG:-} ]]; then
        real_workflow_runs
    fi
    drain_and_stop_slurm

    log "phase 2: a node without GPUs; training of seed 0 again"
    write_config nogpu 0
    start_slurm
    cp -a "$WORK/gpu" "$WORK/nogpu"
    local again=(--forcerun train -- results/runs/seed0/metrics.json)
    if standin_run nogpu-refused "$WORK/nogpu" --profile profiles/slurm "${TEST_FLAGS[@]}" \
        "${again[@]}"; then
        fail "a GPU job was accepted on a node without GPUs: the test cluster is not what it seems"
    fi
    grep -q "SLURM sbatch failed" "$WORK/nogpu-refused.log" ||
        fail "expected sbatch to refuse the GPU job: see $WORK/nogpu-refused.log"
    MERFLOW_SLURM_GPUS=0 standin_run nogpu "$WORK/nogpu" --profile profiles/slurm \
        "${TEST_FLAGS[@]}" "${again[@]}" || fail "MERFLOW_SLURM_GPUS=0 run: see $WORK/nogpu.log"
    check --log "$WORK/nogpu.log" --results "$WORK/nogpu/results/runs/seed0" \
        --reference "$WORK/local/results/runs/seed0" --compare metrics.json --gpus 0 --records ||
        fail "phase 2 (see $WORK)"
    drain_and_stop_slurm
    log "all Slurm checks passed in ${SECONDS} s"
}

main "$@"
