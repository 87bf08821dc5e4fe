#!/usr/bin/env bash
# dml-bench allreduce across 4 network-namespace nodes (scripts/cluster) with each node's link capped by tc tbf:
# ring, hier, rd, auto and MPI_Allreduce at np 4 (1 rank per node) and np 8 (2 per node), ROUNDS rounds, one
# CSV and one log per run, then the α-β fit (benchmarks/costmodel_nodes.py). Needs root and a release build.
#   benchmarks/cluster_allreduce.sh [OUT_DIR] [RATE] [ROUNDS] [SIZES]
#   default: benchmarks/results/cluster-1gbit 1gbit 3 4K:16M
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-benchmarks/results/cluster-1gbit} rate=${2:-1gbit} rounds=${3:-3} sizes=${4:-4K:16M}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
bench=.build/release/dml-bench
[ -x $bench ] || { echo "build first: swift build -c release" >&2; exit 1; }
mkdir -p "$out"
name=b$$
scripts/cluster --name "$name" up 4 --rate "$rate" --slots 2
trap 'scripts/cluster --name "$name" down' EXIT
{ lscpu | grep 'Model name'; echo "rate $rate per node (tbf, both directions), 4 nodes, $(date -u)"; uptime; } > "$out/machine.txt"
for round in $(seq 1 "$rounds"); do
    for np in 4 8; do
        map=(); [ "$np" = 4 ] && map=(--map-by node)
        scripts/cluster --name "$name" mpirun -np "$np" "${map[@]}" $bench allreduce --sizes "$sizes" --factor 2 \
            --algorithms ring,hier,rd,auto --iters 50 --max-seconds 0.5 --csv "$out/np$np-r$round.csv" \
            > "$out/np$np-r$round.log" 2>&1
        grep -E '^ +[0-9]' "$out/np$np-r$round.log" | tail -3
    done
done
python3 benchmarks/costmodel_nodes.py "$out"/np*-r*.csv --nodes 4 | tee "$out/fit.txt"
