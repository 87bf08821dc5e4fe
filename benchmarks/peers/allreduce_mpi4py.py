"""The allreduce peer: mpi4py's Allreduce (float32 sum, in place) at the sizes dml-bench uses. Time per
iteration is the slowest rank's; the median over iterations is reported. Prints CSV lines on rank 0 in
dml-bench's columns: algorithm,np,bytes,time_us,algbw_GBps,busbw_GBps

usage: mpirun -np 2 python allreduce_mpi4py.py [--min 4096] [--max 268435456] [--factor 4] [--iters 20]
"""
import argparse
import time

import numpy as np
from mpi4py import MPI


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--min", type=int, default=4096)
    ap.add_argument("--max", type=int, default=256 << 20)
    ap.add_argument("--factor", type=int, default=4)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    a = ap.parse_args()
    comm = MPI.COMM_WORLD
    p = comm.Get_size()
    size = a.min
    if comm.Get_rank() == 0:
        print("algorithm,np,bytes,time_us,algbw_GBps,busbw_GBps")
    while size <= a.max:
        buf = np.ones(size // 4, dtype=np.float32)
        iters = a.iters if size < (64 << 20) else max(5, a.iters // 4)
        times = []
        for i in range(a.warmup + iters):
            comm.Barrier()
            t = time.perf_counter()
            comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
            dt = comm.allreduce(time.perf_counter() - t, op=MPI.MAX)
            if i >= a.warmup:
                times.append(dt)
        med = float(np.median(times))
        algbw = size / med / 1e9
        if comm.Get_rank() == 0:
            print(f"mpi4py,{p},{size},{med * 1e6:.1f},{algbw:.3f},{algbw * 2 * (p - 1) / p:.3f}")
        size *= a.factor


if __name__ == "__main__":
    main()
