#!/usr/bin/env bash
# DML under a real Slurm on this machine (scripts/slurm-local, 2 Slurm nodes): every scenario ends with `cmp`
# of the model against an uninterrupted mpirun run with the same flags, and the whole log goes to
# benchmarks/results/slurm-preempt.log (or $LOG).
#
#   benchmarks/slurm/preempt_requeue.sh            # as root, after `swift build` (DML_BIN: .build/release, else .build/debug)
#   QUICK=1 benchmarks/slurm/preempt_requeue.sh    # without the time-limit scenario (the slowest: about 2 minutes)
#
# Scenarios (dml-train.sbatch with LAUNCHER=srun, i.e. srun --mpi=pmix, 4 ranks on the nodes dmls1 and dmls2):
#   1. the node grouping: dml-bench allreduce under srun sees 2 nodes;
#   2. sbatch, uninterrupted: the same model bytes as mpirun;
#   3. scancel --signal=USR1: checkpoint, exit 75, the script requeues the job, the requeued run resumes;
#   4. a time limit with --signal=B:USR1@45 (--time=1): the same, triggered by Slurm (skipped with QUICK=1);
#   5. srun outside sbatch: scancel JOB (slurmstepd sends the ranks SIGTERM) and SIGUSR1 to srun (forwarded) stop
#      the ranks with a checkpoint, srun exits 75, --resume finishes the run; SIGTERM to srun itself does not
#      reach the ranks (srun ends the step with SIGKILL: "forcing job termination");
#   6. SIGTERM to mpirun, for comparison: mpirun does not forward it, it exits 1; the ranks still checkpoint
#      when they manage it within its second of grace, and --resume finishes the run.
# It brings a cluster up (scripts/slurm-local, DML_SLURM_DIR) unless one is already up, and takes down the one
# it started, also on failure. Exits non-zero at the first scenario that does not end as described.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
LOG=${LOG:-$ROOT/benchmarks/results/slurm-preempt.log}
export DML_SLURM_DIR=${DML_SLURM_DIR:-/tmp/dml-slurm}
export SLURM_CONF=$DML_SLURM_DIR/slurm.conf
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 SWIFT_BACKTRACE=enable=no
if [ -z "${DML_BIN:-}" ]; then
    DML_BIN=$ROOT/.build/release
    [ -x "$DML_BIN/dml-train" ] || DML_BIN=$ROOT/.build/debug
fi
export DML_BIN
[ -x "$DML_BIN/dml-train" ] || { echo "preempt_requeue: no dml-train in $DML_BIN (swift build first)" >&2; exit 1; }
W=$(mktemp -d /tmp/dmls-preempt.XXXXXX)
mkdir -p "$(dirname "$LOG")"
exec > >(tee "$LOG") 2>&1

started=0
cleanup() {
    local rc=$?
    [ "$started" = 1 ] && scripts/slurm-local down
    rm -rf "$W"
    echo "== exit status $rc"
}
trap cleanup EXIT

log() { echo "[$(date -u +%H:%M:%S)] $*"; }
say() { log "\$ $*"; }
fail() { log "FAILED: $*"; exit 1; }

# Submits dml-train.sbatch with LAUNCHER=srun; prints the job id.
submit() {
    LAUNCHER=srun sbatch --parsable --chdir="$W" --output="$W/job-%j.out" "$@"
}

# Follows job $1 until it has left the queue (at most $2 seconds), logging every change of its state.
follow() {
    local j=$1 limit=$2 last="" state t0
    t0=$(date +%s)
    while :; do
        state=$(scontrol show job "$j" 2>/dev/null | sed -n 's/^ *JobState=\([A-Z_]*\) Reason=\([^ ]*\).*/\1 reason=\2/p; s/.* Restarts=\([0-9]*\).*/restarts=\1/p' | tr '\n' ' ')
        if [ "$state" != "$last" ]; then log "job $j: ${state:-gone}"; last=$state; fi
        case $state in COMPLETED*|FAILED*|CANCELLED*|TIMEOUT*|NODE_FAIL*|OUT_OF_MEMORY*|"") break ;; esac
        [ $(( $(date +%s) - t0 )) -lt "$limit" ] || { scancel "$j"; fail "job $j still not done after $limit s"; }
        sleep 0.5
    done
}

# Waits until file $1 has a line matching $2 (at most 120 s).
wait_for() {
    for _ in $(seq 240); do grep -q -- "$2" "$1" 2>/dev/null && return 0; sleep 0.5; done
    fail "no line '$2' in $1"
}

same_bits() {
    say "cmp $1 $2"
    cmp "$1" "$2" || fail "$2 differs from $1"
    log "identical bits: $(basename "$2") = $(basename "$1") ($(stat -c %s "$1") bytes, sha256 $(sha256sum "$1" | cut -c1-16))"
}

# Job $1's log, then checks that it was preempted, requeued and resumed, and that its model $3 equals $2.
requeued_and_resumed() {
    cat "$W/job-$1.out"
    grep -q "stopped by SIGUSR1 after step" "$W/job-$1.out" || fail "no preemption in job $1"
    grep -q "requeueing it to resume" "$W/job-$1.out" || fail "job $1 was not requeued"
    grep -q "resuming from" "$W/job-$1.out" || fail "job $1 did not resume"
    scontrol show job "$1" | grep -o "Restarts=[0-9]*"
    same_bits "$2" "$3"
}

log "DML under Slurm: $(slurmctld -V), $(mpirun --version | head -1), $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores (shared with other work)"
log "binaries: $DML_BIN"
if [ -f "$SLURM_CONF" ]; then
    log "using the cluster that is up ($SLURM_CONF)"
else
    say "scripts/slurm-local up --nodes 2"
    scripts/slurm-local up --nodes 2
    started=1
fi
say "sinfo -N"
sinfo -N

SHORT=(--synthetic-rows 8192 --synthetic-features 128 --steps 1200 --log-every 200)
LONG=(--synthetic-rows 8192 --synthetic-features 128 --steps 4000 --log-every 500)

echo; log "== 1. the node grouping under srun: Slurm's nodes are MPI's nodes"
say "srun --mpi=pmix -N 2 -n 4 dml-bench allreduce --sizes 64K --algorithms ring,hier --check"
srun --mpi=pmix -N 2 -n 4 "$DML_BIN/dml-bench" allreduce --sizes 64K --algorithms ring,hier --check | tee "$W/bench.txt"
grep -q "4 ranks on 2 nodes" "$W/bench.txt" || fail "dml-bench did not see 2 nodes"

echo; log "== reference runs: mpirun -np 4 on one node, no interruption"
say "mpirun -np 4 dml-train ${SHORT[*]} --output ref-short.safetensors"
mpirun --oversubscribe -np 4 "$DML_BIN/dml-train" "${SHORT[@]}" --output "$W/ref-short.safetensors" | tail -2
if [ -z "${QUICK:-}" ]; then
    say "mpirun -np 4 dml-train ${LONG[*]} --output ref-long.safetensors"
    mpirun --oversubscribe -np 4 "$DML_BIN/dml-train" "${LONG[@]}" --output "$W/ref-long.safetensors" | tail -2
fi

echo; log "== 2. sbatch (srun --mpi=pmix), uninterrupted"
say "LAUNCHER=srun sbatch benchmarks/slurm/dml-train.sbatch ${SHORT[*]} --output plain.safetensors"
j=$(submit benchmarks/slurm/dml-train.sbatch "${SHORT[@]}" --output "$W/plain.safetensors")
log "submitted job $j"
follow "$j" 120
cat "$W/job-$j.out"
same_bits "$W/ref-short.safetensors" "$W/plain.safetensors"

echo; log "== 3. preemption by scancel --signal=USR1, requeue, resume"
say "LAUNCHER=srun sbatch benchmarks/slurm/dml-train.sbatch ${SHORT[*]} --checkpoint-dir ckpt3 --checkpoint-every 500 --resume --output usr1.safetensors"
j=$(submit benchmarks/slurm/dml-train.sbatch "${SHORT[@]}" --checkpoint-dir "$W/ckpt3" --checkpoint-every 500 --resume --output "$W/usr1.safetensors")
log "submitted job $j"
wait_for "$W/job-$j.out" "step  200/"
say "scancel --signal=USR1 $j"
scancel --signal=USR1 "$j"
follow "$j" 180
requeued_and_resumed "$j" "$W/ref-short.safetensors" "$W/usr1.safetensors"

if [ -z "${QUICK:-}" ]; then
    echo; log "== 4. preemption by the time limit (--time=1 --signal=B:USR1@45), requeue, resume"
    say "LAUNCHER=srun sbatch --time=1 --signal=B:USR1@45 benchmarks/slurm/dml-train.sbatch ${LONG[*]} --checkpoint-dir ckpt4 --checkpoint-every 1000 --resume --output limit.safetensors"
    j=$(submit --time=1 --signal=B:USR1@45 benchmarks/slurm/dml-train.sbatch "${LONG[@]}" --checkpoint-dir "$W/ckpt4" --checkpoint-every 1000 --resume --output "$W/limit.safetensors")
    log "submitted job $j"
    follow "$j" 600
    grep -q "SIGUSR1, passed on to srun" "$W/job-$j.out" || fail "the batch shell of job $j got no SIGUSR1"
    requeued_and_resumed "$j" "$W/ref-long.safetensors" "$W/limit.safetensors"
fi

echo; log "== 5. srun and signals: scancel (SIGTERM from slurmstepd) and SIGUSR1 to srun stop the ranks cleanly; SIGTERM to srun kills them"
# Each case: srun (its own allocation, job name dmls-N) in the background, the signal after step 200, the
# status, then the same command again with --resume (where a checkpoint was written), compared by cmp.
srun_case() {    # srun_case NAME CKPT: runs in the background, pid in $pid
    srun --job-name="dmls-$1" --mpi=pmix -N 2 -n 4 "$DML_BIN/dml-train" "${SHORT[@]}" --checkpoint-dir "$W/$2" \
        --checkpoint-every 500 --resume --output "$W/$2.safetensors" >"$W/$1.out" 2>&1 &
    pid=$!
    wait_for "$W/$1.out" "step  200/"
}
srun_resume() {  # srun_resume CKPT: the same command, waited for, then cmp
    say "srun --mpi=pmix -N 2 -n 4 dml-train … --checkpoint-dir $1 --resume (the same command again)"
    srun --mpi=pmix -N 2 -n 4 "$DML_BIN/dml-train" "${SHORT[@]}" --checkpoint-dir "$W/$1" --checkpoint-every 500 --resume \
        --output "$W/$1.safetensors" 2>&1 | grep -v '^\(step\|checkpoint\)'
    same_bits "$W/ref-short.safetensors" "$W/$1.safetensors"
}
say "srun --job-name=dmls-5a --mpi=pmix -N 2 -n 4 dml-train ${SHORT[*]} --checkpoint-dir ckpt5a --checkpoint-every 500 --resume --output ckpt5a.safetensors &"
srun_case 5a ckpt5a
j=$(squeue -h -n dmls-5a -o %i)
say "scancel $j    # cancels the job: slurmstepd sends SIGCONT, SIGTERM to the ranks, SIGKILL after KillWait (10 s here)"
scancel "$j"
status=0; wait "$pid" || status=$?
grep -v '^\(step\|checkpoint\)' "$W/5a.out"
log "srun exited with status $status"
[ "$status" = 75 ] || fail "srun exited $status after scancel, not 75"
grep -q "stopped by SIGTERM after step" "$W/5a.out" || fail "the ranks did not stop on SIGTERM"
srun_resume ckpt5a

say "srun --job-name=dmls-5b … --checkpoint-dir ckpt5b … &"
srun_case 5b ckpt5b
say "kill -USR1 <srun>    # srun forwards SIGUSR1 to every task"
kill -USR1 "$pid"
status=0; wait "$pid" || status=$?
grep -v '^\(step\|checkpoint\)' "$W/5b.out"
log "srun exited with status $status"
[ "$status" = 75 ] || fail "srun exited $status after SIGUSR1, not 75"
srun_resume ckpt5b

say "srun --job-name=dmls-5c … --checkpoint-dir ckpt5c … &"
srun_case 5c ckpt5c
say "kill -TERM <srun>    # srun does not forward SIGTERM: it forces the step's end (SIGKILL to the tasks)"
kill -TERM "$pid"
status=0; wait "$pid" || status=$?
grep -v '^\(step\|checkpoint\)' "$W/5c.out"
log "srun exited with status $status: the ranks were killed, no checkpoint at the stop (only the periodic ones)"
[ "$status" != 75 ] && [ "$status" != 0 ] || fail "srun exited $status after SIGTERM"
! grep -q "stopped by SIGTERM" "$W/5c.out" || fail "the ranks saw the SIGTERM after all (srun forwarded it): update the README"

echo; log "== 6. SIGTERM to mpirun, for comparison: mpirun does not forward it"
say "mpirun -np 4 dml-train ${SHORT[*]} --checkpoint-dir ckpt6 --checkpoint-every 500 --resume --output mpirun.safetensors &"
mpirun --oversubscribe -np 4 "$DML_BIN/dml-train" "${SHORT[@]}" --checkpoint-dir "$W/ckpt6" --checkpoint-every 500 --resume --output "$W/mpirun.safetensors" >"$W/mpirun6.out" 2>&1 &
pid=$!
wait_for "$W/mpirun6.out" "step  200/"
say "kill -TERM <mpirun>"
kill -TERM "$pid"
status=0; wait "$pid" || status=$?
grep -v '^\(step\|checkpoint\)' "$W/mpirun6.out" | head -20
log "mpirun exited with status $status (its own 1: it signalled the ranks itself and did not wait for their 75)"
[ "$status" != 0 ] || fail "mpirun exited 0 after SIGTERM"
say "mpirun -np 4 dml-train … --resume (the same command)"
mpirun --oversubscribe -np 4 "$DML_BIN/dml-train" "${SHORT[@]}" --checkpoint-dir "$W/ckpt6" --checkpoint-every 500 --resume --output "$W/mpirun.safetensors" 2>&1 | grep -v '^\(step\|checkpoint\)'
same_bits "$W/ref-short.safetensors" "$W/mpirun.safetensors"

echo; log "all scenarios ended with the same bits as the uninterrupted run"
