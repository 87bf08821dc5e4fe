#!/usr/bin/env bash
# CSV parsing speed of two dml-train builds in one run, alternating (issue 18: the plain numeric fast path must
# stay as fast as before quotes existed), on the data-loading benchmark's file and on a copy whose labels are
# quoted (the quote-aware path: one quote-count pass, one allgather, a second parse).
#   benchmarks/csv_before_after.sh BEFORE_DML_TRAIN AFTER_DML_TRAIN [DIR=/tmp/dml-data-bench] [SIZE_MB=300] [NP=2] [RUNS=3]
# Prints each rank's DML_DATA_STATS line (parse wall time, MB/s, CPU MB/s, peak RSS).
set -euo pipefail
cd "$(dirname "$0")/.."
before=$1; after=$2; dir=${3:-/tmp/dml-data-bench}; size=${4:-300}; np=${5:-2}; runs=${6:-3}
mkdir -p "$dir"
[ -f "$dir/big.csv" ] || python3 benchmarks/make_csv.py "$dir/big.csv" "$size"
[ -f "$dir/quoted.csv" ] || sed -E '2,$ s/^([0-9]+),/"\1",/' "$dir/big.csv" > "$dir/quoted.csv"
cat "$dir/big.csv" "$dir/quoted.csv" > /dev/null                  # page cache warm
lscpu | grep 'Model name' || true
for run in $(seq "$runs"); do
    for build in before after; do
        bin=$before; [ "$build" = after ] && bin=$after
        for file in big quoted; do
            [ "$build" = before ] && [ "$file" = quoted ] && continue    # the old reader refuses quoted fields
            echo "== run $run, $build, $file.csv, np=$np"
            DML_DATA_STATS=1 scripts/mpirun -np "$np" -x DML_DATA_STATS "$bin" --data "$dir/$file.csv" --steps 1 2>&1 | grep dml-data
        done
    done
done
