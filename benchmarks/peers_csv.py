#!/usr/bin/env python3
"""Times the CSV readers a Python user would use instead, on one file, in one process (one core).

usage: benchmarks/peers_csv.py pandas|loadtxt FILE.csv

Prints MB/s (file bytes / wall seconds of the read alone) and the process's peak RSS. Run one reader per
process so the peak RSS is that reader's.
"""
import os
import resource
import sys
import time

which, path = sys.argv[1], sys.argv[2]
size = os.path.getsize(path)
if which == "pandas":
    import pandas as pd
    t = time.perf_counter()
    frame = pd.read_csv(path)
    seconds = time.perf_counter() - t
    rows = len(frame)
elif which == "loadtxt":
    import numpy as np
    t = time.perf_counter()
    array = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float32)
    seconds = time.perf_counter() - t
    rows = array.shape[0]
else:
    sys.exit(f"unknown reader {which}")
peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(f"{which}: {size / 1e6:.1f} MB, {rows} rows in {seconds:.2f} s = {size / 1e6 / seconds:.1f} MB/s; peak RSS {peak_kb / 1024:.0f} MB")
