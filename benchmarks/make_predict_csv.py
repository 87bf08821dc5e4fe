#!/usr/bin/env python3
"""Writes the built-in synthetic task's training rows (16384 × 784, 10 classes: the rows dml-train trains on without
--data) as a CSV, for the prediction benchmark (benchmarks/predict.sh).

usage: benchmarks/make_predict_csv.py OUT.csv [ROWS=16384] [FEATURES=784]

Columns: `label` (0..9) first, then the features `x0..x783` printed with 6 significant digits (e.g. -1.21443),
comma-separated, a header line. Deterministic: the same rows as benchmarks/peers/synthetic.py (and DML) generate.
"""
import os
import sys
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "peers"))
from synthetic import Synthetic  # noqa: E402

out = sys.argv[1]
rows = int(sys.argv[2]) if len(sys.argv) > 2 else 16384
features = int(sys.argv[3]) if len(sys.argv) > 3 else 784
task = Synthetic(seed=1, features=features, classes=10)
with open(out, "w") as f:
    f.write("label," + ",".join(f"x{j}" for j in range(features)) + "\n")
    for first in range(0, rows, 2048):
        x, y = task.rows(first, min(2048, rows - first))
        f.write("\n".join(f"{y[i]}," + ",".join(f"{v:.6g}" for v in x[i]) for i in range(len(y))) + "\n")
print(f"wrote {out}: {rows} rows x {features} features, {os.path.getsize(out) / 1e6:.1f} MB")
