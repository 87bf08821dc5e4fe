#!/usr/bin/env python3
"""Single-threaded OpenBLAS (through numpy) SGEMM GFLOP/s, measured the same way as `dml-bench kernels`:
best of REPEATS timed runs, each repeating the call for at least MIN_TIME seconds.

    OPENBLAS_NUM_THREADS=1 python3 benchmarks/openblas_gemm.py [--csv out.csv]

Sets OPENBLAS_NUM_THREADS=1 itself when it is not set (it must be set before numpy is imported).
Rows: square float32 matmul at n = 128..2048, and the five gemms of one 784->256->10 MLP step, batch 256,
named as in dml-bench.
"""
import os
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import sys, time
import numpy as np

REPEATS, MIN_TIME = 5, 0.05


def best_time(f):
    f()
    best = float("inf")
    for _ in range(REPEATS):
        calls, start = 0, time.perf_counter()
        while True:
            f()
            calls += 1
            elapsed = time.perf_counter() - start
            if elapsed >= MIN_TIME:
                break
        best = min(best, elapsed / calls)
    return best


def main():
    rng = np.random.default_rng(1)
    rows = []
    for n in [128, 256, 512, 1024, 2048]:
        a = rng.uniform(-1, 1, (n, n)).astype(np.float32)
        b = rng.uniform(-1, 1, (n, n)).astype(np.float32)
        c = np.empty((n, n), np.float32)
        t = best_time(lambda: np.matmul(a, b, out=c))
        rows.append(("gemm", n, 2 * n**3 / t / 1e9))
    batch, d, h, k = 256, 784, 256, 10
    # (name, op(A) as stored, op(B) as stored) mirroring dml-bench's shapes.
    X = rng.uniform(-1, 1, (batch, d)).astype(np.float32)
    W1 = rng.uniform(-1, 1, (h, d)).astype(np.float32)
    H = rng.uniform(-1, 1, (batch, h)).astype(np.float32)
    W2 = rng.uniform(-1, 1, (k, h)).astype(np.float32)
    dZ2 = rng.uniform(-1, 1, (batch, k)).astype(np.float32)
    dZ1 = rng.uniform(-1, 1, (batch, h)).astype(np.float32)
    cases = [
        (f"mlp_fwd1_NT_m{batch}_n{h}_k{d}", X, W1.T, h),
        (f"mlp_fwd2_NT_m{batch}_n{k}_k{h}", H, W2.T, k),
        (f"mlp_dW2_TN_m{k}_n{h}_k{batch}", dZ2.T, H, h),
        (f"mlp_dH_NN_m{batch}_n{h}_k{k}", dZ2, W2, h),
        (f"mlp_dW1_TN_m{h}_n{d}_k{batch}", dZ1.T, X, d),
    ]
    def flops_and_time(a, b):
        c = np.empty((a.shape[0], b.shape[1]), np.float32)
        t = best_time(lambda: np.matmul(a, b, out=c))
        return 2 * a.shape[0] * a.shape[1] * b.shape[1], t

    total_flops = total_time = 0.0
    for name, a, b, n in cases:
        flops, t = flops_and_time(a, b)
        total_flops += flops
        total_time += t
        rows.append((name, n, flops / t / 1e9))
    rows.append(("mlp_step_all_gemms", batch, total_flops / total_time / 1e9))
    Wk = rng.uniform(-1, 1, (k, d)).astype(np.float32)
    for name, a, b, n in [(f"softmax_fwd_NT_m{batch}_n{k}_k{d}", X, Wk.T, k),
                          (f"softmax_dW_TN_m{k}_n{d}_k{batch}", dZ2.T, X, d)]:
        flops, t = flops_and_time(a, b)
        rows.append((name, n, flops / t / 1e9))
    # A full batch on one rank: the softmax dW over 30,000 rows (dml-bench's full_batch_softmax_dW_TN).
    tall = 30_000
    Xt = rng.uniform(-1, 1, (tall, d)).astype(np.float32)
    dZt = rng.uniform(-1, 1, (tall, k)).astype(np.float32)
    flops, t = flops_and_time(dZt.T, Xt)
    rows.append((f"full_batch_softmax_dW_TN_m{k}_n{d}_k{tall}", d, flops / t / 1e9))
    print(f"numpy {np.__version__}, OPENBLAS_NUM_THREADS={os.environ['OPENBLAS_NUM_THREADS']}")
    for name, n, g in rows:
        print(f"{name:34s} {n:7d} {g:9.2f} GFLOP/s")
    if "--csv" in sys.argv:
        path = sys.argv[sys.argv.index("--csv") + 1]
        with open(path, "w") as f:
            f.write("kernel,n,gflops\n")
            for name, n, g in rows:
                f.write(f"{name},{n},{g:.3f}\n")
        print("wrote", path)


if __name__ == "__main__":
    main()
