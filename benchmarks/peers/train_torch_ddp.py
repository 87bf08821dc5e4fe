"""The framework peer: PyTorch DistributedDataParallel on CPU (gloo), one thread per rank, on DML's synthetic
task with DML's global batches. Launch under mpirun (the rank and world size are read from OpenMPI's
environment); prints one CSV line on rank 0: peer,model,np,batch,steps,samples_per_s,final_loss

usage: mpirun -np 2 python train_torch_ddp.py --model softmax|mlp [--steps 1000] [--port 29511]
"""
import argparse
import os
import sys
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from synthetic import Sampler, Synthetic, add_task_arguments, default_lr, shard  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    add_task_arguments(ap)
    ap.add_argument("--port", type=int, default=29511)
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads per rank (1: like DML at np 2)")
    a = ap.parse_args()
    lr = default_lr(a)
    torch.set_num_threads(a.threads)
    rank = int(os.environ.get("OMPI_COMM_WORLD_RANK", "0"))
    size = int(os.environ.get("OMPI_COMM_WORLD_SIZE", "1"))
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{a.port}", rank=rank, world_size=size)
    task = Synthetic(a.seed, a.features, 10)
    lo, hi = shard(a.rows, rank, size)
    xs, ys = task.rows(lo, hi - lo)
    x, y = torch.from_numpy(xs), torch.from_numpy(ys)
    torch.manual_seed(a.seed)
    if a.model == "softmax":
        net = torch.nn.Linear(a.features, 10)
        torch.nn.init.zeros_(net.weight)
        torch.nn.init.zeros_(net.bias)
    else:
        net = torch.nn.Sequential(torch.nn.Linear(a.features, a.hidden), torch.nn.ReLU(), torch.nn.Linear(a.hidden, 10))
    model = torch.nn.parallel.DistributedDataParallel(net)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    sampler = Sampler(a.rows, a.batch, a.seed)
    t0, samples = None, 0
    for step in range(a.steps):
        if step == a.warmup:
            dist.barrier()
            t0 = time.perf_counter()
            samples = 0
        rows = sampler.batch_rows(step)
        mine = torch.from_numpy(rows[(rows >= lo) & (rows < hi)] - lo)
        # DDP averages gradients over ranks; scaling each rank's loss sum by size/global makes that the
        # exact global-batch mean even when ranks hold different numbers of the batch's rows.
        loss = F.cross_entropy(model(x[mine]), y[mine], reduction="sum") * (size / len(rows))
        opt.zero_grad()
        loss.backward()
        opt.step()
        samples += len(rows)
    dist.barrier()
    elapsed = time.perf_counter() - t0
    with torch.no_grad():
        total = torch.tensor([F.cross_entropy(net(x), y, reduction="sum").item(), float(len(y))], dtype=torch.float64)
    dist.all_reduce(total)
    if rank == 0:
        print(f"torch-ddp,{a.model},{size},{a.batch},{a.steps},{samples / elapsed:.0f},{(total[0] / total[1]).item():.4f}")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
