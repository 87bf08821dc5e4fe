#!/usr/bin/env python3
"""α-β cost model of the allreduce algorithms across nodes whose links are the bottleneck, fitted to
`dml-bench allreduce` CSVs from benchmarks/cluster_allreduce.sh (Python stdlib only).

    python3 benchmarks/costmodel_nodes.py np4-r1.csv np8-r1.csv ... --nodes 4 [--block 4M]

Model, with p ranks on N nodes (q = p/N per node, ranks placed in blocks: rank r on node r // q), n bytes:
time = a·α + b·n·β, α the cost of one message step, β seconds per byte through one node's link, and
  ring  a = 2(p−1)                      b = 2(p−1)/p       (one stream of n/p per step leaves each node)
  mpi   as the ring (OpenMPI's large-message allreduce is ring-like)
  rd    a = log2 p                      b = q·log2 N       (log2 N of the exchanges cross nodes, all q ranks'
                                                             whole buffers through the link each time)
  hier  a = (2(N−1) + 2)·⌈n/block⌉      b = 2(N−1)/N       (q > 1: per block two shm syncs and the rails'
                                                             ring; q = 1: the ring over the N nodes)
  auto  its policy (from the run's log line, else rd<=16K,hier): the chosen algorithm's fitted model, not
        fitted itself — a check of the policy and of the components' models.
The reductions (γ) are left out: at a capped link they are far faster than the network.
α and β are fitted per algorithm, minimising the sum of absolute relative errors (iteratively reweighted
least squares; both rank counts together: a few points delayed by the shared CPU weigh no more than their
error) on the "fit" points — every other size, starting with the smallest — and checked on the others; the median of
the rounds is used for each (np, size). Prints each point, the error, the share of check points within 25%,
and where hier and the ring cross.
"""
import argparse
import csv
import math
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from costmodel import solve, median, size_text  # noqa: E402


def coefficients(alg, p, n, nodes, block):
    q = p // nodes
    if alg in ("ring", "mpi") or (alg == "hier" and q == 1):
        m = p if alg != "hier" else nodes
        return 2.0 * (m - 1), 2.0 * (m - 1) / m
    if alg == "rd":
        return float(math.log2(p)), float(q * math.log2(nodes))
    if alg == "hier":
        blocks = math.ceil(n / block)
        return (2.0 * (nodes - 1) + 2.0) * blocks, 2.0 * (nodes - 1) / nodes
    raise KeyError(alg)


def policy_choice(policy, n):
    for rule in policy[:-1]:
        alg, limit = rule
        if n <= limit:
            return alg
    return policy[-1][0]


def parse_policy(text):
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "": 1}
    out = []
    for part in text.split(","):
        m = re.fullmatch(r"(\w+)<=(\d+)([KMG]?)", part)
        out.append((m.group(1), int(m.group(2)) * units[m.group(3)]) if m else (part, None))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("csv", nargs="+")
    ap.add_argument("--nodes", type=int, required=True)
    ap.add_argument("--block", default="4M", help="hier's block (HierarchicalAllreduce.blockBytes)")
    a = ap.parse_args()
    block = int(a.block[:-1]) << {"K": 10, "M": 20}[a.block[-1]] if a.block[-1] in "KM" else int(a.block)

    times = {}
    policy = parse_policy("rd<=16K,hier")
    for path in a.csv:
        log = Path(path).with_suffix(".log")
        if log.exists():
            m = re.search(r"# auto policy: (\S+)", log.read_text())
            if m:
                policy = parse_policy(m.group(1))
        with open(path) as f:
            for r in csv.DictReader(f):
                times.setdefault((r["algorithm"], int(r["np"]), int(r["bytes"])), []).append(float(r["time_us"]))
    points = {k: median(v) for k, v in times.items()}
    sizes = sorted({n for _, _, n in points})
    fit_sizes = set(sizes[0::2])

    models = {}
    checks = []
    checks_by_size = []
    for alg in ("ring", "mpi", "rd", "hier"):
        pts = [(p, n, t) for (al, p, n), t in points.items() if al == alg]
        if not pts:
            continue
        base = []
        for p, n, t in pts:
            if n not in fit_sizes:
                continue
            ca, cb = coefficients(alg, p, n, a.nodes, block)
            t *= 1e-6
            base.append((ca / t, cb * n / t))
        # Least absolute relative error by iteratively reweighted least squares: a point that a shared,
        # loaded CPU delayed 10x (scheduling, not the network) must not drag the line away from the rest.
        weights = [1.0] * len(base)
        for _ in range(30):
            rows = [(w * x, w * y, w) for w, (x, y) in zip(weights, base)]
            alpha, beta = solve(rows, 2)
            weights = [1 / math.sqrt(max(abs(x * alpha + y * beta - 1), 0.02)) for x, y in base]
        models[alg] = (alpha, beta)
        print(f"{alg}: alpha {alpha * 1e6:.1f} us, link {n_gbit(beta)} (fitted on {len(base)} points)")
        for p, n, t in sorted(pts):
            ca, cb = coefficients(alg, p, n, a.nodes, block)
            pred = (ca * alpha + cb * n * beta) * 1e6
            err = (pred - t) / t
            role = "fit" if n in fit_sizes else "check"
            if role == "check":
                checks.append(abs(err))
                checks_by_size.append((n, abs(err)))
            print(f"   np={p} {size_text(n):>5} {role:5s}: measured {t:10.1f} us  predicted {pred:10.1f} us  {100 * err:+5.0f}%")
    auto = [(p, n, t) for (al, p, n), t in points.items() if al == "auto"]
    if auto:
        print("auto: " + ",".join(f"{al}<={size_text(l)}" if l else al for al, l in policy) + " with the models above (no fit of its own)")
        for p, n, t in sorted(auto):
            alg = policy_choice(policy, n)
            if alg not in models:
                continue
            ca, cb = coefficients(alg, p, n, a.nodes, block)
            pred = (ca * models[alg][0] + cb * n * models[alg][1]) * 1e6
            err = (pred - t) / t
            checks.append(abs(err))
            checks_by_size.append((n, abs(err)))
            print(f"   np={p} {size_text(n):>5} check: measured {t:10.1f} us  predicted {pred:10.1f} us  {100 * err:+5.0f}%  ({alg})")
    for label, keep in (("below 256K", lambda n: n < 256 << 10), ("256K and up", lambda n: n >= 256 << 10)):
        part = [e for n, e in checks_by_size if keep(n)]
        if part:
            print(f"check points within 25%, {label}: {sum(e <= 0.25 for e in part)}/{len(part)}, median |error| {100 * median(part):.0f}%")
    within = sum(e <= 0.25 for e in checks)
    print(f"check points within 25%: {within}/{len(checks)} = {100 * within / max(1, len(checks)):.0f}%, "
          f"median |error| {100 * median(checks):.0f}%")
    # Where the fitted models cross: the first size (in 1 KiB steps up to 64 MiB) from which `b` is predicted
    # faster than `a`, per rank count.
    def pred(alg, p, n):
        ca, cb = coefficients(alg, p, n, a.nodes, block)
        return ca * models[alg][0] + cb * n * models[alg][1]
    for p in sorted({p for _, p, _ in points}):
        for x, y in (("rd", "hier"), ("ring", "hier"), ("rd", "ring")):
            if x in models and y in models:
                cross = next((n for n in range(1 << 10, 64 << 20, 1 << 10) if pred(y, p, n) < pred(x, p, n)), None)
                print(f"np={p}: model: {y} faster than {x} from {size_text(cross) if cross else 'never (up to 64M)'}"
                      + (f" ({cross >> 10} KiB)" if cross else ""))
    # hier vs ring, and the fastest measured per (np, size), against auto's choice
    for p in sorted({p for _, p, _ in points}):
        print(f"np={p}: size  ring_us  hier_us  rd_us  mpi_us  auto_us  fastest(measured)  auto's choice")
        for n in sizes:
            row = {al: points.get((al, p, n)) for al in ("ring", "hier", "rd", "mpi", "auto")}
            cand = {al: v for al, v in row.items() if v is not None and al in ("ring", "hier", "rd")}
            best = min(cand, key=cand.get) if cand else "-"
            fmt = lambda v: f"{v:9.0f}" if v is not None else "        -"
            print(f"   {size_text(n):>5} " + " ".join(fmt(row[al]) for al in ("ring", "hier", "rd", "mpi", "auto"))
                  + f"  {best:6s}  {policy_choice(policy, n)}")


def n_gbit(beta):
    return f"{8 / beta / 1e9:.2f} Gbit/s" if beta > 0 else "inf"


if __name__ == "__main__":
    main()
