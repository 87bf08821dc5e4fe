#!/usr/bin/env python3
"""What `--reproducible` costs over the default step at p ranks: the α-β-γ model of benchmarks/costmodel.py for
the communication, plus the compute per row and per leaf measured on one rank (Python stdlib only).

    python3 benchmarks/costmodel_reproducible.py --n 203530 --row-us 4.7 --leaf-us 40 [--batch 256] [--ranks 2,8,64]

Default step:      compute(B/p rows) + ring allreduce of 4n bytes (reduce-scatter + allgather, Float32).
Reproducible step: compute(⌈L/p⌉·64 rows, L = B/64 leaves, balanced: the busiest rank's share) + ⌈L/p⌉ leaf passes
                   (quantise + max, --leaf-us each) + ring reduce-scatter of 8n bytes (Int64) + allgather of 4n bytes
                   (Float32). The moved rows (Σ max(0, held − share) leaves of 64·(features+1)·4 bytes) travel during
                   the previous step's collectives: reported, not added.
Ring half over b bytes: (p−1)·α + (p−1)/p·b·β (+ (p−1)/p·b·γ for the reduce-scatter's additions).
--row-us: the default step's compute per row on one rank (step time at np 1 ÷ batch); --leaf-us: what one leaf adds
on one rank (reproducible minus default step time at np 1, ÷ leaves). Network as costmodel.py's extrapolation
(α = --alpha-us, β = 1 / --link-gbit, γ = --gamma-gbps).
"""
import argparse
import math
import random


def ring_half(p, b, alpha, beta, gamma=0.0):
    return 0.0 if p <= 1 else (p - 1) * alpha + (p - 1) / p * b * (beta + gamma)


def expected_moves(leaves, p, trials=20000, seed=1):
    """Mean leaves moved per step by the balance (blocks drawn uniformly over p equal shards)."""
    rng = random.Random(seed)
    each, extra = divmod(leaves, p)
    total = 0
    for _ in range(trials):
        held = [0] * p
        for _ in range(leaves):
            held[rng.randrange(p)] += 1
        share = [each] * p
        for r in sorted(range(p), key=lambda r: (-held[r], r))[:extra]:
            share[r] += 1
        total += sum(max(0, h - s) for h, s in zip(held, share))
    return total / trials


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, required=True, help="gradient values (MLP 784→256→10: 203530; softmax 784→10: 7850)")
    ap.add_argument("--features", type=int, default=784)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--row-us", type=float, required=True, help="default compute per row on one rank, µs")
    ap.add_argument("--leaf-us", type=float, required=True, help="extra per leaf on one rank, µs")
    ap.add_argument("--ranks", default="2,8,64")
    ap.add_argument("--alpha-us", type=float, default=2.0)
    ap.add_argument("--link-gbit", type=float, default=100.0)
    ap.add_argument("--gamma-gbps", type=float, default=20.0)
    a = ap.parse_args()
    alpha, beta, gamma = a.alpha_us * 1e-6, 8 / (a.link_gbit * 1e9), 1 / (a.gamma_gbps * 1e9)
    leaves = math.ceil(a.batch / 64)
    print(f"n {a.n}, batch {a.batch} ({leaves} leaves), {a.row_us} µs/row, {a.leaf_us} µs/leaf; "
          f"network α {a.alpha_us} µs, {a.link_gbit} Gbit/s, γ {a.gamma_gbps} GB/s")
    for p in (int(x) for x in a.ranks.split(",")):
        compute = a.batch / p * a.row_us * 1e-6
        default = compute + ring_half(p, 4 * a.n, alpha, beta, gamma) + ring_half(p, 4 * a.n, alpha, beta)
        share = math.ceil(leaves / p)
        rows = min(a.batch, share * 64)
        repro = (rows * a.row_us + share * a.leaf_us) * 1e-6 + ring_half(p, 8 * a.n, alpha, beta, gamma) + ring_half(p, 4 * a.n, alpha, beta)
        moved = expected_moves(leaves, p) if p > 1 else 0.0
        print(f"  p={p:3d}: default {default * 1e6:9.1f} µs, reproducible {repro * 1e6:9.1f} µs ({repro / default:.2f}×); "
              f"busiest rank computes {rows} rows (default {a.batch / p:g}); rows moved {moved:.2f} leaves/step "
              f"= {moved * 64 * (a.features + 1) * 4 / 1e3:.0f} KB")


if __name__ == "__main__":
    main()
