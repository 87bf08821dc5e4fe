"""The "cheapest loop" numpy + mpi4py peer (issue 20): an upper bound on numpy's training speed on DML's
synthetic task. float32, `np.matmul(..., out=)` into preallocated buffers, contiguous batches cut from the
rank's rows in order (no shuffling, no gather), no loss computed per step, one `Allreduce` of the flat gradient
per step and none at np 1. No real training loop is cheaper. Prints one CSV line on rank 0:
peer,model,np,batch,steps,samples_per_s,final_loss

usage: mpirun -np 2 python train_numpy_cheapest.py --model softmax|mlp [--steps 1000] [--batch 256]
Threads: OPENBLAS_NUM_THREADS=T (1 per rank, like DML's default at np 2; 2 to compare with dml --threads 2).
"""
import argparse
import os
import sys
import time

import numpy as np
from mpi4py import MPI

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from synthetic import Synthetic, add_task_arguments, default_lr, shard  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    add_task_arguments(ap)
    a = ap.parse_args()
    lr = np.float32(default_lr(a))
    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    task = Synthetic(a.seed, a.features, 10)
    lo, hi = shard(a.rows, rank, size)
    x, y = task.rows(lo, hi - lo)
    x = np.ascontiguousarray(x, dtype=np.float32)
    k, f, hdim = 10, a.features, a.hidden
    b = a.batch // size  # this rank's rows per step
    if a.model == "softmax":
        shapes = [(k, f), (k,)]
    else:
        shapes = [(hdim, f), (hdim,), (k, hdim), (k,)]
    sizes = [int(np.prod(s)) for s in shapes]
    params = np.zeros(sum(sizes), dtype=np.float32)
    grads = np.zeros(sum(sizes), dtype=np.float32)
    offs = np.cumsum([0] + sizes)
    P = [params[offs[i]:offs[i + 1]].reshape(s) for i, s in enumerate(shapes)]
    G = [grads[offs[i]:offs[i + 1]].reshape(s) for i, s in enumerate(shapes)]
    rng = np.random.default_rng(a.seed)
    if a.model == "mlp":
        P[0][...] = rng.standard_normal((hdim, f)).astype(np.float32) * np.float32(np.sqrt(2.0 / f))
        P[2][...] = rng.standard_normal((k, hdim)).astype(np.float32) * np.float32(np.sqrt(2.0 / hdim))
    h = np.empty((b, hdim), dtype=np.float32)
    dh = np.empty((b, hdim), dtype=np.float32)
    z = np.empty((b, k), dtype=np.float32)
    zmax = np.empty((b, 1), dtype=np.float32)
    zsum = np.empty((b, 1), dtype=np.float32)
    onehot = np.zeros((len(y), k), dtype=np.float32)
    onehot[np.arange(len(y)), y] = 1
    scale = np.float32(lr / a.batch)
    batches = max(1, len(y) // b)

    def step(i):
        r0 = (i % batches) * b
        xb, ob = x[r0:r0 + b], onehot[r0:r0 + b]
        if a.model == "softmax":
            np.matmul(xb, P[0].T, out=z)
            np.add(z, P[1], out=z)
        else:
            np.matmul(xb, P[0].T, out=h)
            np.add(h, P[1], out=h)
            np.maximum(h, 0, out=h)
            np.matmul(h, P[2].T, out=z)
            np.add(z, P[3], out=z)
        np.max(z, axis=1, keepdims=True, out=zmax)
        np.subtract(z, zmax, out=z)
        np.exp(z, out=z)
        np.sum(z, axis=1, keepdims=True, out=zsum)
        np.divide(z, zsum, out=z)
        np.subtract(z, ob, out=z)
        if a.model == "softmax":
            np.matmul(z.T, xb, out=G[0])
            np.sum(z, axis=0, out=G[1])
        else:
            np.matmul(z.T, h, out=G[2])
            np.sum(z, axis=0, out=G[3])
            np.matmul(z, P[2], out=dh)
            np.multiply(dh, h > 0, out=dh)
            np.matmul(dh.T, xb, out=G[0])
            np.sum(dh, axis=0, out=G[1])
        if size > 1:
            comm.Allreduce(MPI.IN_PLACE, grads, op=MPI.SUM)
        np.multiply(grads, scale, out=grads)
        np.subtract(params, grads, out=params)

    for i in range(a.warmup):
        step(i)
    comm.Barrier()
    t0 = time.perf_counter()
    for i in range(a.warmup, a.warmup + a.steps):
        step(i)
    comm.Barrier()
    elapsed = time.perf_counter() - t0
    if rank == 0:
        print(f"numpy+mpi4py cheapest loop,{a.model},{size},{a.batch},{a.steps},{a.steps * a.batch / elapsed:.0f},")


if __name__ == "__main__":
    main()
