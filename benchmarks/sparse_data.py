#!/usr/bin/env python3
"""Seeded sparse data sets for the sparse benchmarks, written as LIBSVM (numpy only, no network).

    benchmarks/sparse_data.py rcv1   OUT.svm [--rows 200000] [--seed 1]   # text-like: 47,236 features, ~0.16% dense
    benchmarks/sparse_data.py criteo OUT.svm [--rows 2000000] [--seed 1]  # click-log-like: 39 fields hashed into 2^22
    ... --test-rows N writes N more rows from the same teacher to OUT's sibling OUT.test.svm
    ... --mirror follows every row (x, y) with its mirror (-x, -y): the optimal bias of a logistic model is then
        exactly 0, so LIBLINEAR without a bias (-B -1) solves the same problem as dml-train
        (benchmarks/peers/liblinear_peer.py); --rows counts both

rcv1-like: like RCV1 (Lewis et al. 2004, the LIBSVM binary version): 47,236 term features whose document
frequencies follow a power law (Zipf, exponent 1.1), about 75 terms per row (0.16% density), tf-idf-like
positive values scaled to unit L2 norm per row. Labels (+1/-1) from a sparse linear teacher (2,000 non-zero
weights, on frequent and rare terms alike) with 5% of the labels flipped.

criteo-like: like the Criteo display-advertising logs: 13 integer fields (log-scaled counts, present 80% of
the time) and 26 categorical fields whose values follow a power law over per-field vocabularies of 10 to
1,000,000; each (field, value) pair is hashed into 2^22 buckets (splitmix64 of field·2^40 + value; buckets
colliding within a row are summed) and categorical features have value 1. Labels (1/0, about 20% positive)
from a logistic teacher over the hashed features.

Rows are generated in blocks of 65,536 from a counter-based seed (seed, block), so a file's bytes depend only
on the flags.
"""
import argparse
import sys

import numpy as np

MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def splitmix64(x):
    """splitmix64's finaliser, vectorised over uint64 (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z = (x + np.uint64(0x9E3779B97F4A7C15)) & MASK64
        z = ((z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & MASK64
        z = ((z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & MASK64
        return z ^ (z >> np.uint64(31))


def zipf_choice(rng, n, size, exponent):
    """`size` draws from 0..n-1 with P(i) ∝ (i + 1)^-exponent."""
    p = np.arange(1, n + 1, dtype=np.float64) ** -exponent
    cdf = np.cumsum(p)
    cdf /= cdf[-1]
    return np.minimum(np.searchsorted(cdf, rng.random(size)), n - 1)


def write_rows(out, labels, indptr, indices, values, label_format):
    """LIBSVM lines: `label idx:val ...`, 1-based sorted indices, values with 6 significant digits."""
    lines = []
    for r in range(len(labels)):
        a, b = indptr[r], indptr[r + 1]
        feats = " ".join(f"{i + 1}:{v:.6g}" for i, v in zip(indices[a:b].tolist(), values[a:b].tolist()))
        lines.append(f"{label_format(labels[r])} {feats}\n")
    out.write("".join(lines))


def merge_duplicates(rows, cols, vals, n_rows):
    """CSR with each row's columns sorted and duplicates summed."""
    order = np.lexsort((cols, rows))
    rows, cols, vals = rows[order], cols[order], vals[order]
    key = rows.astype(np.int64) * (1 << 32) + cols
    first = np.ones(len(key), dtype=bool)
    first[1:] = key[1:] != key[:-1]
    group = np.cumsum(first) - 1
    summed = np.zeros(first.sum(), dtype=np.float64)
    np.add.at(summed, group, vals)
    rows, cols = rows[first], cols[first]
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.add.at(indptr, rows + 1, 1)
    return np.cumsum(indptr), cols, summed


class RCV1Like:
    features = 47236

    def __init__(self, seed):
        rng = np.random.default_rng([seed, 0])
        self.idf = np.log(1 + self.features / (1 + np.arange(self.features))) + 0.5
        support = rng.choice(self.features, 2000, replace=False)
        self.teacher = np.zeros(self.features)
        self.teacher[support] = rng.normal(0, 1, 2000) * np.sqrt(self.idf[support])
        self.bias = 0.0
        # Rank of each term by frequency: a random permutation, so frequent terms are not the low indices.
        self.term = rng.permutation(self.features)

    def block(self, seed, b, n):
        rng = np.random.default_rng([seed, 1, b])
        counts = np.maximum(1, rng.poisson(120, n))
        rows = np.repeat(np.arange(n), counts)
        cols = self.term[zipf_choice(rng, self.features, counts.sum(), 1.1)]
        tf = rng.geometric(0.6, counts.sum()).astype(np.float64)
        indptr, cols, tf = merge_duplicates(rows, cols, tf, n)
        vals = np.log1p(tf) * self.idf[cols]
        norms = np.sqrt(np.add.reduceat(vals ** 2, indptr[:-1]))
        vals /= np.repeat(norms, np.diff(indptr))
        margin = np.add.reduceat(vals * self.teacher[cols], indptr[:-1]) + self.bias
        margin -= np.median(margin)
        labels = np.where(margin > 0, 1, -1)
        labels[rng.random(n) < 0.05] *= -1
        return labels, indptr, cols, vals.astype(np.float32)


class CriteoLike:
    bits = 22
    integer_fields = 13
    categorical_fields = 26

    def __init__(self, seed):
        rng = np.random.default_rng([seed, 0])
        self.vocab = np.round(np.logspace(1, 6, self.categorical_fields)).astype(np.int64)
        rng.shuffle(self.vocab)
        self.teacher = rng.normal(0, 0.6, 1 << self.bits)

    def bucket(self, field, value):
        key = (field.astype(np.uint64) << np.uint64(40)) + value.astype(np.uint64)
        return (splitmix64(key) & np.uint64((1 << self.bits) - 1)).astype(np.int64)

    def block(self, seed, b, n):
        rng = np.random.default_rng([seed, 1, b])
        rows, cols, vals = [], [], []
        for f in range(self.integer_fields):
            present = np.nonzero(rng.random(n) < 0.8)[0]
            count = rng.geometric(0.05, len(present))
            rows.append(present)
            cols.append(self.bucket(np.full(len(present), f), np.zeros(len(present), dtype=np.int64)))
            vals.append(np.log1p(count) / 4)
        for f in range(self.categorical_fields):
            value = zipf_choice(rng, int(self.vocab[f]), n, 1.05)
            rows.append(np.arange(n))
            cols.append(self.bucket(np.full(n, self.integer_fields + f), value))
            vals.append(np.ones(n))
        indptr, cols, vals = merge_duplicates(np.concatenate(rows), np.concatenate(cols), np.concatenate(vals), n)
        margin = np.add.reduceat(vals * self.teacher[cols], indptr[:-1]) - 1.6
        labels = (rng.random(n) < 1 / (1 + np.exp(-margin))).astype(np.int64)
        return labels, indptr, cols, vals.astype(np.float32)


def mirrored(labels, indptr, indices, values, negative):
    """Each row followed by its mirror: the same columns, negated values, the other label."""
    n = len(labels)
    counts = np.repeat(np.diff(indptr), 2)
    out_ptr = np.concatenate(([0], np.cumsum(counts)))
    out_idx = np.empty(2 * len(indices), dtype=indices.dtype)
    out_val = np.empty(2 * len(values), dtype=values.dtype)
    for r in range(n):
        a, b = indptr[r], indptr[r + 1]
        for k, sign in ((2 * r, 1), (2 * r + 1, -1)):
            out_idx[out_ptr[k]:out_ptr[k + 1]] = indices[a:b]
            out_val[out_ptr[k]:out_ptr[k + 1]] = sign * values[a:b]
    out_labels = np.empty(2 * n, dtype=labels.dtype)
    out_labels[0::2] = labels
    out_labels[1::2] = np.where(labels > 0, negative, 1)
    return out_labels, out_ptr, out_idx, out_val


def write(path, gen, seed, rows, first_block, label_format, mirror=False, negative=-1):
    block = 65536
    with open(path, "w") as out:
        for b in range((rows + block - 1) // block):
            n = min(block, rows - b * block)
            data = gen.block(seed, first_block + b, (n + 1) // 2 if mirror else n)
            if mirror:
                data = [v[:n] if i == 0 else v for i, v in enumerate(mirrored(*data, negative=negative))]
                data[1] = data[1][:n + 1]
            write_rows(out, *data, label_format=label_format)
            print(f"  {path}: {min(rows, (b + 1) * block)} of {rows} rows", file=sys.stderr, flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("kind", choices=["rcv1", "criteo"])
    ap.add_argument("out")
    ap.add_argument("--rows", type=int)
    ap.add_argument("--test-rows", type=int, default=0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--mirror", action="store_true", help="every row followed by its mirror (-x, -y)")
    a = ap.parse_args()
    if a.kind == "rcv1":
        gen, rows, fmt, negative = RCV1Like(a.seed), a.rows or 200_000, lambda v: "+1" if v > 0 else "-1", -1
    else:
        gen, rows, fmt, negative = CriteoLike(a.seed), a.rows or 2_000_000, str, 0
    if rows <= 0 or a.test_rows < 0:
        sys.exit("sparse_data.py: --rows must be positive and --test-rows not negative")
    if a.mirror and (rows % 2 or a.test_rows % 2):
        sys.exit("sparse_data.py: --mirror writes rows in pairs: --rows and --test-rows must be even")
    write(a.out, gen, a.seed, rows, 0, fmt, a.mirror, negative)
    if a.test_rows:
        stem = a.out[:-4] if a.out.endswith(".svm") else a.out
        # Test rows come from blocks far past the training rows' blocks: the same teacher, other rows.
        write(stem + ".test.svm", gen, a.seed, a.test_rows, 1 << 20, fmt, a.mirror, negative)


if __name__ == "__main__":
    main()
