#!/usr/bin/env bash
# dml-bench kernels and numpy/OpenBLAS (one thread) alternately, ROUNDS times, on this machine; prints each
# gemm row's best over the rounds for both and the ratio. Alternating and taking the best of each side keeps the
# comparison fair on a shared machine whose load changes from second to second.
#   benchmarks/kernels_vs_openblas.sh [BENCH_BINARY] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH=${1:-.build/release/dml-bench}
ROUNDS=${2:-3}
OUT=$(mktemp -d)
for r in $(seq 1 "$ROUNDS"); do
    "$BENCH" kernels --csv "$OUT/dml-$r.csv" > /dev/null
    OPENBLAS_NUM_THREADS=1 python3 benchmarks/openblas_gemm.py --csv "$OUT/blas-$r.csv" > /dev/null
done
python3 - "$OUT" "$ROUNDS" <<'PY'
import csv, sys
out, rounds = sys.argv[1], int(sys.argv[2])
def best(prefix):
    b = {}
    for r in range(1, rounds + 1):
        for row in csv.DictReader(open(f"{out}/{prefix}-{r}.csv")):
            key = (row["kernel"], int(row["n"]))
            for col in ("gflops", "GBps"):
                if row.get(col):
                    b[key] = (col, max(float(row[col]), b.get(key, (col, 0.0))[1]))
    return b
dml, blas = best("dml"), best("blas")
print(f"best of {rounds} alternating rounds")
print(f"{'kernel':34s} {'n':>8s} {'DML':>10s} {'OpenBLAS':>10s} {'ratio':>7s}")
for key, (col, v) in dml.items():
    ref = blas.get(key)
    unit = "GFLOP/s" if col == "gflops" else "GB/s"
    extra = f"{ref[1]:10.2f} {v / ref[1]:7.2f}" if ref else ""
    print(f"{key[0]:34s} {key[1]:8d} {v:10.2f} {extra}   {unit}")
PY
