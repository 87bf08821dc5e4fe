#!/usr/bin/env bash
# Threads per rank on the MLP 784→256→10 (synthetic task, global batch 256, plain SGD): dml-bench train at np 1 with
# --threads 1 and 2, numpy+mpi4py "cheapest loop" with OPENBLAS_NUM_THREADS=1 and 2, and torch (DDP peer, world 1)
# with torch.set_num_threads(1) and (2), interleaved in each round so that a shared machine's load hits all alike;
# compare ratios within a round. With BASELINE (another dml-bench, e.g. main's before a change), it runs too, in
# the same rounds, as "base".
# usage: [MODEL=softmax] benchmarks/threads.sh [DML-BENCH] [ROUNDS] [STEPS] [BASELINE]   (MODEL: mlp, the default, or softmax)
# Prints one CSV line per run (round,what,samples_per_s), then a summary: each configuration's min / median / max
# over the rounds and the T 2 ÷ T 1 ratio of each round (both runs of a ratio come from the same round).
set -u
BENCH=${1:-.build/release/dml-bench}
ROUNDS=${2:-3}
STEPS=${3:-500}
BASE=${4:-}
MODEL=${MODEL:-mlp}
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=$(mktemp)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
echo "# $MODEL; $(lscpu | grep 'Model name' | sed 's/  */ /g'); $(nproc) CPUs; load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "round,what,samples_per_s" | tee "$OUT"
dml() {  # dml BINARY THREADS
  mpirun --oversubscribe --bind-to none -np 1 "$1" train --models "$MODEL" --steps "$STEPS" --threads "$2" 2>&1 \
    | awk -v m="$MODEL" '$1 == m { print $2 }'
}
for r in $(seq 1 "$ROUNDS"); do
  for t in 1 2; do
    echo "$r,dml T$t,$(dml "$BENCH" "$t")" | tee -a "$OUT"
    [ -n "$BASE" ] && echo "$r,base T$t,$(dml "$BASE" "$t")" | tee -a "$OUT"
    v=$(OPENBLAS_NUM_THREADS=$t OMP_NUM_THREADS=$t python3 "$HERE/peers/train_numpy_cheapest.py" --model "$MODEL" --steps "$STEPS" \
        | cut -d, -f6)
    echo "$r,numpy cheapest T$t,$v" | tee -a "$OUT"
    if python3 -c 'import torch' 2>/dev/null; then
      v=$(OMP_NUM_THREADS=$t python3 "$HERE/peers/train_torch_ddp.py" --model "$MODEL" --steps "$STEPS" --threads "$t" \
          --port $((29600 + r * 2 + t)) 2>/dev/null | tail -1 | cut -d, -f6)
      echo "$r,torch T$t,$v" | tee -a "$OUT"
    fi
  done
done
echo "# load at the end $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$OUT" <<'PY'
import csv, statistics, sys
runs = {}
for row in csv.DictReader(open(sys.argv[1])):
    try: runs.setdefault(row["what"], {})[int(row["round"])] = float(row["samples_per_s"])
    except ValueError: pass
print("summary: samples/s min / median / max over rounds; T2/T1 per round (same round), min / median / max")
for what in sorted({w.rsplit(" T", 1)[0] for w in runs}):
    t1, t2 = runs.get(what + " T1", {}), runs.get(what + " T2", {})
    fmt = lambda d: " / ".join(f"{v:,.0f}" for v in (min(d.values()), statistics.median(d.values()), max(d.values()))) if d else "-"
    ratios = [t2[r] / t1[r] for r in t1 if r in t2 and t1[r] > 0]
    ratio = " / ".join(f"{v:.2f}" for v in (min(ratios), statistics.median(ratios), max(ratios))) if ratios else "-"
    print(f"  {what:16s} T1 {fmt(t1):>28s}   T2 {fmt(t2):>28s}   T2/T1 {ratio}")
for peer in ("numpy cheapest", "torch", "base"):
    d2, p2 = runs.get("dml T2", {}), runs.get(peer + " T2", {})
    r = [d2[k] / p2[k] for k in d2 if k in p2 and p2[k] > 0]
    if r: print(f"  dml ÷ {peer} at T2, per round: " + ", ".join(f"{v:.2f}×" for v in r))
PY
rm -f "$OUT"
