#!/usr/bin/env python3
"""An rcv1-like LIBSVM file, seeded: `make_sparse.py OUT [ROWS] [FEATURES] [NNZ] [SEED]` (defaults 200000 rows,
47236 features, about 75 non-zeros per row (0.16 % density), seed 1).

Each row draws NNZ feature indices with replacement from a power law (feature f has weight (f + 1)^-1.1, so a few
features are in most rows and most features are rare, as words are), keeps the distinct ones (so a row has a
little under NNZ), gives each a positive tf-idf-like value and scales the row to unit L2 norm (rcv1's rows are
normalised). The label is the sign of a sparse linear teacher (10 % of the weights non-zero, standard normal)
plus noise, then 5 % of the labels flipped: +1/-1, as rcv1's. Written as LIBSVM with 1-based indices; prints
rows, non-zeros and density. Needs numpy only."""
import sys
import numpy as np


def main():
    out = sys.argv[1]
    rows = int(sys.argv[2]) if len(sys.argv) > 2 else 200_000
    features = int(sys.argv[3]) if len(sys.argv) > 3 else 47_236
    nnz = int(sys.argv[4]) if len(sys.argv) > 4 else 75
    seed = int(sys.argv[5]) if len(sys.argv) > 5 else 1
    rng = np.random.default_rng(seed)
    weights = (np.arange(features) + 1.0) ** -1.1
    weights /= weights.sum()
    # A random permutation, so the frequent features are not the first indices.
    order = rng.permutation(features)
    teacher = np.where(rng.random(features) < 0.1, rng.standard_normal(features), 0.0)
    total = 0
    with open(out, "w") as f:
        for start in range(0, rows, 10_000):
            n = min(10_000, rows - start)
            # Oversample a little: duplicates of frequent features are dropped.
            draws = order[rng.choice(features, size=(n, int(nnz * 1.6)), p=weights)]
            draws.sort(axis=1)
            lines = []
            for r in range(n):
                cols = np.unique(draws[r])[: nnz]
                vals = rng.exponential(1.0, cols.size) + 0.1
                vals /= np.sqrt((vals * vals).sum())
                score = float(vals @ teacher[cols]) + 0.05 * rng.standard_normal()
                label = 1 if score > 0 else -1
                if rng.random() < 0.05:
                    label = -label
                total += cols.size
                lines.append(("+1" if label > 0 else "-1") + "".join(f" {c + 1}:{v:.5g}" for c, v in zip(cols, vals)))
            f.write("\n".join(lines) + "\n")
    print(f"{out}: {rows} rows x {features} features, {total} non-zeros ({total / rows:.1f} per row, density {total / rows / features:.4%})")


if __name__ == "__main__":
    main()
