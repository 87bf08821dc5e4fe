#!/usr/bin/env python3
"""LIBLINEAR's L2-regularised logistic regression (-s 0, primal trust-region Newton), the peer of
`dml-train --optimizer lbfgs|newton --model logistic`, on the same LIBSVM file.

    benchmarks/peers/liblinear_peer.py DATA.svm --weight-decay LAMBDA [--eps 0.1,0.01,...] [--repeat 3]

The same problem. DML minimises F(w, b) = (1/n)·Σ log(1 + exp(−ỹ·(w·x + b))) + (λ/2)·‖w‖², the bias b not
regularised; LIBLINEAR minimises f(w) = ½‖w‖² + C·Σ log(1 + exp(−ỹ·w·x)). With C = 1/(n·λ), F = λ·f for the
same w, so the two have the same minimiser and relative gaps. LIBLINEAR's -B adds a bias that it regularises,
so it runs with -B -1 (no bias) on data that makes DML's optimal bias exactly 0: every row (x, ỹ) comes with its
mirror (−x, −ỹ) (benchmarks/newton_vs_liblinear.py writes such a file), so F(w, b) = F(w, −b) and, F being
convex in b, b = 0 is optimal for every w. The values are multiples of 1/64, exact in Float32 and Float64, so
both read the same numbers.

Prints one JSON line per eps: LIBLINEAR's training time (the best of --repeat, reading excluded), F = λ·f at its
weights (float64), and ‖w‖. Single core, as LIBLINEAR is.
"""
import argparse
import json
import time

import numpy as np
from liblinear.liblinearutil import parameter, problem, svm_read_problem, train


def objective(w, y, x, lam):
    """DML's F at weights w (bias 0) in float64: mean logistic loss + λ/2·‖w‖²."""
    z = y * (x @ w)
    return float(np.mean(np.logaddexp(0.0, -z)) + 0.5 * lam * np.dot(w, w))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("--weight-decay", type=float, required=True, help="DML's λ; LIBLINEAR's C is 1/(n·λ)")
    ap.add_argument("--eps", default="0.1,0.03,0.01,0.003,0.001,3e-4,1e-4,3e-5,1e-5,1e-6")
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    y, x = svm_read_problem(a.data, return_scipy=True)
    n, d = x.shape
    c = 1.0 / (n * a.weight_decay)
    prob = problem(y, x)
    for eps in [float(e) for e in a.eps.split(",")]:
        best, model = float("inf"), None
        for _ in range(a.repeat):
            param = parameter(f"-s 0 -c {c!r} -e {eps!r} -B -1 -q")
            start = time.perf_counter()
            model = train(prob, param)
            best = min(best, time.perf_counter() - start)
        w = np.array([model.w[i] for i in range(d)], dtype=np.float64)
        # LIBLINEAR's first label is the first one it read: its w scores that label, so orient it to ỹ = +1.
        if model.get_labels()[0] != 1:
            w = -w
        print(json.dumps({"peer": "liblinear", "eps": eps, "seconds": best, "objective": objective(w, y, x, a.weight_decay),
                          "rows": n, "features": d, "C": c}), flush=True)


if __name__ == "__main__":
    main()
