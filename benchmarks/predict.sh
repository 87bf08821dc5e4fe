#!/usr/bin/env bash
# Prediction throughput: dml-bench predict at np 1 and 2 against numpy doing the same job (benchmarks/peers/
# predict_numpy.py: pandas.read_csv or numpy.loadtxt, the float32 forward pass, the labels file) on the same synthetic 16384 × 784 CSV,
# file reading included, alternating in one run, for the MLP (784 → 256 → 10) and softmax models.
#
# usage: benchmarks/predict.sh [DIR=/tmp/dml-predict-bench] [ROUNDS=5] [REPEATS=3]
# Needs a release build (swift build -c release), python3 with numpy and pandas, mpirun. Each round runs, for each
# model: DML np 1, DML np 2, numpy with pandas, numpy with loadtxt (each REPEATS times in one process, median); the report takes the median of the
# rounds' medians, compares DML with the faster numpy reader, prints the CPU (lscpu) and the load average around every run (the machine may be shared).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-/tmp/dml-predict-bench}
rounds=${2:-5}
repeats=${3:-3}
mkdir -p "$dir"
bin=.build/release
[ -x $bin/dml-bench ] || { echo "build first: swift build -c release" >&2; exit 1; }
[ -f "$dir/synthetic.csv" ] || python3 benchmarks/make_predict_csv.py "$dir/synthetic.csv"
[ -f "$dir/mlp.safetensors" ] || scripts/mpirun -np 2 $bin/dml-train --model mlp --hidden 256 --epochs 2 --lr 0.05 --output "$dir/mlp.safetensors" >/dev/null
[ -f "$dir/softmax.safetensors" ] || scripts/mpirun -np 2 $bin/dml-train --model softmax --epochs 2 --output "$dir/softmax.safetensors" >/dev/null
results="$dir/results.csv"
echo "round,model,tool,np,rows,median_s,rows_per_s,read_s,predict_s,write_s,load_before,load_after" > "$results"
load() { cut -d' ' -f1 /proc/loadavg; }
for round in $(seq 1 "$rounds"); do
  for model in mlp softmax; do
    for np in 1 2; do
      before=$(load)
      scripts/mpirun -np $np $bin/dml-bench predict --model "$dir/$model.safetensors" --data "$dir/synthetic.csv" \
        --output "$dir/dml-$np.csv" --repeats "$repeats" --csv "$dir/run.csv" >/dev/null
      echo "$round,$model,$(tail -1 "$dir/run.csv" | cut -d, -f1-8),$before,$(load)" >> "$results"
    done
    for reader in pandas loadtxt; do
      before=$(load)
      line=$(python3 benchmarks/peers/predict_numpy.py "$dir/$model.safetensors" "$dir/synthetic.csv" "$dir/numpy.csv" "$repeats" $reader)
      echo "$round,$model,${line%%,*},1,${line#*,},$before,$(load)" >> "$results"
      cmp -s "$dir/dml-1.csv" "$dir/numpy.csv" || echo "warning: DML's and numpy's labels differ ($model, $reader, round $round)" >&2
    done
  done
done
python3 - "$results" <<'PY'
import csv, statistics, subprocess, sys
rows = list(csv.DictReader(open(sys.argv[1])))
cpu = next((l.split(":", 1)[1].strip() for l in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
            if l.startswith("Model name")), "?")
loads = [float(r[k]) for r in rows for k in ("load_before", "load_after")]
print(f"CPU: {cpu}, {subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip()} cores; load average during the runs "
      f"{min(loads):.2f}-{max(loads):.2f} (median {statistics.median(loads):.2f})")
print("| model | tool | np | rows/s (median of rounds) | seconds | read | predict | write | runs |")
print("|---|---|---|---|---|---|---|---|---|")
med = {}
for key in sorted({(r["model"], r["tool"], r["np"]) for r in rows}):
    runs = [r for r in rows if (r["model"], r["tool"], r["np"]) == key]
    m = {k: statistics.median(float(r[k]) for r in runs) for k in ("median_s", "read_s", "predict_s", "write_s")}
    med[key] = m["median_s"]
    print(f"| {key[0]} | {key[1]} | {key[2]} | {float(runs[0]['rows']) / m['median_s']:,.0f} | {m['median_s']:.3f} | {m['read_s']:.3f} "
          f"| {m['predict_s']:.3f} | {m['write_s']:.3f} | {len(runs)} |")
for model in ("mlp", "softmax"):
    readers = {r: med[(model, f"numpy-{r}", "1")] for r in ("pandas", "loadtxt") if (model, f"numpy-{r}", "1") in med}
    d1, d2 = med.get((model, "dml", "1")), med.get((model, "dml", "2"))
    if readers and d1 and d2:
        best = min(readers, key=readers.get)
        n = readers[best]
        print(f"{model}: against numpy with its faster reader here ({best}), DML np 1 is {n / d1:.2f}x, np 2 {n / d2:.2f}x; "
              f"np 1 -> np 2: {d1 / d2:.2f}x")
PY
