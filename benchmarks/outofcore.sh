#!/usr/bin/env bash
# Data larger than memory: a CSV of SIZE_GB trained at np 2, in memory and streamed from --cache-dir under
# `ulimit -v` (the per-rank limit also bounds mpirun; each rank's peak RSS is measured by /usr/bin/time).
#
# usage: benchmarks/outofcore.sh [SIZE_GB=4] [LIMIT_MB=512] [EPOCHS=3] [WORK=/tmp/dml-outofcore] [REPEATS=3]
# Needs a release build (swift build -c release). The CSV is generated (benchmarks/make_csv.py: a 200 MB
# block, repeated) and left in WORK; it is not checked in. After the first streamed run (which parses the
# CSV into the caches), each repeat runs the in-memory job and the streamed job (caches reused) back to back,
# softmax then an MLP 32→64→10 for one epoch, so that their ratio is measured under the same load.
set -euo pipefail
size_gb=${1:-4}; limit_mb=${2:-512}; epochs=${3:-3}; work=${4:-/tmp/dml-outofcore}; repeats=${5:-3}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$root/.build/release/dml-train
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mkdir -p "$work/cache"
csv=$work/big.csv
if [ ! -f "$csv" ]; then
    python3 "$root/benchmarks/make_csv.py" "$work/block.csv" 200 32 >/dev/null
    cp "$work/block.csv" "$csv"
    copies=$(( size_gb * 1000 / 200 - 1 ))
    for _ in $(seq "$copies"); do tail -n +2 "$work/block.csv" >> "$csv"; done
    rm "$work/block.csv"
fi
rows=$(( $(wc -l < "$csv") - 1 ))
batch=256
steps=$(( (rows + batch - 1) / batch ))
echo "# $(lscpu | grep 'Model name' | sed 's/  */ /g'); $(nproc) cores; $(du -h "$csv" | cut -f1) CSV, $rows rows x 32 features, np 2, batch $batch, $epochs epochs"
softmax=(--data "$csv" --model softmax --batch-size $batch --epochs "$epochs" --lr 0.001 --log-every "$steps")
mlp=(--data "$csv" --model mlp --hidden 64 --batch-size $batch --epochs 1 --lr 0.001 --log-every "$steps")
streamed=(--cache-dir "$work/cache" --max-memory "${limit_mb}M")
run() {  # name, limit (KiB or unlimited), flags...
    local name=$1 limit=$2; shift 2
    # Each rank's /usr/bin/time appends one line to $name.time (one small O_APPEND write each: the two ranks'
    # lines cannot interleave, as they did on the shared stderr).
    rm -f "$work/$name.time"
    ( ulimit -v "$limit"
      timeout 1200 mpirun --oversubscribe -np 2 /usr/bin/time -a -o "$work/$name.time" -f "peak_rss_kb %M cpu_s %U %S" "$bin" "$@" --output "$work/$name.safetensors" ) \
        > "$work/$name.out" 2> "$work/$name.err" || { echo "$name failed:"; tail -5 "$work/$name.err"; return 1; }
    echo "## $name: $*"
    grep -E "^step|^done" "$work/$name.out" | sed 's/^/   /'
    echo "   peak RSS per rank (MB): $(grep peak_rss_kb "$work/$name.time" | awk '{printf "%.0f ", $2/1024}'); CPU s per rank (user+sys): $(grep peak_rss_kb "$work/$name.time" | awk '{printf "%.1f ", $4 + $5}')"
}
same() {  # streamed run, in-memory run
    python3 - "$work/$1.safetensors" "$work/$2.safetensors" <<'PY'
import sys, struct
def tensors(p):
    b = open(p, 'rb').read(); n = struct.unpack('<Q', b[:8])[0]; return b[8 + n:]
print(f"   parameters {'identical to' if tensors(sys.argv[1]) == tensors(sys.argv[2]) else 'DIFFERENT from'} the in-memory run's")
PY
}
ratio() {  # label, streamed run, in-memory run: samples/s streamed ÷ in-memory per epoch and the training time's ratio
    python3 - "$1" "$work/$2.out" "$work/$3.out" "$work/ratios.txt" <<'PY'
import re, sys
label, s_path, m_path, log = sys.argv[1:]
def epochs(p):
    out = {}
    for line in open(p):
        m = re.search(r"epoch (\d+) .* ([\d,]+) samples/s", line)
        if m: out[int(m.group(1))] = float(m.group(2).replace(",", ""))
    t = [float(m.group(1)) for m in (re.search(r"^\s*done: \d+ steps in ([\d.]+) s", l) for l in open(p)) if m]
    return out, (t[0] if t else float("nan"))
(s, ts), (m, tm) = epochs(s_path), epochs(m_path)
per = "  ".join(f"epoch {e}: {s[e] / m[e]:.2f}" for e in sorted(s) if e in m)
last = max(e for e in s if e in m)
line = f"RATIO {label}: streamed / in-memory samples/s  {per}  (last epoch {s[last] / m[last]:.2f}); training time in-memory / streamed {tm / ts:.2f}"
print("   " + line)
open(log, "a").write(f"{label} {s[last] / m[last]:.4f}\n")
PY
}
rm -f "$work/ratios.txt"
rm -f "$work"/cache/*
run memory-0 unlimited "${softmax[@]}"
run streamed-first $(( limit_mb * 1024 )) "${softmax[@]}" "${streamed[@]}"
same streamed-first memory-0
for r in $(seq "$repeats"); do
    run memory-$r unlimited "${softmax[@]}"
    run streamed-$r $(( limit_mb * 1024 )) "${softmax[@]}" "${streamed[@]}"
    same streamed-$r memory-$r
    ratio "softmax run $r" streamed-$r memory-$r
    run mlp-memory-$r unlimited "${mlp[@]}"
    run mlp-streamed-$r $(( limit_mb * 1024 )) "${mlp[@]}" "${streamed[@]}"
    same mlp-streamed-$r mlp-memory-$r
    ratio "mlp run $r" mlp-streamed-$r mlp-memory-$r
done
# The figure the target is about (epochs after the first at ≥ 0.70 of the in-memory samples/s), one line per model.
python3 - "$work/ratios.txt" <<'PY'
import statistics, sys
by = {}
for line in open(sys.argv[1]):
    *label, v = line.split()
    by.setdefault(label[0], []).append(float(v))
for model, v in by.items():
    print(f"RATIO SUMMARY {model} last epoch, streamed / in-memory: " + " ".join(f"{x:.2f}" for x in v)
          + f"  min {min(v):.2f} median {statistics.median(v):.2f}  target >= 0.70 in every run: {'met' if min(v) >= 0.70 else 'MISSED'}")
PY
