#!/usr/bin/env python3
"""Writes tricky.svm (a LIBSVM file with comments, qid, blank lines, +1/-1 labels, exponents, tabs, CRLF,
trailing spaces, explicit zeros) and, from scikit-learn's load_svmlight_file, tricky.expected.json: the CSR
arrays (indptr, indices, data as float32) and labels the DML reader must produce. Also the feature-hashing
buckets of the file's indices for --hash-bits 4 and 18 (XXH3-64 of the 1-based index as 8 little-endian
bytes, seed 0x444D4C5F48415348; `pip install xxhash`), and the hashed CSR for 4 bits (values of one bucket
added in index order, in float32). Run once; the outputs are checked in so the tests need no Python."""
import json, struct
import numpy as np
from sklearn.datasets import load_svmlight_file
import xxhash

lines = [
    "# a comment line at the top\n",
    "+1 1:0.5 3:-2.25 7:1e-3   \n",
    "-1\t2:1.5E+2\t5:.25 # trailing comment\n",
    "\n",
    "+1 qid:3 1:1 2:2 3:3 4:4 5:5 6:6 7:7 8:8\n",
    "   \n",
    "-1 4:-0.125  6:3.0e0\r\n",
    "+1 2:7 8:0\n",
    "# another comment\n",
    "-1 1:-1.5e-2 8:12345.678\n",
    "+1 qid:17 3:+4.5 6:-.5\n",
    "-1 5:2e1\t\t7:1\n",
    "+1 1:3.25 # no trailing newline after the last line\n",
    "-1 2:0.001 4:1000000",
]
with open("tricky.svm", "w", newline="") as f:
    f.write("".join(lines))

X, y = load_svmlight_file("tricky.svm", zero_based=False, dtype=np.float32)
X = X.tocsr()
SEED = 0x444D4C5F48415348


def bucket(index, bits):
    return xxhash.xxh3_64_intdigest(struct.pack("<Q", index), seed=SEED) & ((1 << bits) - 1)


hashed = {"indptr": [0], "indices": [], "data": []}
for r in range(X.shape[0]):
    row = {}
    for k in range(X.indptr[r], X.indptr[r + 1]):
        b = bucket(int(X.indices[k]) + 1, 4)
        row[b] = np.float32(row.get(b, np.float32(0)) + X.data[k])
    for b in sorted(row):
        hashed["indices"].append(b)
        hashed["data"].append(float(row[b]))
    hashed["indptr"].append(len(hashed["indices"]))

out = {
    "features": int(X.shape[1]),
    "indptr": [int(v) for v in X.indptr],
    "indices": [int(v) for v in X.indices],
    "data": [float(v) for v in X.data],
    "labels": [float(v) for v in y],
    "buckets4": {str(i): bucket(i, 4) for i in range(1, X.shape[1] + 1)},
    "buckets18": {str(i): bucket(i, 18) for i in [1, 2, 3, 1000, 47236, 2147483646]},
    "hashed4": hashed,
}
with open("tricky.expected.json", "w") as f:
    json.dump(out, f, indent=1)
    f.write("\n")
print(X.shape, X.nnz)
