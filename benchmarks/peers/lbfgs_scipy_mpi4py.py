#!/usr/bin/env python3
"""The hand-written peer an HPC user would write for full-batch L-BFGS: scipy.sparse rows, scipy.optimize's
L-BFGS-B, mpi4py, one Allreduce of [gradient | loss] per evaluation. Every rank runs the same minimize on the
same reduced bits, so no broadcast is needed. The same objective as dml-train --model logistic: mean logistic
loss + (λ/2)·‖w‖², the bias unregularised.

    mpirun -np N python3 benchmarks/peers/lbfgs_scipy_mpi4py.py DATA.svm --weight-decay LAMBDA [--memory 10]

Each rank keeps rows rank::N of the file (reading excluded from the time). Rank 0 prints one JSON line: the
trajectory (seconds since the start of minimize, F) at every iteration, the evaluations, and the final F.
"""
import argparse
import json
import time

import numpy as np
from mpi4py import MPI
from scipy.optimize import minimize
from sklearn.datasets import load_svmlight_file


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("--weight-decay", type=float, required=True)
    ap.add_argument("--memory", type=int, default=10)
    ap.add_argument("--iterations", type=int, default=500)
    a = ap.parse_args()
    comm = MPI.COMM_WORLD
    x, y = load_svmlight_file(a.data)
    n, d = x.shape
    x, y = x[comm.rank::comm.size].tocsr(), y[comm.rank::comm.size]
    lam = a.weight_decay
    buffer = np.empty(d + 2)
    evaluations = [0]

    def fun(theta):
        w, b = theta[:d], theta[d]
        z = y * (x @ w + b)
        local = np.empty(d + 2)
        s = -y * np.exp(-np.logaddexp(0.0, z))  # dℓ/dscore = −ỹ·σ(−ỹ·score)
        local[:d] = x.T @ s
        local[d] = s.sum()
        local[d + 1] = np.logaddexp(0.0, -z).sum()
        comm.Allreduce(local, buffer, op=MPI.SUM)
        evaluations[0] += 1
        g = buffer[:d + 1] / n
        g[:d] += lam * w
        return buffer[d + 1] / n + 0.5 * lam * w @ w, g

    trajectory = []
    start = time.perf_counter()

    def record(theta):
        trajectory.append((time.perf_counter() - start, fun_value[0]))

    fun_value = [0.0]

    def tracked(theta):
        f, g = fun(theta)
        fun_value[0] = f
        return f, g

    result = minimize(tracked, np.zeros(d + 1), jac=True, method="L-BFGS-B", callback=record,
                      options={"maxcor": a.memory, "maxiter": a.iterations, "gtol": 1e-12, "ftol": 1e-15})
    seconds = time.perf_counter() - start
    if comm.rank == 0:
        print(json.dumps({"peer": "scipy L-BFGS-B + mpi4py", "ranks": comm.size, "trajectory": trajectory, "seconds": seconds,
                          "evaluations": evaluations[0], "iterations": int(result.nit), "objective": float(result.fun),
                          "bias": float(result.x[d]), "message": str(result.message)}), flush=True)


if __name__ == "__main__":
    main()
