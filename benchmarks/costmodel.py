#!/usr/bin/env python3
"""α-β-γ cost model of each allreduce algorithm, fitted to a `dml-bench allreduce` CSV (Python stdlib only).

    python3 benchmarks/costmodel.py allreduce.csv [--gamma-gbps 20] [--alpha-us 2 --link-gbit 100]

Model: time(p, n) = a(p, n)·α + b(p, n)·n·β + c(p, n)·n·γ, with n the message in bytes and a, b, c counted
from each algorithm's schedule (below): α the cost of one message (latency), β seconds per byte moved, γ
seconds per byte reduced. γ is not fitted (with one rank count it is collinear with β): it is the machine's
reduction speed, given by --gamma-gbps (the suite passes `dml-bench kernels`' out-of-cache axpy figure, read
as bytes of message reduced per second = GB/s moved / 3). α and β are fitted per algorithm by least squares
on the relative error (each point weighted by 1/measured time), so small and large messages count alike.

Extrapolation to P nodes (one rank per node) uses the stated network (α = --alpha-us, β = 1/link bandwidth)
and the measured γ; `shm` spans nodes through the ring, so it is extrapolated as the ring.
"""
import argparse
import csv
import math
import sys

SHM_BLOCK = 1 << 20  # SharedMemoryAllreduce.blockBytes default: two syncs per block


def lg(p):
    return math.ceil(math.log2(p)) if p > 1 else 0


def coefficients(algorithm, p, n):
    """(a, b, c): messages on the critical path, bytes moved per byte of message, bytes reduced per byte."""
    if p <= 1:
        return 0.0, 0.0, 0.0
    if algorithm in ("ring", "mpi"):
        # Reduce-scatter + allgather: 2(p−1) steps of n/p bytes; (p−1)/p·n reduced. OpenMPI's own allreduce
        # (`mpi`) is modelled as a ring too (its large-message algorithms are ring/Rabenseifner-like).
        return 2.0 * (p - 1), 2.0 * (p - 1) / p, (p - 1) / p
    if algorithm == "rd":
        # log2 p exchanges of the whole buffer (+2 for the fold-in/fold-out when p is not a power of two).
        extra = 0 if p & (p - 1) == 0 else 2
        return float(lg(p) + extra), float(lg(p) + extra), float(lg(p))
    if algorithm == "central":
        # Gather: rank 0 receives p−1 buffers one after another and reduces them; then a binomial broadcast.
        return float(p - 1 + lg(p)), float(p - 1 + lg(p)), float(p - 1)
    if algorithm == "shm":
        # One node: 2 syncs per block (α = one sync), each rank streams its buffer in and out (~(2 + 2/p)·n).
        return 2.0 * math.ceil(n / SHM_BLOCK), 2.0 + 2.0 / p, (p - 1) / p
    raise KeyError(algorithm)


def read(path):
    rows = []
    with open(path) as f:
        for r in csv.DictReader(f):
            rows.append({"algorithm": r["algorithm"], "np": int(r["np"]), "bytes": int(r["bytes"]),
                         "time_us": float(r["time_us"]), "transport": r.get("transport", "")})
    return rows


def solve(rows, k):
    """Least squares: rows of (x_1..x_k, y); returns x ≥ 0 (a negative coefficient is fixed at 0 and the rest
    refitted). Normal equations by Gaussian elimination: k is 2 or 3."""
    free = list(range(k))
    while True:
        m = len(free)
        A = [[sum(r[i] * r[j] for r in rows) for j in free] + [sum(r[i] * r[k] for r in rows)] for i in free]
        for c in range(m):
            piv = max(range(c, m), key=lambda r: abs(A[r][c]))
            A[c], A[piv] = A[piv], A[c]
            if abs(A[c][c]) < 1e-300:
                A[c][c] = 1e-300
            for r in range(m):
                if r != c:
                    f = A[r][c] / A[c][c]
                    A[r] = [x - f * y for x, y in zip(A[r], A[c])]
        x = [0.0] * k
        for c, i in enumerate(free):
            x[i] = A[c][m] / A[c][c]
        neg = [i for i in free if x[i] < 0]
        if not neg:
            return x
        free = [i for i in free if i not in neg]
        if not free:
            return [0.0] * k


def fit(points, algorithm, gamma, cache_bytes):
    """(α, β_cache, β_mem) in seconds and seconds/byte, minimising Σ((model − t)/t)². β_cache applies to
    messages of at most `cache_bytes` (working sets in the last-level cache), β_mem above: one machine's
    memory is two links of different speed. Coefficients are never negative."""
    rows = []
    for pt in points:
        a, b, c = coefficients(algorithm, pt["np"], pt["bytes"])
        t = pt["time_us"] * 1e-6
        n = pt["bytes"]
        small = n <= cache_bytes
        rows.append((a / t, b * n / t if small else 0.0, 0.0 if small else b * n / t, 1 - c * n * gamma / t))
    return tuple(solve(rows, 3))


def predict(algorithm, p, n, alpha, beta, gamma, beta_mem=None, cache_bytes=None):
    """Seconds; with beta_mem, messages above cache_bytes move at beta_mem."""
    a, b, c = coefficients(algorithm, p, n)
    if beta_mem is not None and n > cache_bytes:
        beta = beta_mem
    return a * alpha + b * n * beta + c * n * gamma


def fit_all(rows, gamma, cache_bytes):
    """{(algorithm, transport): (α, β_cache, β_mem, [(np, bytes, measured_us, predicted_us, error)])} for
    every algorithm that has a model."""
    out = {}
    keys = sorted({(r["algorithm"], r["transport"]) for r in rows})
    for alg, transport in keys:
        try:
            coefficients(alg, 2, 1)
        except KeyError:
            continue
        pts = [r for r in rows if r["algorithm"] == alg and r["transport"] == transport and r["np"] > 1]
        if not pts:
            continue
        alpha, beta, beta_mem = fit(pts, alg, gamma, cache_bytes)
        table = []
        for r in sorted(pts, key=lambda r: (r["np"], r["bytes"])):
            pred = predict(alg, r["np"], r["bytes"], alpha, beta, gamma, beta_mem, cache_bytes) * 1e6
            table.append((r["np"], r["bytes"], r["time_us"], pred, (pred - r["time_us"]) / r["time_us"]))
        out[(alg, transport)] = (alpha, beta, beta_mem, table)
    return out


def gbps(beta):
    """Seconds per byte as GB/s ("inf" for 0: no byte term was needed)."""
    return f"{1 / beta / 1e9:.2f}" if beta > 0 else "inf"


def median(values):
    s = sorted(values)
    return (s[(len(s) - 1) // 2] + s[len(s) // 2]) / 2


def size_text(n):
    for unit, k in (("G", 30), ("M", 20), ("K", 10)):
        if n >= 1 << k and n % (1 << k) == 0:
            return f"{n >> k}{unit}"
    return str(n)


def extrapolate(gamma, alpha_net, beta_net, nodes=(64, 512), sizes=(4 << 10, 31408, 814128, 64 << 20, 256 << 20)):
    """[(algorithm, P, bytes, seconds)] on the stated network; shm is the ring across nodes."""
    out = []
    for alg in ("ring", "rd", "central"):
        for p in nodes:
            for n in sizes:
                out.append((alg, p, n, predict(alg, p, n, alpha_net, beta_net, gamma)))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("csv")
    ap.add_argument("--gamma-gbps", type=float, default=20.0, help="bytes of message reduced per second, GB/s")
    ap.add_argument("--cache-bytes", type=int, default=4 << 20, help="largest message whose working set stays in cache")
    ap.add_argument("--alpha-us", type=float, default=2.0, help="network latency per message, µs")
    ap.add_argument("--link-gbit", type=float, default=100.0, help="network bandwidth per link, Gbit/s")
    a = ap.parse_args()
    gamma = 1 / (a.gamma_gbps * 1e9)
    fits = fit_all(read(a.csv), gamma, a.cache_bytes)
    if not fits:
        sys.exit(f"{a.csv}: no rows with np > 1 for a modelled algorithm")
    for (alg, transport), (alpha, beta, beta_mem, table) in fits.items():
        errs = [abs(e) for *_, e in table]
        print(f"{alg}{' ' + transport if transport else ''}: alpha {alpha * 1e6:.2f} us, beta {gbps(beta)} GB/s in cache, "
              f"{gbps(beta_mem)} GB/s beyond; |error| median {100 * median(errs):.0f}%, max {100 * max(errs):.0f}%")
        for p, n, m, pr, e in table:
            print(f"   np={p} {size_text(n):>5}: measured {m:10.1f} us  predicted {pr:10.1f} us  {100 * e:+6.0f}%")
    beta_net = 8 / (a.link_gbit * 1e9)
    print(f"extrapolation: alpha {a.alpha_us} us, {a.link_gbit} Gbit/s links, gamma {a.gamma_gbps} GB/s")
    for alg, p, n, s in extrapolate(gamma, a.alpha_us * 1e-6, beta_net):
        print(f"   {alg:8s} P={p:4d} {size_text(n):>7}: {s * 1e6:12.1f} us")


if __name__ == "__main__":
    main()
