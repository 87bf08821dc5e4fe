#!/usr/bin/env python3
"""The numpy peer of `dml-bench predict`: the same job in one Python process — read the CSV, the model's forward
pass in float32, the most probable class per row, the predictions file — timed the same way (every repeat whole,
the median reported; interpreter start-up and imports excluded, as MPI start-up is for DML).

usage: benchmarks/peers/predict_numpy.py MODEL.safetensors DATA.csv OUT.csv [REPEATS=5] [READER=pandas]

READER: `pandas` (pandas.read_csv, C engine, dtype float32) or `loadtxt` (numpy.loadtxt(dtype=float32), whose
parser is C since numpy 1.23): the two readers a numpy user reaches for that parse in C on one thread, with no
guessing of types. benchmarks/predict.sh times both and compares DML with the faster. (pyarrow's multi-threaded
reader is not a numpy reader and is not installed here.) The model is read as README's numpy-only predictor reads it. numpy
runs its matrix products with OpenBLAS's default threads (all cores). Prints one line:
`numpy,<rows>,<median_s>,<rows_per_s>,<read_s>,<predict_s>,<write_s>` (phases: medians).
"""
import json
import struct
import sys
import time
import numpy as np

model, data, out = sys.argv[1], sys.argv[2], sys.argv[3]
repeats = int(sys.argv[4]) if len(sys.argv) > 4 else 5
reader = sys.argv[5] if len(sys.argv) > 5 else "pandas"
if reader == "pandas":
    import pandas as pd


def load(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__")
    return meta, {k: np.frombuffer(raw[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]], "<f4").reshape(v["shape"])
                  for k, v in header.items()}


def job():
    t0 = time.perf_counter()
    meta, t = load(model)
    if reader == "pandas":
        frame = pd.read_csv(data, dtype=np.float32, engine="c")
        x = frame.to_numpy(dtype=np.float32)
    else:
        x = np.loadtxt(data, delimiter=",", skiprows=1, dtype=np.float32, ndmin=2)
    features = int(meta["features"])
    if x.shape[1] == features + 1:
        x = np.ascontiguousarray(x[:, 1:])                    # the label column, as dml-predict detects it
    if "standardize_mean" in meta:
        x = (x - np.array(json.loads(meta["standardize_mean"]), "f4")) / np.array(json.loads(meta["standardize_std"]), "f4")
    t1 = time.perf_counter()
    layers = len(t) // 2
    for i in range(layers):
        x = x @ t[f"layers.{i}.weight"].T + t[f"layers.{i}.bias"]
        if i < layers - 1:
            x = np.maximum(x, 0) if meta["activation"] == "relu" else np.tanh(x)
    classes = x.argmax(axis=1)                                # softmax is monotone: the most probable class
    labels = np.array([int(v) for v in json.loads(meta.get("labels", "null")) or range(x.shape[1])])
    t2 = time.perf_counter()
    np.savetxt(out, labels[classes], fmt="%d", header="prediction", comments="")
    t3 = time.perf_counter()
    return t3 - t0, t1 - t0, t2 - t1, t3 - t2, len(classes)


runs = [job() for _ in range(repeats)]
med = [float(np.median([r[i] for r in runs])) for i in range(4)]
print(f"numpy-{reader},{runs[0][4]},{med[0]:.4f},{runs[0][4] / med[0]:.0f},{med[1]:.4f},{med[2]:.4f},{med[3]:.4f}")
