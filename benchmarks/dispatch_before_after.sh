#!/usr/bin/env bash
# Before/after measurement of a kernels change, as in benchmarks/RESULTS.md ("Kernels without compiler flags"):
# dml-bench kernels, dml-bench train (np 1 and 2), CSV loading (dml-train --data, np 1 and 2) and the ring
# allreduces, for several builds in one session, alternating (the order reversed every other round); then the
# medians (benchmarks/dispatch_before_after.py). Each build is a folder holding dml-bench and dml-train.
#   BUILDS="before=/tmp/before/.build/release after=.build/release" benchmarks/dispatch_before_after.sh OUT [ROUNDS] [CSV]
# A build named NAME-avx2 with an empty folder (after-avx2=) runs NAME's binaries with DML_KERNELS_ISA=avx2 (the
# AVX2 path on an AVX-512 CPU). A build without dml-train is timed by dml-bench kernels only, at n = 256 (e.g. the
# old Swift kernels compiled for the SSE2 baseline, whose gemm runs at ~1.5 GFLOP/s). CSV: a file from
# benchmarks/make_csv.py (default: none, no loading figures).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:?output folder}; rounds=${2:-5}; csv=${3:-}
mkdir -p "$out"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
lscpu > "$out/lscpu.txt"
declare -A dir
names=()
for b in ${BUILDS:?set BUILDS="name=folder ..."}; do names+=("${b%%=*}"); dir[${b%%=*}]=${b#*=}; done
log() { echo "$(date +%T) load $(cut -d' ' -f1-3 /proc/loadavg) $*" | tee -a "$out/log.txt"; }
bin() { local n=$1; if [ -n "${dir[$n]}" ]; then echo "${dir[$n]}"; else echo "${dir[${n%-avx2}]}"; fi; }
isa() { [[ $1 == *-avx2 ]] && echo avx2 || true; }
for r in $(seq 1 "$rounds"); do
    order=("${names[@]}")
    if (( r % 2 == 0 )); then order=(); for ((i=${#names[@]}-1; i>=0; i--)); do order+=("${names[i]}"); done; fi
    for v in "${order[@]}"; do
        log "kernels $v round $r"
        sizes=(--sizes 256,512,1024,2048)
        [ -x "$(bin "$v")/dml-train" ] || sizes=(--sizes 256 --naive-max 1 --repeats 3)
        DML_KERNELS_ISA=$(isa "$v") "$(bin "$v")/dml-bench" kernels "${sizes[@]}" --csv "$out/kernels-$v-$r.csv" > "$out/kernels-$v-$r.txt" 2>&1
    done
    for np in 1 2; do
        for v in "${order[@]}"; do
            [ -x "$(bin "$v")/dml-train" ] || continue
            log "train np=$np $v round $r"
            DML_KERNELS_ISA=$(isa "$v") scripts/mpirun -np "$np" -x DML_KERNELS_ISA "$(bin "$v")/dml-bench" train --steps 500 --warmup 50 \
                --csv "$out/train-$v-np$np-$r.csv" > "$out/train-$v-np$np-$r.txt" 2>&1
        done
    done
    for v in "${order[@]}"; do
        [ -n "$csv" ] && [ -x "$(bin "$v")/dml-train" ] && [[ $v != *-avx2 ]] || continue
        for np in 1 2; do
            log "data np=$np $v round $r"
            DML_DATA_STATS=1 scripts/mpirun -np "$np" -x DML_DATA_STATS "$(bin "$v")/dml-train" --data "$csv" --steps 1 2>&1 \
                | grep dml-data > "$out/data-$v-np$np-$r.txt"
        done
    done
    for v in "${order[@]}"; do
        [ -x "$(bin "$v")/dml-train" ] && [[ $v != *-avx2 ]] || continue
        log "allreduce $v round $r"
        scripts/mpirun -np 2 "$(bin "$v")/dml-bench" allreduce --sizes 1M,16M --algorithms ring,ring-fp16,ring-bf16 > "$out/allreduce-$v-$r.txt" 2>&1
    done
done
log done
python3 benchmarks/dispatch_before_after.py "$out" "${names[@]}"
