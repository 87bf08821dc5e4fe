#!/usr/bin/env python3
"""scipy.sparse's products on the rows of a LIBSVM file, one thread, as `dml-bench kernels --sparse-data` measures
DML's: `X @ W` (W features × k) and `X.T @ G` (G rows × k), float32, best of REPEATS runs of at least MIN_TIME
seconds each. Writes the same CSV columns (kernel, n = non-zeros, gflops = 2·nnz·k flops/s).
    sparse_scipy.py FILE --outputs 1,16 [--csv OUT] [--repeats 5] [--min-time 0.05]"""
import argparse, csv, time
import numpy as np
from sklearn.datasets import load_svmlight_file

p = argparse.ArgumentParser()
p.add_argument("file")
p.add_argument("--outputs", default="1,16")
p.add_argument("--csv")
p.add_argument("--repeats", type=int, default=5)
p.add_argument("--min-time", type=float, default=0.05)
a = p.parse_args()
X, _ = load_svmlight_file(a.file, dtype=np.float32, zero_based=False)
X = X.tocsr()
n, d = X.shape
nnz = X.nnz
print(f"scipy.sparse: {a.file}: {n} rows x {d} features, {nnz} non-zeros")
rng = np.random.default_rng(1)


def best(f):
    f()
    b = float("inf")
    for _ in range(a.repeats):
        calls, start = 0, time.perf_counter()
        while True:
            f()
            calls += 1
            el = time.perf_counter() - start
            if el >= a.min_time:
                break
        b = min(b, el / calls)
    return b


rows = []
for k in [int(v) for v in a.outputs.split(",")]:
    W = rng.uniform(-1, 1, (d, k) if k > 1 else d).astype(np.float32)
    G = rng.uniform(-1, 1, (n, k) if k > 1 else n).astype(np.float32)
    XT = X.T  # a CSC view, as the product uses it
    for name, f in ((f"csr_forward_XW_k{k}", lambda: X @ W), (f"csr_transposed_XtG_k{k}", lambda: XT @ G)):
        t = best(f)
        rows.append((name, nnz, 2 * nnz * k / t / 1e9))
        print(f"{name:34s} {nnz:9d} {2 * nnz * k / t / 1e9:9.2f} GFLOP/s    {nnz / t / 1e6:.1f} M non-zeros/s")
if a.csv:
    with open(a.csv, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["kernel", "n", "gflops", "GBps"])
        for r in rows:
            w.writerow([r[0], r[1], f"{r[2]:.3f}", ""])
