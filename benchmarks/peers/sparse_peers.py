#!/usr/bin/env python3
"""The sparse peers, written the way a careful user writes them (float32 CSR where the tool allows it,
preallocated buffers, one collective per function evaluation):

    sparse_peers.py vw TRAIN.svm TEST.svm [--bits 22]
        Vowpal Wabbit, one pass of logistic SGD through its own driver and parser
        (Workspace("-d FILE --loss_function logistic -b BITS")); the LIBSVM files are converted to VW's text
        format first (not timed). Prints examples/s (parsing included) and the test log-loss.

    mpirun -np N sparse_peers.py lbfgs TRAIN.svm --features D --weight-decay L [--tol T] [--max-iter K] [--target F] [--trace FILE]
        scipy.sparse + mpi4py: each rank reads its byte range of the file (load_svmlight_file's offset and
        length), full-batch L-BFGS (scipy.optimize L-BFGS-B, no bounds) on
        mean logistic loss + L/2 * |w|^2 (bias not regularised, as dml-train), one Allreduce of
        [loss, gradient] per evaluation. Every rank runs the same optimizer on the same reduced bits.
        Prints the objective, iterations, evaluations, time and non-zeros processed per second.

One CSV line on stdout per run: peer,np,rows,nnz,seconds,figure,unit,objective_or_logloss.
"""
import argparse
import json
import os
import sys
import time

import numpy as np


def to_vw(src, dst):
    """LIBSVM -> VW text: `label |f idx:val ...` with labels -1/1 (VW's logistic loss wants ±1)."""
    with open(src) as f, open(dst, "w") as out:
        for line in f:
            label, _, rest = line.partition(" ")
            out.write(("1" if float(label) > 0 else "-1") + " |f " + rest)


def vw(a):
    from vowpalwabbit import Workspace
    work = a.work or os.path.dirname(os.path.abspath(a.train))
    train_vw = os.path.join(work, os.path.basename(a.train) + ".vw")
    test_vw = os.path.join(work, os.path.basename(a.test) + ".vw")
    model = train_vw + ".model"
    preds = test_vw + ".pred"
    to_vw(a.train, train_vw)
    to_vw(a.test, test_vw)
    start, cpu = time.perf_counter(), time.process_time()
    w = Workspace(f"-d {train_vw} --loss_function logistic -b {a.bits} --quiet -f {model}")
    examples = int(w.get_weighted_examples())
    w.finish()
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    t = Workspace(f"-t -i {model} -d {test_vw} --link logistic --quiet -p {preds}")
    t.finish()
    p = np.clip(np.loadtxt(preds, usecols=0), 1e-15, 1 - 1e-15)
    y = np.array([float(line.split(" ", 1)[0]) > 0 for line in open(a.test)], dtype=np.float64)
    logloss = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    nnz = sum(line.count(":") for line in open(a.train))
    print(f"vw,1,{examples},{nnz},{seconds:.4f},{examples / seconds:.1f},examples/s,{logloss:.6f}")
    # CPU seconds of the parse + learn (every thread of this process), on stderr: a figure a shared machine
    # disturbs less than the wall time.
    print(f"# cpu_seconds {cpu:.4f}", file=sys.stderr)
    for f in (train_vw, test_vw, model, preds):
        os.remove(f)


def lbfgs(a):
    from mpi4py import MPI
    from scipy.optimize import minimize
    from sklearn.datasets import load_svmlight_file
    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    total = os.path.getsize(a.train)
    lo, hi = total * rank // size, total * (rank + 1) // size
    X, y = load_svmlight_file(a.train, n_features=a.features, dtype=np.float32, zero_based=False,
                              offset=lo, length=hi - lo)
    X = X.tocsr()
    y = np.where(y > 0, 1.0, -1.0).astype(np.float32)
    n = comm.allreduce(X.shape[0])
    nnz = comm.allreduce(X.nnz)
    d = a.features
    lam = a.weight_decay
    local = np.empty(d + 2, dtype=np.float64)      # [gradient of w | gradient of b | loss sum]
    reduced = np.empty(d + 2, dtype=np.float64)
    z = np.empty(X.shape[0], dtype=np.float32)
    r = np.empty(X.shape[0], dtype=np.float32)
    evaluations = [0]

    def fun(theta):
        w = theta[:d].astype(np.float32)
        b = np.float32(theta[d])
        np.add(X @ w, b, out=z)
        np.multiply(z, -y, out=r)                   # r = -y z
        local[d + 1] = np.logaddexp(0, r, dtype=np.float64).sum()
        np.negative(r, out=z)
        np.exp(z, out=z)
        np.add(z, 1, out=z)
        np.divide(-y, z, out=z)                     # dloss/dz = -y * sigmoid(-y z) = -y / (1 + e^{y z})
        local[:d] = X.T @ z
        local[d] = z.sum(dtype=np.float64)
        comm.Allreduce(local, reduced, op=MPI.SUM)
        evaluations[0] += 1
        g = reduced[:d + 1] / n
        g[:d] += lam * theta[:d]
        return reduced[d + 1] / n + 0.5 * lam * theta[:d] @ theta[:d], g

    trace = []                                      # (seconds, objective) after each iteration

    def record(intermediate_result):
        trace.append((time.perf_counter() - start, intermediate_result.fun))

    fun0 = fun(np.zeros(d + 1))[0]                 # the objective at the start (untimed), for the trace
    evaluations[0] = 0
    comm.Barrier()
    start = time.perf_counter()
    result = minimize(fun, np.zeros(d + 1), jac=True, method="L-BFGS-B", callback=record,
                      options={"maxiter": a.max_iter, "gtol": a.tol, "ftol": 0, "maxcor": a.memory})
    seconds = time.perf_counter() - start
    if rank == 0 and a.trace:
        with open(a.trace, "w") as f:
            json.dump([[0.0, float(fun0)]] + [[t, float(v)] for t, v in trace], f)
    if rank == 0 and a.target is not None:
        reached = next((t for t, f in trace if f <= a.target), None)
        print(f"# time to objective {a.target:.12g}: " + (f"{reached:.4f} s" if reached is not None else "not reached"),
              file=sys.stderr)
    if rank == 0:
        rate = evaluations[0] * nnz / seconds
        print(f"scipy-lbfgs+mpi4py,{size},{n},{nnz},{seconds:.4f},{rate:.1f},nnz/s,{result.fun:.12g}")
        print(f"# iterations {result.nit}, evaluations {evaluations[0]}, |g|_inf {np.abs(result.jac).max():.3g}: {result.message}",
              file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="peer", required=True)
    v = sub.add_parser("vw")
    v.add_argument("train")
    v.add_argument("test")
    v.add_argument("--bits", type=int, default=22)
    v.add_argument("--work", help="where the converted files go (default: beside TRAIN)")
    b = sub.add_parser("lbfgs")
    b.add_argument("train")
    b.add_argument("--features", type=int, required=True)
    b.add_argument("--weight-decay", type=float, required=True)
    b.add_argument("--tol", type=float, default=1e-6)
    b.add_argument("--max-iter", type=int, default=500)
    b.add_argument("--memory", type=int, default=10)
    b.add_argument("--trace", help="write [[seconds, objective], …] after each iteration (rank 0) as JSON to this file")
    b.add_argument("--target", type=float, help="also print the time at which the objective first reached this value")
    a = ap.parse_args()
    vw(a) if a.peer == "vw" else lbfgs(a)


if __name__ == "__main__":
    main()
