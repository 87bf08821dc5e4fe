#!/usr/bin/env bash
# Data-loading benchmark: CSV parsing speed and peak memory per rank, against pandas and numpy.loadtxt.
#   benchmarks/data_loading.sh [DIR=/tmp/dml-data-bench] [SIZE_MB=500] [NP=2]
# Needs a release build (swift build -c release), python3 with numpy (and pandas for that peer).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-/tmp/dml-data-bench}; size=${2:-500}; np=${3:-2}
mkdir -p "$dir"
[ -f "$dir/big.csv" ] || python3 benchmarks/make_csv.py "$dir/big.csv" "$size"
head -n 156001 "$dir/big.csv" > "$dir/slice50.csv"      # ~50 MB: numpy.loadtxt is too slow for the whole file
cat "$dir/big.csv" > /dev/null                           # page cache warm for every reader
echo "== dml-train --data, np=$np (per-rank parse time, peak RSS of each whole rank process)"
DML_DATA_STATS=1 scripts/mpirun -np "$np" -x DML_DATA_STATS /usr/bin/time -f "rank process: peak RSS %M KB, wall %e s" \
    .build/release/dml-train --data "$dir/big.csv" --steps 1 2>&1 | grep -E "dml-data|peak RSS"
echo "== dml-train --data, one process"
DML_DATA_STATS=1 .build/release/dml-train --data "$dir/big.csv" --steps 1 2>&1 | grep dml-data
echo "== peers (one process each)"
python3 benchmarks/peers_csv.py pandas "$dir/big.csv" || echo "pandas missing: pip install pandas"
python3 benchmarks/peers_csv.py loadtxt "$dir/slice50.csv"
ls -l "$dir/big.csv" "$dir/slice50.csv"
