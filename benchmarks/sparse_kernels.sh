#!/usr/bin/env bash
# The sparse rows' products, DML (dml-bench kernels --sparse-data) against scipy.sparse (peers/sparse_scipy.py:
# X @ W and X.T @ G, float32) on the same rcv1-like matrix (sparse_data.py rcv1: ROWS rows × 47,236 features, ~75
# non-zeros a row), one thread each, alternately ROUNDS times; prints each product's best over the rounds for
# both, in millions of non-zeros per second, and the ratio.
#   benchmarks/sparse_kernels.sh [BENCH_BINARY] [ROUNDS] [ROWS]
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH=${1:-.build/release/dml-bench}
ROUNDS=${2:-3}
ROWS=${3:-20000}
OUT=$(mktemp -d)
python3 benchmarks/sparse_data.py rcv1 "$OUT/rcv1like.svm" --rows "$ROWS" 2> /dev/null
lscpu | grep 'Model name' || true
for r in $(seq 1 "$ROUNDS"); do
    "$BENCH" kernels --sparse-data "$OUT/rcv1like.svm" --sparse-outputs 1,16 --csv "$OUT/dml-$r.csv" > /dev/null
    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python3 benchmarks/peers/sparse_scipy.py "$OUT/rcv1like.svm" --outputs 1,16 --csv "$OUT/scipy-$r.csv" > /dev/null
done
python3 - "$OUT" "$ROUNDS" <<'PY'
import csv, sys
out, rounds = sys.argv[1], int(sys.argv[2])
def best(prefix):
    b = {}
    for r in range(1, rounds + 1):
        for row in csv.DictReader(open(f"{out}/{prefix}-{r}.csv")):
            k = int(row["kernel"].rsplit("_k", 1)[1])
            rate = float(row["gflops"]) * 1e9 / 2 / k / 1e6     # M non-zeros/s
            b[row["kernel"]] = max(rate, b.get(row["kernel"], 0.0))
    return b
dml, scipy = best("dml"), best("scipy")
print(f"best of {rounds} alternating rounds, M non-zeros/s")
print(f"{'product':28s} {'DML':>9s} {'scipy':>9s} {'ratio':>7s}")
for key, v in dml.items():
    print(f"{key:28s} {v:9.1f} {scipy[key]:9.1f} {v / scipy[key]:7.2f}")
PY
rm -rf "$OUT"
