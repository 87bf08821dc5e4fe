#!/usr/bin/env python3
"""HDF5 reading benchmark helpers: writes the test file, and times h5py reading each rank's hyperslab.

usage:
  benchmarks/hdf5_reading.py make FILE SIZE_MB [gzip]   # /X float32 rows x 256, /y int64; seeded; gzip: chunked 1024 x 256, level 4
  mpirun -np N python3 benchmarks/hdf5_reading.py h5py FILE   # every rank reads rows [r*rows//N, (r+1)*rows//N) of /X and /y

The rows of rank r are DML's ShardPlan (the split dml-train reads). Prints, per rank, the bytes of the rows read as
the datasets store them (uncompressed) over the wall seconds of the read alone (open included), in MB/s, and over
the process's CPU seconds: the figures DML_DATA_STATS=1 prints for dml-train.
"""
import os
import sys
import time

import numpy as np

FEATURES = 256


def make(path, size_mb, gzip):
    import h5py
    rows = int(size_mb * 1e6) // (FEATURES * 4 + 8)
    rng = np.random.default_rng(2026)
    block = 65536
    kwargs = dict(chunks=(1024, FEATURES), compression="gzip", compression_opts=4) if gzip else {}
    with h5py.File(path, "w") as f:
        x = f.create_dataset("/X", shape=(rows, FEATURES), dtype="f4", **kwargs)
        y = f.create_dataset("/y", shape=(rows,), dtype="i8", **(dict(chunks=(65536,), compression="gzip", compression_opts=4) if gzip else {}))
        for lo in range(0, rows, block):
            hi = min(rows, lo + block)
            # Values on a 1/64 grid in [-8, 8): what measured data often is, and compressible as such data is.
            x[lo:hi] = (np.round(rng.normal(0, 2, size=(hi - lo, FEATURES)) * 64) / 64).clip(-8, 8).astype("f4")
            y[lo:hi] = rng.integers(0, 10, size=hi - lo)
    print(f"wrote {path}: {rows} rows x {FEATURES} float32 features + int64 labels, {os.path.getsize(path) / 1e6:.1f} MB on disk"
          + (" (chunked 1024 x 256, gzip 4)" if gzip else " (contiguous)"))


def read(path):
    import h5py
    rank = int(os.environ.get("OMPI_COMM_WORLD_RANK", "0"))
    size = int(os.environ.get("OMPI_COMM_WORLD_SIZE", "1"))
    t, cpu = time.perf_counter(), time.process_time()
    with h5py.File(path, "r") as f:
        x, y = f["/X"], f["/y"]
        rows = x.shape[0]
        lo, hi = rank * rows // size, (rank + 1) * rows // size
        xs = x[lo:hi]
        ys = y[lo:hi]
    seconds, cpu = time.perf_counter() - t, time.process_time() - cpu
    nbytes = xs.nbytes + ys.nbytes
    print(f"h5py: rank {rank} read {nbytes} bytes of {path} (rows {lo}..<{hi}) in {seconds:.3f} s ({nbytes / 1e6 / seconds:.1f} MB/s; "
          f"CPU {cpu:.3f} s, {nbytes / 1e6 / cpu:.1f} MB/s per CPU second)", flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "make":
        make(sys.argv[2], float(sys.argv[3]), len(sys.argv) > 4 and sys.argv[4] == "gzip")
    elif sys.argv[1] == "h5py":
        read(sys.argv[2])
    else:
        sys.exit(__doc__)
