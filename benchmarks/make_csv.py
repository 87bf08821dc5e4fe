#!/usr/bin/env python3
"""Writes a classification CSV of about SIZE megabytes for the data-loading benchmark.

usage: benchmarks/make_csv.py OUT.csv [SIZE_MB=500] [FEATURES=32]

Rows: an integer class label 0..9 first, then FEATURES float features printed with 6 significant digits
(e.g. -0.531642, 1.20443e-05), comma-separated, with a header line. Deterministic (seeded).
"""
import sys
import numpy as np

out = sys.argv[1]
target = int(float(sys.argv[2]) * 1e6) if len(sys.argv) > 2 else 500_000_000
features = int(sys.argv[3]) if len(sys.argv) > 3 else 32
rng = np.random.default_rng(1)
written = 0
with open(out, "w") as f:
    header = "label," + ",".join(f"f{j}" for j in range(features)) + "\n"
    f.write(header)
    written += len(header)
    while written < target:
        n = 20_000
        x = rng.standard_normal((n, features)) * rng.choice([1e-5, 1.0, 100.0], size=(1, features))
        y = rng.integers(0, 10, size=n)
        lines = "\n".join(f"{y[i]}," + ",".join(f"{v:.6g}" for v in x[i]) for i in range(n)) + "\n"
        f.write(lines)
        written += len(lines)
print(f"wrote {out}: {written / 1e6:.0f} MB, {features} features")
