#!/usr/bin/env bash
# Threads per rank on the MLP 784→256→10 (synthetic task, global batch 256, plain SGD): dml-bench train at np 1 with
# --threads 1 and 2, numpy+mpi4py "cheapest loop" with OPENBLAS_NUM_THREADS=1 and 2, and torch (DDP peer, world 1)
# with torch.set_num_threads(1) and (2), interleaved in each round so that a shared machine's load hits all alike;
# compare ratios within a round.
# usage: benchmarks/threads.sh [DML-BENCH] [ROUNDS] [STEPS]    (prints one CSV line per run: round,what,samples_per_s)
set -u
BENCH=${1:-.build/release/dml-bench}
ROUNDS=${2:-3}
STEPS=${3:-500}
HERE=$(cd "$(dirname "$0")" && pwd)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
echo "# $(lscpu | grep 'Model name' | sed 's/  */ /g'); $(nproc) CPUs; load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "round,what,samples_per_s"
for r in $(seq 1 "$ROUNDS"); do
  for t in 1 2; do
    v=$(mpirun --oversubscribe --bind-to none -np 1 "$BENCH" train --models mlp --steps "$STEPS" --threads "$t" 2>&1 \
        | awk '$1 == "mlp" { print $2 }')
    echo "$r,dml np1 T$t,$v"
    v=$(OPENBLAS_NUM_THREADS=$t OMP_NUM_THREADS=$t python3 "$HERE/peers/train_numpy_cheapest.py" --model mlp --steps "$STEPS" \
        | cut -d, -f6)
    echo "$r,numpy cheapest T$t,$v"
    if python3 -c 'import torch' 2>/dev/null; then
      v=$(OMP_NUM_THREADS=$t python3 "$HERE/peers/train_torch_ddp.py" --model mlp --steps "$STEPS" --threads "$t" \
          --port $((29600 + r * 2 + t)) 2>/dev/null | tail -1 | cut -d, -f6)
      echo "$r,torch T$t,$v"
    fi
  done
done
