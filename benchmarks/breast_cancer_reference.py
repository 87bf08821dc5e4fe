#!/usr/bin/env python3
"""Writes Tests/Fixtures/breast_cancer.csv from scikit-learn's bundled copy of the Wisconsin Diagnostic Breast
Cancer data set, and prints scikit-learn's LogisticRegression test accuracy on the same split — the figure
recorded in Tests/DMLModelsTests/BreastCancerTests.swift.

CSV: header, then one row per sample: `split,label,<30 features>`; split is `train` or `test`
(train_test_split(test_size=0.25, random_state=0, stratify=y)), label 1 = benign, 0 = malignant (sklearn's
coding). Features are the raw values; the test standardises them with the training rows' mean and population
standard deviation (StandardScaler), as below.
"""
import sys
import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

data = load_breast_cancer()
X, y = data.data, data.target
Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)
scaler = StandardScaler().fit(Xtr)
clf = LogisticRegression(C=1.0, max_iter=10000).fit(scaler.transform(Xtr), ytr)
acc = clf.score(scaler.transform(Xte), yte)
print(f"train rows {len(ytr)}, test rows {len(yte)}; sklearn LogisticRegression(C=1.0) test accuracy {acc:.6f} "
      f"({int(round(acc * len(yte)))}/{len(yte)}); train accuracy {clf.score(scaler.transform(Xtr), ytr):.6f}")
out = sys.argv[1] if len(sys.argv) > 1 else "Tests/Fixtures/breast_cancer.csv"
with open(out, "w") as f:
    f.write("split,label," + ",".join(n.replace(" ", "_") for n in data.feature_names) + "\n")
    for split, Xs, ys in (("train", Xtr, ytr), ("test", Xte, yte)):
        for row, label in zip(Xs, ys):
            f.write(f"{split},{label}," + ",".join(repr(float(v)) for v in row) + "\n")
print("wrote", out)
