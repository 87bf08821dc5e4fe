#!/usr/bin/env bash
# hier's mid-size dip (RESULTS.md, "Multi-node"): the flat ring and hier at np 8 (4 network-namespace nodes × 2
# ranks, each node's link capped by tc tbf), sizes 128K..4M, with the rings' default 256 KiB segments (hier's
# rails send 64–128 KiB messages at 512K–1M, above OpenMPI's 64 KiB TCP eager limit: a rendezvous each) and
# with 32 KiB segments (every message eager), and as built (no DML_RING_SEGMENT: the flat ring 256 KiB, hier's
# rails `HierarchicalAllreduce.railSegmentBytes`; with `auto`), ROUNDS rounds interleaved, plus each node's tbf
# drop counter and TCP retransmissions before and after. Needs root and a release build.
#   benchmarks/cluster_hier_dip.sh [OUT_DIR] [RATE] [ROUNDS]      default: benchmarks/results/cluster-hier-dip 1gbit 3
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-benchmarks/results/cluster-hier-dip} rate=${2:-1gbit} rounds=${3:-3}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
bench=.build/release/dml-bench
[ -x $bench ] || { echo "build first: swift build -c release" >&2; exit 1; }
mkdir -p "$out"
name=d$$
name=${name:0:6}
scripts/cluster --name "$name" up 4 --rate "$rate" --slots 2
trap 'scripts/cluster --name "$name" down' EXIT
counters() {
    for i in 1 2 3 4; do
        ns=dmlc$name-n$i
        printf '%s tbf-dropped %s tcp-retrans %s\n' "$ns" \
            "$(ip netns exec "$ns" tc -s qdisc show dev eth0 | sed -n 's/.*dropped \([0-9]*\).*/\1/p')" \
            "$(ip netns exec "$ns" nstat -az TcpRetransSegs | awk '/TcpRetransSegs/ {print $2}')"
    done
}
{ lscpu | grep 'Model name'; echo "rate $rate per node (tbf), 4 nodes x 2 ranks, $(date -u)"; uptime; } > "$out/machine.txt"
counters > "$out/counters-before.txt"
for round in $(seq 1 "$rounds"); do
    for seg in 256K 32K default; do
        env=(-x DML_RING_SEGMENT=$seg) algs=ring,hier
        [ $seg = default ] && env=() algs=ring,hier,auto
        scripts/cluster --name "$name" mpirun -np 8 "${env[@]}" $bench allreduce --sizes 128K:4M --factor 2 \
            --algorithms $algs --iters 50 --max-seconds 0.5 --csv "$out/seg$seg-r$round.csv" > "$out/seg$seg-r$round.log" 2>&1
        echo "round $round, ring segments $seg, $(uptime | sed 's/.*load/load/')"
    done
done
counters > "$out/counters-after.txt"
uptime >> "$out/machine.txt"
python3 - "$out" <<'PY' | tee "$out/summary.txt"
import csv, glob, statistics, sys
d = {}
for f in glob.glob(sys.argv[1] + "/seg*-r*.csv"):
    seg = f.rsplit("/", 1)[1].split("-")[0][3:]
    for r in csv.DictReader(open(f)):
        d.setdefault((seg, r["algorithm"], int(r["bytes"])), []).append(float(r["time_us"]) / 1e3)
print("median of the rounds, ms; ring/hier > 1: hier faster")
print(f"{'size':>6} | {'256K segments: mpi':>18} {'ring':>7} {'hier':>7} {'ring/hier':>9} | {'32K segments: mpi':>17} {'ring':>7} {'hier':>7} {'ring/hier':>9}"
      + (f" | {'as built: mpi':>13} {'ring':>7} {'hier':>7} {'ring/hier':>9} {'auto':>7}" if any(k[0] == "default" for k in d) else ""))
for n in sorted({k[2] for k in d}):
    cells = []
    for seg in ("256K", "32K", "default"):
        m = {a: statistics.median(d[(seg, a, n)]) for a in ("mpi", "ring", "hier", "auto") if (seg, a, n) in d}
        if m:
            cells.append(f"{m['mpi']:{18 if seg != 'default' else 13}.2f} {m['ring']:7.2f} {m['hier']:7.2f} {m['ring'] / m['hier']:9.2f}"
                         + (f" {m['auto']:7.2f}" if "auto" in m else ""))
    print(f"{n >> 10:>5}K | " + " | ".join(cells))
PY
