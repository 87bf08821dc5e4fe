"""The hand-written peer: numpy + mpi4py data-parallel training, one Allreduce per step, on DML's synthetic
task with DML's global batches. Launch under mpirun; prints one CSV line on rank 0:
peer,model,np,batch,steps,samples_per_s,final_loss

usage: mpirun -np 2 python train_numpy_mpi4py.py --model softmax|mlp [--steps 1000] [--batch 256]
Set OPENBLAS_NUM_THREADS=1 (one thread per rank, like DML).
"""
import argparse
import os
import sys
import time

import numpy as np
from mpi4py import MPI

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from synthetic import Sampler, Synthetic, add_task_arguments, default_lr, shard  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    add_task_arguments(ap)
    a = ap.parse_args()
    lr = default_lr(a)
    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    task = Synthetic(a.seed, a.features, 10)
    lo, hi = shard(a.rows, rank, size)
    x, y = task.rows(lo, hi - lo)
    k = 10
    if a.model == "softmax":
        shapes = [(k, a.features), (k,)]
    else:
        shapes = [(a.hidden, a.features), (a.hidden,), (k, a.hidden), (k,)]
    sizes = [int(np.prod(s)) for s in shapes]
    flat = np.zeros(sum(sizes) + 2, dtype=np.float32)  # [gradients | loss sum | count]
    params = np.zeros(sum(sizes), dtype=np.float32)
    views, off = [], 0
    for s, n in zip(shapes, sizes):
        views.append((off, n, s))
        off += n
    if a.model == "mlp":
        rng = np.random.default_rng(a.seed)
        params[0:sizes[0]] = (rng.standard_normal(sizes[0]) * np.sqrt(2.0 / a.features)).astype(np.float32)
        o = sizes[0] + sizes[1]
        params[o:o + sizes[2]] = (rng.standard_normal(sizes[2]) * np.sqrt(2.0 / a.hidden)).astype(np.float32)

    def P(i):
        o, n, s = views[i]
        return params[o:o + n].reshape(s)

    def G(i):
        o, n, s = views[i]
        return flat[o:o + n].reshape(s)

    def forward_backward(xb, yb):
        if a.model == "softmax":
            z = xb @ P(0).T + P(1)
        else:
            h = xb @ P(0).T + P(1)
            np.maximum(h, 0, out=h)
            z = h @ P(2).T + P(3)
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        s = e.sum(axis=1, keepdims=True)
        loss = float((np.log(s[:, 0]) - z[np.arange(len(yb)), yb]).sum())
        d = e / s
        d[np.arange(len(yb)), yb] -= 1
        if a.model == "softmax":
            G(0)[...] = d.T @ xb
            G(1)[...] = d.sum(axis=0)
        else:
            G(2)[...] = d.T @ h
            G(3)[...] = d.sum(axis=0)
            dh = d @ P(2)
            dh[h <= 0] = 0
            G(0)[...] = dh.T @ xb
            G(1)[...] = dh.sum(axis=0)
        return loss

    sampler = Sampler(a.rows, a.batch, a.seed)
    nparams = len(params)
    t0 = None
    samples = 0
    for step in range(a.steps):
        if step == a.warmup:
            comm.Barrier()
            t0 = time.perf_counter()
            samples = 0
        rows = sampler.batch_rows(step)
        mine = rows[(rows >= lo) & (rows < hi)] - lo
        flat[:] = 0
        if len(mine):
            flat[nparams] = forward_backward(x[mine], y[mine])
        flat[nparams + 1] = len(mine)
        comm.Allreduce(MPI.IN_PLACE, flat, op=MPI.SUM)
        n = flat[nparams + 1]
        params -= np.float32(lr) * (flat[:nparams] / n)
        samples += int(n)
    comm.Barrier()
    elapsed = time.perf_counter() - t0
    # Final training loss over all rows (mean cross-entropy), as DML reports it.
    flat[:] = 0
    total = np.array([forward_backward(x, y), len(y)], dtype=np.float64)
    comm.Allreduce(MPI.IN_PLACE, total, op=MPI.SUM)
    if rank == 0:
        print(f"numpy+mpi4py,{a.model},{size},{a.batch},{a.steps},{samples / elapsed:.0f},{total[0] / total[1]:.4f}")


if __name__ == "__main__":
    main()
