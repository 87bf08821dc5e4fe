#!/usr/bin/env bash
# Creates benchmarks/.venv with the peers users would reach for: numpy, mpi4py (built against the system
# OpenMPI), PyTorch (CPU build), and for the sparse section scipy, scikit-learn, LIBLINEAR and Vowpal Wabbit. Idempotent. Needs the network (PyPI) the first time.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv
[ -x $venv/bin/python ] || python3 -m venv $venv
$venv/bin/python -c "import numpy, mpi4py" 2>/dev/null || $venv/bin/pip install -q numpy mpi4py
$venv/bin/python -c "import scipy, sklearn, liblinear, vowpalwabbit" 2>/dev/null \
  || $venv/bin/pip install -q scipy scikit-learn liblinear-official vowpalwabbit
$venv/bin/python -c "import torch" 2>/dev/null || $venv/bin/pip install -q "torch==2.13.0+cpu" || $venv/bin/pip install -q torch
echo "$(pwd)/$venv/bin/python"
