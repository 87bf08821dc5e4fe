#!/usr/bin/env python3
"""Generates the dml-predict fixtures in this folder, ONCE; the tests (PredictTests, PredictionReportTests) only read
them: they need neither Python nor the network.

usage: python3 Tests/Fixtures/predict/generate.py [PRODUCTS_DIR]   (default .build/debug; after `swift build`)
needs: numpy, scikit-learn (pip install numpy scikit-learn), mpirun.

For each case (binary, multiclass, regression) it writes seeded training and evaluation CSVs, trains a model with
dml-train (np 2), has dml-predict (np 1) write its predictions (probabilities, labels or values), and computes
scikit-learn's metrics ON THOSE PREDICTIONS (the Float32 values dml-predict wrote, read back exactly):
  expected_<case>.json   the scores, in the keys of dml-predict --report
  model_<case>.safetensors, eval_<case>.csv, predictions_<case>.csv (and labels_<case>.csv for classifiers)
The cases include ties in scores (repeated rows with different labels), a class that is never predicted (class 8 of
multiclass: few training rows, inside class 2's cluster), labels that are not 0..k-1 (-1/1; 2, 4, 6, 8), a
standardised MLP, and float32-exact regression targets.
"""
import json, os, subprocess, sys, warnings
import numpy as np
from sklearn import metrics

# Float32 softmax rows sum to 1 within float32 rounding, not float64's: log_loss warns, and (since 1.5) does not
# renormalise them, so the warning changes nothing.
warnings.filterwarnings("ignore", message="The y_prob values do not sum to one")
here = os.path.dirname(os.path.abspath(__file__))
products = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "../../../.build/debug"))
env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")


def run(np_, tool, *args):
    subprocess.run(["mpirun", "--oversubscribe", "-np", str(np_), os.path.join(products, tool), *args], check=True, env=env,
                   stdout=subprocess.DEVNULL)


def f32(v):
    """The shortest text that reads back as this float32 value (what dml-predict writes too)."""
    return np.format_float_positional(np.float32(v), unique=True, trim="0") if abs(v) >= 1e-4 or v == 0 else repr(float(np.float32(v)))


def write_csv(path, header, rows):
    with open(path, "w") as f:
        f.write(",".join(header) + "\n")
        for r in rows:
            f.write(",".join(r) + "\n")


def path(name):
    return os.path.join(here, name)


rng = np.random.default_rng(20261201)


def binary():
    d = 4
    w = np.array([1.5, -2.0, 0.5, 1.0])
    def rows(n):
        x = np.round(rng.normal(size=(n, d)) * 4) / 4        # a coarse grid: repeated rows happen
        y = np.where(x @ w + rng.normal(scale=1.5, size=n) > 0, 1, -1)
        return x, y
    xt, yt = rows(400)
    xe, ye = rows(180)
    # 30 rows repeated three times with labels 1, -1, 1: tied scores across the two classes.
    rep = xe[:30]
    xe = np.vstack([xe, rep, rep])
    ye = np.concatenate([ye, np.ones(30, int), -np.ones(30, int)])
    return d, xt, yt, xe, ye


def multiclass():
    d = 6
    centres = {2: np.array([3, 0, 0, 0, 1, 0.]), 4: np.array([0, 3, 0, 0, 0, 1.]), 6: np.array([0, 0, 3, 1, 0, 0.])}
    def rows(counts):
        xs, ys = [], []
        for label, n in counts.items():
            centre = centres[2] if label == 8 else centres[label]
            xs.append(centre + rng.normal(scale=1.2, size=(n, d)))
            ys += [label] * n
        return np.vstack(xs), np.array(ys)
    xt, yt = rows({2: 140, 4: 130, 6: 130, 8: 6})
    xe, ye = rows({2: 80, 4: 80, 6: 80, 8: 20})
    order = rng.permutation(len(ye))
    xe, ye = xe[order], ye[order]
    xe = np.vstack([xe, xe[:20]]); ye = np.concatenate([ye, ye[:20]])
    return d, xt * 10 + 5, yt, xe * 10 + 5, ye                  # scaled and shifted: --standardize matters


def regression():
    d = 5
    w = np.array([2.0, -1.0, 0.5, 0.0, 3.0])
    def rows(n):
        x = rng.normal(size=(n, d))
        y = x @ w + 1.5 + rng.normal(scale=0.3, size=n)
        return x, np.round(y * 64) / 64                          # float32-exact targets
    xt, yt = rows(400)
    xe, ye = rows(220)
    return d, xt, yt, xe, ye


cases = {
    "binary": (binary, ["--model", "logistic", "--epochs", "30", "--batch-size", "32", "--lr", "0.1"]),
    "multiclass": (multiclass, ["--model", "mlp", "--hidden", "8", "--activation", "tanh", "--standardize", "--epochs", "40",
                                "--batch-size", "32", "--lr", "0.1"]),
    "regression": (regression, ["--model", "linear", "--task", "regression", "--epochs", "30", "--batch-size", "32", "--lr", "0.05"]),
}

for name, (make, flags) in cases.items():
    d, xt, yt, xe, ye = make()
    names = [f"f{j}" for j in range(d)]
    label_text = (lambda v: f32(v)) if name == "regression" else (lambda v: str(int(v)))
    train = os.path.join("/tmp", f"dml-fixture-train-{name}.csv")
    write_csv(train, ["y"] + names, [[label_text(y)] + [f32(v) for v in r] for r, y in zip(xt, yt)])
    write_csv(path(f"eval_{name}.csv"), ["y"] + names, [[label_text(y)] + [f32(v) for v in r] for r, y in zip(xe, ye)])
    model = path(f"model_{name}.safetensors")
    run(2, "dml-train", "--data", train, "--output", model, "--seed", "7", *flags)
    os.remove(os.path.splitext(model)[0] + ".config.toml")  # the run's settings, with this machine's paths
    predictions = path(f"predictions_{name}.csv")
    expected = {"rows": int(len(ye))}
    y_true = np.array([np.float32(v) for v in ye], dtype=np.float64) if name == "regression" else ye
    if name == "regression":
        run(1, "dml-predict", "--model", model, "--data", path(f"eval_{name}.csv"), "--output", predictions)
        y_hat = np.loadtxt(predictions, skiprows=1, dtype=np.float32).astype(np.float64)
        expected.update(task="regression", mse=metrics.mean_squared_error(y_true, y_hat),
                        mae=metrics.mean_absolute_error(y_true, y_hat), r2=metrics.r2_score(y_true, y_hat))
    else:
        run(1, "dml-predict", "--model", model, "--data", path(f"eval_{name}.csv"), "--output", predictions, "--proba")
        labels_file = path(f"labels_{name}.csv")
        run(1, "dml-predict", "--model", model, "--data", path(f"eval_{name}.csv"), "--output", labels_file)
        with open(predictions) as f:
            classes = [int(c) for c in f.readline().strip().split(",")]
        proba = np.loadtxt(predictions, delimiter=",", skiprows=1, dtype=np.float32).astype(np.float64)
        y_pred = np.loadtxt(labels_file, skiprows=1, dtype=np.int64)
        assert (np.array(classes)[np.argmax(proba, axis=1)] == y_pred).all(), "labels are the most probable classes"
        # A one-output model (logistic) scores with P(class 1) as a 1-D array, as dml-predict does.
        y_proba = proba[:, 1] if name == "binary" else proba
        p, r, f, s = metrics.precision_recall_fscore_support(y_true, y_pred, labels=classes, zero_division=0)
        avg = {a: metrics.precision_recall_fscore_support(y_true, y_pred, labels=classes, average=a, zero_division=0)
               for a in ["macro", "weighted"]}
        expected.update(task="classification", accuracy=metrics.accuracy_score(y_true, y_pred),
                        log_loss=metrics.log_loss(y_true, y_proba, labels=classes),
                        classes=[{"label": str(c), "precision": p[i], "recall": r[i], "f1": f[i], "support": int(s[i])}
                                 for i, c in enumerate(classes)],
                        macro_avg={"precision": avg["macro"][0], "recall": avg["macro"][1], "f1": avg["macro"][2], "support": int(len(ye))},
                        weighted_avg={"precision": avg["weighted"][0], "recall": avg["weighted"][1], "f1": avg["weighted"][2],
                                      "support": int(len(ye))},
                        confusion_matrix=metrics.confusion_matrix(y_true, y_pred, labels=classes).tolist())
        if name == "binary":
            expected["roc_auc"] = metrics.roc_auc_score(y_true, y_proba)
            ties = len(y_proba) - len(np.unique(y_proba))
            assert ties > 0, "the binary case must have tied scores"
        if name == "multiclass":
            assert 8 not in set(y_pred) and 8 in set(ye), "class 8 must occur and never be predicted"
    with open(path(f"expected_{name}.json"), "w") as f:
        json.dump(expected, f, indent=1, sort_keys=True)
        f.write("\n")
    os.remove(train)
    print(f"{name}: {json.dumps({k: v for k, v in expected.items() if not isinstance(v, (list, dict))})}")
