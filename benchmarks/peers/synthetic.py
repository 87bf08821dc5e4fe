"""numpy port of DML's built-in synthetic task and batch sampler (Sources/DMLData), so that the peers are
measured on exactly the data and the global batches that dml-train uses.

Every value is a function of (seed, global row, column) through SplitMix64-style hashing, as in
Sources/DMLKernels/CounterRandom.swift; the batch order is the keyed Feistel permutation of
Sources/DMLData/BatchSampler.swift.
"""
import numpy as np

M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _u64(x):
    return np.asarray(x, dtype=np.uint64)


def mix(z):
    with np.errstate(over="ignore"):
        z = _u64(z) + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def hash3(a, b, c=0):
    return mix(mix(mix(_u64(a)) ^ _u64(b)) ^ _u64(c))


def uniform(a, b, c=0):
    return (hash3(a, b, c) >> np.uint64(40)).astype(np.float32) * np.float32(1.0 / 16777216.0)


def normal(a, b, c=0):
    h = hash3(a, b, c)
    u1 = ((h >> np.uint64(40)).astype(np.float64) + 1) / 16777217.0
    u2 = ((h >> np.uint64(16)) & np.uint64(0xFFFFFF)).astype(np.float64) / 16777216.0
    return (np.sqrt(-2 * np.log(u1)) * np.cos(2 * np.pi * u2)).astype(np.float32)


TEST_ROW_OFFSET = 1 << 40


class Synthetic:
    def __init__(self, seed=1, features=784, classes=10):
        self.seed, self.features, self.classes = seed, features, classes
        key = hash3(seed, 0x7EAC4E12)
        self.teacher = normal(key, np.arange(classes * features, dtype=np.uint64)).reshape(classes, features)

    def rows(self, first, count):
        """Rows first ..< first+count (global indices): (x float32 [count, features], y int64 [count])."""
        keys = hash3(self.seed, np.arange(first, first + count, dtype=np.uint64))
        cols = np.arange(self.features, dtype=np.uint64)
        u = uniform(keys[:, None], cols[None, :])
        spread = np.float32(2) * np.sqrt(np.float32(3))
        x = (u - np.float32(0.5)) * spread
        y = np.argmax(x @ self.teacher.T, axis=1)
        return x.astype(np.float32), y


def shard(rows, rank, ranks):
    return rank * rows // ranks, (rank + 1) * rows // ranks


class Sampler:
    def __init__(self, rows, batch, seed):
        self.rows, self.batch, self.seed = rows, min(batch, rows), seed
        bits = 2
        while (1 << bits) < rows:
            bits += 1
        self.half = (bits + 1) // 2
        self.steps_per_epoch = (rows + self.batch - 1) // self.batch

    def _feistel(self, v, key):
        half = np.uint64(self.half)
        mask = np.uint64((1 << self.half) - 1)
        left, right = v >> half, v & mask
        for rnd in range(4):
            f = hash3(key, rnd, right) & mask
            left, right = right, left ^ f
        return (left << half) | right

    def batch_rows(self, step):
        """Global rows of step `step`'s batch, in batch order."""
        epoch, k = divmod(step, self.steps_per_epoch)
        pos = np.arange(k * self.batch, min(self.rows, (k + 1) * self.batch), dtype=np.uint64)
        key = hash3(self.seed, 0x5A3B1E5, epoch)
        v = self._feistel(pos, key)
        while True:
            bad = v >= np.uint64(self.rows)
            if not bad.any():
                return v.astype(np.int64)
            v[bad] = self._feistel(v[bad], key)


def add_task_arguments(ap):
    """The flags every training peer shares (the task, the schedule and the model), with dml-bench's defaults."""
    ap.add_argument("--model", default="softmax", choices=["softmax", "mlp"])
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--rows", type=int, default=16384)
    ap.add_argument("--features", type=int, default=784)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--seed", type=int, default=1)


def default_lr(a):
    """The learning rate dml-bench train uses for the model when --lr is not given."""
    return a.lr if a.lr is not None else (0.2 if a.model == "softmax" else 0.05)
