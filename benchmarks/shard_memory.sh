#!/usr/bin/env bash
# --shard-update: peak RSS per rank and step time of an MLP of ~9.5 M parameters (784→4096→1536→10) with Adam,
# sharded and unsharded (--allreduce ring), at np 2 and 4, interleaved in the same run (each repeat runs all
# four back to back, so their ratios are measured under the same load). Each rank's peak RSS comes from
# /usr/bin/time (one line per rank appended to its own file); the step time from dml-train's `done:` line.
# The two runs of each np must write the same model bytes (checked with cmp).
#
# usage: benchmarks/shard_memory.sh [STEPS=20] [REPEATS=3] [WORK=/tmp/dml-shard-memory]
# Needs a release build (swift build -c release).
set -euo pipefail
steps=${1:-20}; repeats=${2:-3}; work=${3:-/tmp/dml-shard-memory}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$root/.build/release/dml-train
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mkdir -p "$work"
echo "# $(lscpu | grep 'Model name' | sed 's/  */ /g'), family $(lscpu | awk -F: '/^CPU family/ {gsub(/ /,"",$2); print $2}') model $(lscpu | awk -F: '/^Model:/ {gsub(/ /,"",$2); print $2}'); $(nproc) cores; load $(cut -d' ' -f1 /proc/loadavg); MLP 784-4096-1536-10 (9,523,722 parameters), adam, batch 256, $steps steps"
common=(--model mlp --hidden 4096,1536 --synthetic-features 784 --synthetic-classes 10 --synthetic-rows 4096 --synthetic-test-rows 256
        --optimizer adam --lr 0.001 --batch-size 256 --steps "$steps" --eval-every 0 --log-every "$steps" --allreduce ring)
run() {  # name, np, flags...
    local name=$1 np=$2; shift 2
    rm -f "$work/$name".time.*
    timeout 1200 mpirun --oversubscribe -np "$np" bash -c 'exec /usr/bin/time -o "$0.time.$OMPI_COMM_WORLD_RANK" -f "peak_rss_kb %M" "$@"' \
        "$work/$name" "$bin" "${common[@]}" "$@" --output "$work/$name.safetensors" > "$work/$name.out" 2> "$work/$name.err" \
        || { echo "$name failed:"; tail -5 "$work/$name.err"; return 1; }
    local secs rss
    secs=$(grep -oE 'done: [0-9]+ steps in [0-9.]+ s' "$work/$name.out" | awk '{print $5}')
    rss=$(cat "$work/$name".time.* | awk '/peak_rss_kb/ {printf "%.0f ", $2/1024}')
    printf "%-16s np %d  %6.3f s/step  peak RSS per rank (MB): %s\n" "$name" "$np" "$(echo "$secs / $steps" | bc -l)" "$rss"
}
for r in $(seq "$repeats"); do
    for np in 2 4; do
        run "plain-np$np-$r" "$np"
        run "sharded-np$np-$r" "$np" --shard-update
        cmp -s "$work/plain-np$np-$r.safetensors" "$work/sharded-np$np-$r.safetensors" \
            && echo "   np $np: model bytes identical" || echo "   np $np: model bytes DIFFER"
    done
done
