#!/usr/bin/env python3
"""α-β cost model of the allreduce algorithms across nodes whose links are the bottleneck (a tc tbf cap per
node, `scripts/cluster up N --rate R`), fitted to `dml-bench allreduce` CSVs from benchmarks/cluster_allreduce.sh
(Python stdlib only).

    python3 benchmarks/costmodel_nodes.py np4-r1.csv np8-r1.csv ... --nodes 4 [--block 4M]

p ranks on N nodes, q = p/N per node, placed in blocks (rank r on node r // q), n bytes. What is counted is what
crosses one node's link (per direction; all ranks of a node share it), not what one rank sends:

  ring  a = 2(p−1) steps     L = 2(p−1)/p·n        one stream of n/p per step leaves each node
                                                   (the ring's messages are 256 KiB segments at most)
  hier  a = 2(N−1) + 2 syncs L = 2(N−1)/N·n        the q rails' rings together; per 4 MiB block
        per block                                  (q = 1: the ring over the N nodes, no syncs)
        + 3·n / memcpy                             the shm reduce-scatter and allgather inside the node:
                                                   about three passes over n at the one-core memcpy rate
                                                   the run's log prints — measured, not fitted
  rd    a = log2 p           L = q·log2(N)·n       the log2 N exchanges across nodes carry all q ranks'
                                                   whole buffers, each as one message of n bytes
  mpi   OpenMPI 4.1's fixed decision for 4–15 ranks (coll/tuned, commutative op): recursive doubling
        below 8 KiB (as rd), Rabenseifner from 8 KiB: a = 2·log2 p, L = 2·q·Σ n/(2m) over the
        exchange distances m ≥ q (those that cross nodes), one message of n/(2m) each
  auto  its policy (from the run's log line, else the default): the chosen algorithm's model, not fitted —
        a check of the policy and of the components' models.

Two regimes a plain α-β model misses, both from what the link is (a token bucket in front of a queue):
- the bucket (2 ms of the rate, 250 KB at 1 Gbit/s, `scripts/cluster`) refills while an algorithm waits on
  message latency, so small transfers pass at veth speed and latency and transmission overlap instead of
  adding: time = max(a·α, link) + shm, not the sum;
- one message larger than the ring's 256 KiB segment (rd's whole buffer, Rabenseifner's halves) fills the
  bucket's queue in both directions at once, and TCP then gets less of the rate: link = β·Σ min(m, 256K) +
  β_big·Σ max(m − 256K, 0) over the messages m crossing the link. 256 KiB is fixed (the ring's segment,
  which runs at the cap up to 16 MiB), not fitted.
α is fitted per (algorithm, rank count) — 4 or 8 processes share the machine's cores, and a message step
costs what the scheduler makes it —; β and β_big per algorithm (one physical link). The fit minimises the sum of
absolute relative errors (Nelder–Mead on the logs of the parameters) on the "fit" points — every other size,
starting with the smallest —; the rest, and every `auto` point, are the checks (the median of the rounds for
each (np, size)). No parameter is set per point. Prints each point, the share of check points within 25%, the
median error, and where the models of hier and the ring cross.
"""
import argparse
import csv
import math
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from costmodel import median, size_text  # noqa: E402

SEGMENT = 256 << 10  # RingAllreduce's default segment: the largest message the ring (and hier's rails) send
MPI_RD_BELOW = 8 << 10  # OpenMPI 4.1 coll/tuned, 4–15 ranks: recursive doubling below, Rabenseifner from here


def link_split(messages):
    """Bytes through one node's link in messages up to SEGMENT, and beyond SEGMENT: [(count, bytes each)]."""
    small = sum(c * min(m, SEGMENT) for c, m in messages)
    big = sum(c * max(m - SEGMENT, 0) for c, m in messages)
    return small, big


def terms(alg, p, n, nodes, block):
    """(a, link bytes up to the segment, link bytes beyond it, shm passes over n) for one allreduce."""
    q = p // nodes
    if alg == "ring" or (alg == "hier" and q == 1):
        m = p if alg == "ring" else nodes
        return 2.0 * (m - 1), 2.0 * (m - 1) / m * n, 0.0, 0.0
    if alg == "hier":
        blocks = math.ceil(n / block)
        return (2.0 * (nodes - 1) + 2.0) * blocks, 2.0 * (nodes - 1) / nodes * n, 0.0, 3.0
    if alg == "rd" or (alg == "mpi" and n < MPI_RD_BELOW):
        return (float(math.log2(p)), *link_split([(q * math.log2(nodes), n)]), 0.0)
    if alg == "mpi":
        msgs, m = [], 1
        while m < p:
            if m >= q:
                msgs.append((2 * q, n / (2 * m)))  # the reduce-scatter's exchange and the allgather's mirror
            m *= 2
        return (2.0 * math.log2(p), *link_split(msgs), 0.0)
    raise KeyError(alg)


def predict(params, alg, p, n, nodes, block, memcpy):
    alpha, beta, beta_big = params
    a, small, big, shm = terms(alg, p, n, nodes, block)
    return max(a * alpha, small * beta + big * beta_big) + shm * n / memcpy


def nelder_mead(f, x0, steps=3000):
    """Minimises f over R^k from x0 (deterministic, stdlib only)."""
    k = len(x0)
    simplex = [list(x0)] + [[x + (0.5 if i == j else 0.0) for j, x in enumerate(x0)] for i in range(k)]
    values = [f(x) for x in simplex]
    for _ in range(steps):
        order = sorted(range(k + 1), key=values.__getitem__)
        simplex, values = [simplex[i] for i in order], [values[i] for i in order]
        if values[-1] - values[0] < 1e-12:
            break
        centroid = [sum(x[j] for x in simplex[:-1]) / k for j in range(k)]
        worst = simplex[-1]
        def along(t):
            return [c + t * (w - c) for c, w in zip(centroid, worst)]
        r = along(-1.0); fr = f(r)
        if fr < values[0]:
            e = along(-2.0); fe = f(e)
            simplex[-1], values[-1] = (e, fe) if fe < fr else (r, fr)
        elif fr < values[-2]:
            simplex[-1], values[-1] = r, fr
        else:
            c = along(0.5); fc = f(c)
            if fc < values[-1]:
                simplex[-1], values[-1] = c, fc
            else:
                best = simplex[0]
                simplex = [best] + [[b + 0.5 * (x - b) for b, x in zip(best, s)] for s in simplex[1:]]
                values = [values[0]] + [f(s) for s in simplex[1:]]
    i = min(range(k + 1), key=values.__getitem__)
    return simplex[i], values[i]


def policy_choice(policy, n):
    for alg, limit in policy[:-1]:
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
    ap.add_argument("--policy", help="auto's policy when the logs do not name it (default: the logs', else rd<=16K,hier)")
    a = ap.parse_args()
    block = int(a.block[:-1]) << {"K": 10, "M": 20}[a.block[-1]] if a.block[-1] in "KM" else int(a.block)

    times = {}
    policy = parse_policy(a.policy or "rd<=16K,hier")
    copies = []
    for path in a.csv:
        log = Path(path).with_suffix(".log")
        if log.exists():
            text = log.read_text()
            m = re.search(r"# auto policy: (\S+)", text)
            if m and not a.policy:
                policy = parse_policy(m.group(1))
            m = re.search(r"# one-core memcpy[^:]*: ([0-9.]+) GB/s", text)
            if m:
                copies.append(float(m.group(1)) * 1e9)
        with open(path) as f:
            for r in csv.DictReader(f):
                times.setdefault((r["algorithm"], int(r["np"]), int(r["bytes"])), []).append(float(r["time_us"]) * 1e-6)
    memcpy = median(copies) if copies else 10e9
    points = {k: median(v) for k, v in times.items()}
    sizes = sorted({n for _, _, n in points})
    fit_sizes = set(sizes[0::2])
    counts = sorted({p for _, p, _ in points})
    print(f"one-core memcpy {memcpy / 1e9:.2f} GB/s (median of the logs; hier's shm passes, not fitted); "
          f"fit sizes {','.join(size_text(n) for n in sorted(fit_sizes))}, the others are checks")

    models = {}  # (alg, p) -> (alpha, beta, beta_big)
    checks = []  # (alg, p, n, |error|)
    for alg in ("ring", "hier", "rd", "mpi"):
        pts = [(p, n, t) for (al, p, n), t in points.items() if al == alg]
        if not pts:
            continue
        fit = [(p, n, t) for p, n, t in pts if n in fit_sizes]
        ps = sorted({p for p, _, _ in pts})

        def unpack(x):
            return {p: (math.exp(x[i]), math.exp(x[len(ps)]), math.exp(x[len(ps) + 1])) for i, p in enumerate(ps)}

        def loss(x):
            m = unpack(x)
            return sum(abs(predict(m[p], alg, p, n, a.nodes, block, memcpy) / t - 1) for p, n, t in fit)
        starts = ([math.log(al)] * len(ps) + [math.log(8e-9), math.log(b)] for al in (3e-6, 2e-5, 1e-4) for b in (8e-9, 2e-8))
        best = min((nelder_mead(loss, x0) for x0 in starts), key=lambda r: r[1])[0]
        fitted = unpack(best)
        big_used = any(terms(alg, p, n, a.nodes, block)[2] > 0 for p, n, _ in fit)
        for p in ps:
            models[(alg, p)] = fitted[p]
        al_text = ", ".join(f"np {p} {fitted[p][0] * 1e6:.1f} us" for p in ps)
        print(f"{alg}: alpha {al_text}; link {n_gbit(fitted[ps[0]][1])}"
              + (f", beyond 256K in one message {n_gbit(fitted[ps[0]][2])}" if big_used else "")
              + f" (fitted on {len(fit)} points)")
        for p, n, t in sorted(pts):
            pred = predict(fitted[p], alg, p, n, a.nodes, block, memcpy)
            err = (pred - t) / t
            role = "fit" if n in fit_sizes else "check"
            if role == "check":
                checks.append((alg, p, n, abs(err)))
            print(f"   np={p} {size_text(n):>5} {role:5s}: measured {t * 1e6:10.1f} us  predicted {pred * 1e6:10.1f} us  {100 * err:+5.0f}%")
    auto = [(p, n, t) for (al, p, n), t in points.items() if al == "auto"]
    if auto:
        print("auto: " + ",".join(f"{al}<={size_text(l)}" if l else al for al, l in policy) + " with the models above (no fit of its own)")
        for p, n, t in sorted(auto):
            alg = policy_choice(policy, n)
            if (alg, p) not in models:
                continue
            pred = predict(models[(alg, p)], alg, p, n, a.nodes, block, memcpy)
            err = (pred - t) / t
            checks.append(("auto", p, n, abs(err)))
            print(f"   np={p} {size_text(n):>5} check: measured {t * 1e6:10.1f} us  predicted {pred * 1e6:10.1f} us  {100 * err:+5.0f}%  ({alg})")
    for label, keep in (("below 256K", lambda n: n < 256 << 10), ("256K and up", lambda n: n >= 256 << 10)):
        part = [e for _, _, n, e in checks if keep(n)]
        if part:
            print(f"check points within 25%, {label}: {sum(e <= 0.25 for e in part)}/{len(part)}, median |error| {100 * median(part):.0f}%")
    errs = [e for *_, e in checks]
    within = sum(e <= 0.25 for e in errs)
    print(f"check points within 25%: {within}/{len(errs)} = {100 * within / max(1, len(errs)):.0f}%, "
          f"median |error| {100 * median(errs):.0f}%")
    dml = [e for al, _, _, e in checks if al != "mpi"]
    print(f"  of them DML's algorithms and auto: {sum(e <= 0.25 for e in dml)}/{len(dml)}; "
          f"MPI_Allreduce: {sum(e <= 0.25 for al, _, _, e in checks if al == 'mpi')}/{len(errs) - len(dml)}")
    misses = [f"{al} np{p} {size_text(n)} {100 * e:.0f}%" for al, p, n, e in checks if e > 0.25]
    print("misses: " + ("; ".join(misses) if misses else "none"))

    # Where the fitted models cross: the first size (in 1 KiB steps up to 64 MiB) from which `y` is predicted
    # faster than `x`, per rank count.
    def pred(alg, p, n):
        return predict(models[(alg, p)], alg, p, n, a.nodes, block, memcpy)
    for p in counts:
        for x, y in (("rd", "hier"), ("ring", "hier"), ("hier", "ring"), ("rd", "ring")):
            if {x, y} == {"ring", "hier"} and p <= a.nodes:
                continue  # one rank per node: hier is the ring (their two fits differ by the noise only)
            if (x, p) in models and (y, p) in models:
                cross = next((n for n in range(1 << 10, 64 << 20, 1 << 10) if pred(y, p, n) < pred(x, p, n)), None)
                print(f"np={p}: model: {y} faster than {x} from {size_text(cross) if cross else 'never (up to 64M)'}"
                      + (f" ({cross >> 10} KiB)" if cross else ""))
    # Measured per (np, size): each algorithm, the fastest of DML's, auto's choice.
    for p in counts:
        print(f"np={p}: size  ring_us  hier_us  rd_us  mpi_us  auto_us  fastest(measured)  auto's choice")
        for n in sizes:
            row = {al: points.get((al, p, n)) for al in ("ring", "hier", "rd", "mpi", "auto")}
            cand = {al: v for al, v in row.items() if v is not None and al in ("ring", "hier", "rd")}
            best = min(cand, key=cand.get) if cand else "-"
            fmt = lambda v: f"{v * 1e6:9.0f}" if v is not None else "        -"
            print(f"   {size_text(n):>5} " + " ".join(fmt(row[al]) for al in ("ring", "hier", "rd", "mpi", "auto"))
                  + f"  {best:6s}  {policy_choice(policy, n)}")


def n_gbit(beta):
    return f"{8 / beta / 1e9:.2f} Gbit/s" if beta > 0 else "inf"


if __name__ == "__main__":
    main()
