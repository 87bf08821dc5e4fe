#!/usr/bin/env bash
# HDF5 reading speed per rank: dml-train --data file.h5 (each rank its ShardPlan hyperslab, DML_DATA_STATS=1)
# beside h5py reading the same hyperslabs, on a seeded float32 file, contiguous and chunked + gzip, np 1 and 2.
#   benchmarks/hdf5_reading.sh [DIR=/tmp/dml-hdf5-bench] [SIZE_MB=1000] [RUNS=3]
# Needs a release build (swift build -c release) and python3 with numpy and h5py (pip install h5py).
# The files are generated here (not checked in); the page cache is warmed before each reader.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-/tmp/dml-hdf5-bench}; size=${2:-1000}; runs=${3:-3}
mkdir -p "$dir"
python3 -c "import h5py" 2>/dev/null || { echo "h5py missing: pip install h5py" >&2; exit 1; }
[ -f "$dir/contiguous.h5" ] || python3 benchmarks/hdf5_reading.py make "$dir/contiguous.h5" "$size"
[ -f "$dir/gzip.h5" ] || python3 benchmarks/hdf5_reading.py make "$dir/gzip.h5" "$size" gzip
python3 -c "import h5py; print('h5py', h5py.__version__, 'HDF5', h5py.version.hdf5_version)"
echo "dml: HDF5 $(pkg-config --modversion hdf5-serial) (serial, Debian)"
for file in contiguous gzip; do
  for np in 1 2; do
    for run in $(seq "$runs"); do
      cat "$dir/$file.h5" > /dev/null
      echo "== $file.h5 np=$np run $run"
      DML_DATA_STATS=1 scripts/mpirun -np "$np" -x DML_DATA_STATS .build/release/dml-train --data "$dir/$file.h5" \
          --h5-features /X --h5-labels /y --model linear --task regression --steps 1 --eval-every 0 2>&1 | grep dml-data | sort
      cat "$dir/$file.h5" > /dev/null
      scripts/mpirun -np "$np" python3 benchmarks/hdf5_reading.py h5py "$dir/$file.h5" | sort
    done
  done
done
ls -l "$dir"
