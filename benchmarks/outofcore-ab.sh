#!/usr/bin/env bash
# Out-of-core A/B: in memory, streamed by binary A and streamed by binary B, interleaved in each round (so that
# their ratios are taken under the same load), softmax on the outofcore.sh CSV (or any WORK/big.csv), np 2 (NP), 3 epochs, the streamed
# runs under `ulimit -v LIMIT` with --max-memory LIMIT. Needs WORK/big.csv and its caches in WORK/cache from a
# run of benchmarks/outofcore.sh (or any streamed run); each binary must be named dml-train (the single malloc
# arena is chosen by the program's name).
#
# usage: [NP=2] benchmarks/outofcore-ab.sh A/dml-train B/dml-train [ROUNDS=2] [WORK=/tmp/dml-outofcore] [LIMIT_MB=512]
set -euo pipefail
a=$1; b=$2; rounds=${3:-2}; work=${4:-/tmp/dml-outofcore}; limit_mb=${5:-512}; np=${NP:-2}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
cd "$work"
echo "# $(lscpu | grep 'Model name' | sed 's/  */ /g'); $(nproc) cores; load $(cut -d' ' -f1-3 /proc/loadavg)"
rows=$(( $(wc -l < big.csv) - 1 ))
steps=$(( (rows + 255) / 256 ))   # an epoch: one progress line each
args=(--data big.csv --model softmax --batch-size 256 --epochs 3 --lr 0.001 --log-every "$steps")
for round in $(seq "$rounds"); do
    for v in memory A B; do
        rm -f "$v.time"
        if [ "$v" = memory ]; then
            mpirun --oversubscribe -np "$np" /usr/bin/time -a -o "$v.time" -f "peak_rss_kb %M" "$b" "${args[@]}" --output "$v.safetensors" > "$v.out" 2>&1
        else
            bin=$a; [ "$v" = B ] && bin=$b
            ( ulimit -v $(( limit_mb * 1024 ))
              mpirun --oversubscribe -np "$np" /usr/bin/time -a -o "$v.time" -f "peak_rss_kb %M" "$bin" "${args[@]}" \
                  --cache-dir cache --max-memory "${limit_mb}M" --output "$v.safetensors" > "$v.out" 2>&1 )
        fi
        # Training seconds (done:), and the elapsed column at the end of epoch 1 (the 50000th step).
        echo "round $round $v: $(grep -E '^done' "$v.out") | samples/s by epoch: $(grep -E '^step ' "$v.out" | grep -o '[0-9,]* samples/s' | cut -d' ' -f1 | tr '\n' ' ')| $(grep -o 'windows of up to [0-9]* MB' "$v.out" || true) | peak RSS MB $(awk '{printf "%.0f ", $2/1024}' "$v.time") | load $(cut -d' ' -f1 /proc/loadavg)"
    done
    python3 - <<'PY'
import struct
def t(p):
    b = open(p, 'rb').read(); n = struct.unpack('<Q', b[:8])[0]; return b[8 + n:]
print("   parameters: A", "identical" if t('memory.safetensors') == t('A.safetensors') else "DIFFERENT",
      "| B", "identical" if t('memory.safetensors') == t('B.safetensors') else "DIFFERENT", "to the in-memory run's")
PY
done
