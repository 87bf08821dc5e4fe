#!/usr/bin/env bash
# Slow streaks of the shared-memory allreduce (issue 20 item 5): N separate `mpirun -np 2 dml-bench allreduce`
# processes, each timing shm, auto and MPI_Allreduce (always) from 1 KiB to 256 MiB, and printing per run the
# shm÷MPI and auto÷MPI busbw ratios next to the facts that could explain a slow run:
#   cpus      the CPUs each rank was seen on (/proc/PID/stat field 39, sampled every 20 ms), and the share of
#             samples in which both ranks were on the same CPU; mpirun --report-bindings' binding;
#   ctxsw     involuntary context switches per rank (/proc/PID/status): a rank taken off its CPU;
#   minflt    minor page faults per rank (/proc/PID/stat), over the whole process;
#   thp       AnonHugePages / ShmemPmdMapped of the shm window's mapping and of the whole process (smaps), and
#             the THP settings of the machine (printed once);
#   window    where the window's parts start (page offset), from dml-bench's "# shm window" line;
#   probe     benchmarks/shm_probe.c between CPUs 0 and 1 just before the run: cache-line ping-pong latency,
#             reading a block the other CPU has just written, and whether the two CPUs are really two cores;
#   load      the 1-minute load average before the run and the steal time (/proc/stat) during it;
#   perf      software counters (cpu-migrations, context-switches, page-faults) of each rank when `perf stat`
#             works, plus cycles/instructions/cache-misses where the VM exposes hardware counters.
# Then a summary: how many runs had shm ≥ 2× MPI at 64 and 256 MiB, and auto ≥ 1.0× MPI at every size.
#
# usage: benchmarks/shm_streaks.sh [N=10]
#   env: BENCH (.build/release/dml-bench), BIND (core: mpirun --bind-to core | none | ...), OUT (a folder for the
#        per-run CSVs and the facts; default /tmp/shm_streaks.<time>), SIZES (1K:256M), ALGS (shm,auto), EXTRA
#        (more dml-bench arguments), ENVS (extra `-x NAME=value` for mpirun, e.g. "-x DML_SHM_BLOCK=4M").
# The machine's load matters: it is printed per run; compare runs only within one invocation.
set -u
N=${1:-10}
BENCH=${BENCH:-.build/release/dml-bench}
BIND=${BIND:-core}
SIZES=${SIZES:-1K:256M}
ALGS=${ALGS:-shm,auto}
EXTRA=${EXTRA:-}
ENVS=${ENVS:-}
OUT=${OUT:-/tmp/shm_streaks.$(date -u +%Y%m%dT%H%M%S)}
HERE=$(cd "$(dirname "$0")" && pwd)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 SWIFT_BACKTRACE=enable=no
mkdir -p "$OUT"
[ -x "$BENCH" ] || { echo "shm_streaks: no $BENCH (swift build -c release first)" >&2; exit 2; }
PROBE="$OUT/shm_probe"
cc -O2 -march=native -pthread "$HERE/shm_probe.c" -o "$PROBE" || { echo "shm_streaks: cannot build benchmarks/shm_probe.c" >&2; exit 2; }

PERF=()
PERF_NOTE="perf: not installed"
if command -v perf >/dev/null; then
  events=context-switches,cpu-migrations,page-faults
  if perf stat -x, -e cycles true 2>&1 | grep -q '^[0-9]'; then events=$events,cycles,instructions,cache-misses
    PERF_NOTE="perf: hardware and software counters"
  else PERF_NOTE="perf: software counters only (no hardware counters in this VM)"; fi
  # Each rank under its own `perf stat`, writing perf.<rank> in the run's folder.
  PERF=(sh -c 'e=$1; o=$2; shift 2; exec perf stat -x, -e "$e" -o "$o.$OMPI_COMM_WORLD_RANK" -- "$@"' sh "$events")
fi

echo "# shm_streaks: $N runs of mpirun -np 2 --bind-to $BIND $BENCH allreduce --sizes $SIZES --algorithms $ALGS $EXTRA $ENVS"
echo "# $(lscpu | grep 'Model name' | sed 's/  */ /g'), family $(lscpu | awk -F: '/CPU family/ {gsub(/ /,"",$2); print $2}') model $(lscpu | awk -F: '/^Model:/ {gsub(/ /,"",$2); print $2}'); $(nproc) CPUs; $(uname -r); $(mpirun --version 2>&1 | head -1)"
echo "# THP enabled: $(cat /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null); shmem: $(cat /sys/kernel/mm/transparent_hugepage/shmem_enabled 2>/dev/null); $PERF_NOTE"
echo "# per-run files: $OUT"

steal() { awk '/^cpu / { print $9 }' /proc/stat; }
total() { awk '/^cpu / { s = 0; for (i = 2; i <= NF; i++) s += $i; print s }' /proc/stat; }

for i in $(seq 1 "$N"); do
  d="$OUT/run$i"; mkdir -p "$d"
  load=$(cut -d' ' -f1 /proc/loadavg)
  probe=$("$PROBE" 0 1 2>&1)
  s0=$(steal); t0=$(total)
  # The sampler: every 20 ms, each rank's CPU, context switches, faults and (once set up) its window's smaps.
  python3 - "$BENCH" "$d/samples.txt" <<'PY' &
import os, sys, time
bench, out = os.path.realpath(sys.argv[1]), sys.argv[2]
def ranks():
    found = {}
    for pid in os.listdir('/proc'):
        if not pid.isdigit(): continue
        try:
            if os.path.realpath(f'/proc/{pid}/exe') != bench: continue
            env = open(f'/proc/{pid}/environ', 'rb').read().split(b'\0')
        except OSError: continue
        for e in env:
            if e.startswith(b'OMPI_COMM_WORLD_RANK='): found[int(e.split(b'=')[1])] = int(pid)
    return found
def smaps(pid):
    # Every MPI-3 shared window (/dev/shm/osc_sm.*): one per shm algorithm object (shm, and auto's own).
    win = {'addr': []}; allp = {'AnonHugePages': 0, 'ShmemPmdMapped': 0}; cur = None
    try:
        for line in open(f'/proc/{pid}/smaps'):
            f = line.split()
            if not f[0].endswith(':'):
                cur = f[0] if (len(f) >= 6 and '/osc_sm.' in f[5]) else None
                if cur:
                    lo, hi = (int(x, 16) for x in cur.split('-'))
                    win['addr'].append(f"{lo:x}+{(hi - lo) >> 10}K(2M-offset {lo % (2 << 20):#x})")
            elif f[0].rstrip(':') in ('AnonHugePages', 'ShmemPmdMapped', 'Rss'):
                k = f[0].rstrip(':')
                if k in allp: allp[k] += int(f[1])
                if cur: win[k] = win.get(k, 0) + int(f[1])
    except OSError: pass
    win['addr'] = ','.join(win['addr']) or '?'
    return win, allp
start = time.time(); pids = {}
cpus = {}; same = 0; both = 0; last = {}; win = {}; read = {}
while time.time() - start < 600:
    if len(pids) < 2:
        pids = ranks()
        if not pids and time.time() - start > 30: break
    alive = 0; now = {}
    for r, pid in pids.items():
        try:
            st = open(f'/proc/{pid}/stat').read().rsplit(')', 1)[1].split()
            status = open(f'/proc/{pid}/status').read()
        except OSError: continue
        alive += 1
        cpu = int(st[36]); now[r] = cpu
        cpus.setdefault(r, {}); cpus[r][cpu] = cpus[r].get(cpu, 0) + 1
        nv = [l.split()[1] for l in status.splitlines() if l.startswith('nonvoluntary_ctxt_switches')]
        last[r] = (int(st[7]), int(nv[0]) if nv else -1)   # minflt, involuntary switches
        # Read once the windows exist (after set-up), then kept: the last read of a live rank wins.
        if time.time() - start > 1.5 and time.time() - read.get(r, 0) > 1:
            read[r] = time.time(); w, a = smaps(pid)
            if w['addr'] != '?' or r not in win: win[r] = (w, a)
    if len(now) == 2:
        both += 1; same += now[0] == now[1]
    if pids and alive == 0: break
    time.sleep(0.02)
with open(out, 'w') as f:
    for r in sorted(cpus):
        seen = ','.join(f'{c}:{n}' for c, n in sorted(cpus[r].items()))
        mf, nv = last.get(r, (-1, -1))
        w, a = win.get(r, ({}, {}))
        f.write(f"rank{r} cpus={seen} minflt={mf} involuntary_ctxsw={nv} window={w.get('addr','?')} "
                f"window_rss_kB={w.get('Rss','?')} window_AnonHuge_kB={w.get('AnonHugePages','?')} "
                f"window_ShmemPmd_kB={w.get('ShmemPmdMapped','?')} process_AnonHuge_kB={a.get('AnonHugePages','?')}\n")
    f.write(f"same_cpu_share={same / both if both else float('nan'):.3f} samples={both}\n")
PY
  sampler=$!
  # shellcheck disable=SC2086
  wrap=(); [ ${#PERF[@]} -gt 0 ] && wrap=("${PERF[@]}" "$d/perf")
  mpirun --report-bindings --bind-to "$BIND" -np 2 $ENVS "${wrap[@]}" \
    "$BENCH" allreduce --sizes "$SIZES" --algorithms "$ALGS" --csv "$d/allreduce.csv" $EXTRA >"$d/stdout.txt" 2>"$d/stderr.txt"
  rc=$?
  wait "$sampler" 2>/dev/null
  s1=$(steal); t1=$(total)
  stealpct=$(awk -v a="$s0" -v b="$s1" -v c="$t0" -v e="$t1" 'BEGIN { printf "%.1f", (e > c) ? 100 * (b - a) / (e - c) : 0 }')
  python3 - "$d" "$i" "$rc" "$load" "$stealpct" "$probe" <<'PY'
import csv, os, re, sys
d, i, rc, load, steal, probe = sys.argv[1:7]
facts = {'run': i, 'rc': rc, 'load': load, 'steal_pct': steal, 'probe': probe}
ratios = {}
try:
    rows = list(csv.DictReader(open(f'{d}/allreduce.csv')))
    # busbw ratio = time ratio (the CSV's busbw is rounded to 4 decimals: 0 for a 1 KiB call slowed by load).
    mpi = {int(r['bytes']): float(r['time_us']) for r in rows if r['algorithm'] == 'mpi'}
    for r in rows:
        if r['algorithm'] != 'mpi':
            ratios.setdefault(r['algorithm'], {})[int(r['bytes'])] = mpi[int(r['bytes'])] / float(r['time_us'])
except (OSError, KeyError, ZeroDivisionError): pass
def fmt(b): return f'{b >> 20}M' if b >= 1 << 20 else f'{b >> 10}K'
out = [f"run {i}:"]
if rc != '0' or not ratios:
    out.append(f"FAILED (rc {rc}; see {d}/stderr.txt)")
for alg, by in sorted(ratios.items()):
    out.append(f"{alg}/mpi " + ' '.join(f"{fmt(b)}={x:.2f}" for b, x in sorted(by.items())))
binds = re.findall(r'MCW rank (\d+) (?:bound to .*: |is not bound)(\S*)', open(f'{d}/stderr.txt').read()) if os.path.exists(f'{d}/stderr.txt') else []
facts['binding'] = ' '.join(f'r{r}{b}' for r, b in sorted(binds)) or 'unbound'
try: facts['samples'] = ' | '.join(l.strip() for l in open(f'{d}/samples.txt'))
except OSError: facts['samples'] = '?'
win = [l.strip('# \n') for l in open(f'{d}/stdout.txt') if l.startswith('# shm window')] if os.path.exists(f'{d}/stdout.txt') else []
facts['window'] = win[0] if win else '?'
perf = []
for r in (0, 1):
    try:
        lines = [l.strip().split(',') for l in open(f'{d}/perf.{r}') if l[:1].isdigit() or l[:1] == '<']
        perf.append(f"r{r} " + ' '.join(f"{p[2]}={p[0]}" for p in lines if len(p) > 2))
    except OSError: pass
facts['perf'] = ' | '.join(perf) or 'none'
print('  '.join(out))
for k in ('binding', 'samples', 'window', 'probe', 'perf'):
    print(f"    {k}: {facts[k]}")
print(f"    load: {load} (1-min, before); steal {steal}% of CPU time during the run")
with open(os.path.join(os.path.dirname(d), 'runs.csv'), 'a') as f:
    w = csv.writer(f)
    for alg, by in sorted(ratios.items()):
        for b, x in sorted(by.items()):
            w.writerow([i, alg, b, f'{x:.4f}', load, steal, probe, facts['binding'], facts['samples'], facts['window'], facts['perf']])
PY
done

python3 - "$OUT/runs.csv" "$N" <<'PY'
import csv, statistics, sys
path, n = sys.argv[1], int(sys.argv[2])
try: rows = list(csv.reader(open(path)))
except OSError: rows = []
by = {}
for r in rows: by.setdefault(r[0], {}).setdefault(r[1], {})[int(r[2])] = float(r[3])
runs = sorted(by, key=int)
big = [1 << 26, 1 << 28]
shm_ok = [r for r in runs if all(by[r].get('shm', {}).get(b, 0) >= 2.0 for b in big)]
auto_ok = [r for r in runs if by[r].get('auto') and all(x >= 1.0 for x in by[r]['auto'].values())]
def spread(alg, b):
    xs = sorted(by[r][alg][b] for r in runs if b in by[r].get(alg, {}))
    return f"min {xs[0]:.2f} median {statistics.median(xs):.2f} max {xs[-1]:.2f}" if xs else "none"
print(f"# summary over {len(runs)} of {n} runs")
for b in big:
    print(f"#   shm/mpi at {b >> 20} MiB: {spread('shm', b)};  auto/mpi: {spread('auto', b)}")
worst = [(min(by[r]['auto'].items(), key=lambda kv: kv[1]), r) for r in runs if by[r].get('auto')]
if worst:
    (b, x), r = min(worst, key=lambda w: w[0][1])
    print(f"#   auto's lowest ratio at any size: {x:.2f} (run {r}, {b} bytes)")
print(f"{len(shm_ok)} of {n} runs >= 2x: shm/mpi >= 2.0 at both 64 MiB and 256 MiB")
print(f"{len(auto_ok)} of {n} runs >= 1x: auto/mpi >= 1.0 at every size")
PY
