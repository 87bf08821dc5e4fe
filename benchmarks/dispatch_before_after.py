#!/usr/bin/env python3
"""Medians of a benchmarks/dispatch_before_after.sh session, as Markdown tables.
   python3 benchmarks/dispatch_before_after.py OUT NAME...   (the first NAME is the reference of the ratios)"""
import csv, glob, re, statistics, sys

out, names = sys.argv[1], sys.argv[2:]
ref = names[0]
med = lambda xs: statistics.median(xs) if xs else float('nan')
fmt = lambda x: '' if x != x else f'{x:.3g}' if x < 10 else f'{x:.1f}'
ratio = lambda a, b: '' if a != a or b != b or not b else f'{a / b:.2f}'
# NAME against NAME-avx2 (what AVX-512 gains over AVX2), NAME-ou against NAME (what -Ounchecked gains).
pairs = [(n, n + '-avx2') for n in names if n + '-avx2' in names] + [(n + '-ou', n) for n in names if n + '-ou' in names]

print(f'Load average (1 min) during the session: {open(out + "/log.txt").read().count("load")} samples, '
      + '{:.2f}–{:.2f}'.format(*(lambda v: (min(v), max(v)))([float(l.split()[2]) for l in open(out + '/log.txt')])))
print()
kernels, order = {}, []
for name in names:
    for f in sorted(glob.glob(f'{out}/kernels-{name}-*.csv')):
        if not re.fullmatch(rf'.*/kernels-{re.escape(name)}-\d+\.csv', f): continue
        for row in csv.DictReader(open(f)):
            if 'naive' in row['kernel']: continue
            key = (row['kernel'], row['n'], 'GFLOP/s' if row['gflops'] else 'GB/s')
            if key not in order: order.append(key)
            kernels.setdefault(key, {}).setdefault(name, []).append(float(row['gflops'] or row['GBps']))
print('| kernel | n | unit | ' + ' | '.join(names) + ' | ' + ' | '.join(f'{n}/{ref}' for n in names[1:])
      + ''.join(f' | {a}/{b}' for a, b in pairs) + ' |')
print('|---' * (3 + 2 * len(names) - 1 + len(pairs)) + '|')
for key in order:
    m = {n: med(kernels[key].get(n, [])) for n in names}
    print(f'| {key[0]} | {key[1]} | {key[2]} | ' + ' | '.join(fmt(m[n]) for n in names) + ' | '
          + ' | '.join(ratio(m[n], m[ref]) for n in names[1:]) + ''.join(f' | {ratio(m[a], m[b])}' for a, b in pairs) + ' |')
print()
train = {}
for name in names:
    for f in glob.glob(f'{out}/train-{name}-np*-*.csv'):
        m = re.fullmatch(rf'.*/train-{re.escape(name)}-np(\d+)-\d+\.csv', f)
        if not m: continue
        for row in csv.DictReader(open(f)):
            train.setdefault((row['model'], m.group(1)), {}).setdefault(name, []).append((float(row['step_ms']), row['final_loss']))
tn = [n for n in names if any(n in d for d in train.values())]
if train:
    print('Median step time (ms, slowest rank) of `dml-bench train --steps 500 --warmup 50`; every run\'s final loss in brackets.')
    print()
    print('| model | np | ' + ' | '.join(tn) + ' | ' + ' | '.join(f'{n}/{ref} (time)' for n in tn[1:]) + ' |')
    print('|---' * (2 + 2 * len(tn) - 1) + '|')
    for key in sorted(train):
        d = train[key]
        m = {n: med([x[0] for x in d.get(n, [])]) for n in tn}
        losses = {n: '/'.join(sorted(set(x[1] for x in d.get(n, [])))) for n in tn}
        print(f'| {key[0]} | {key[1]} | ' + ' | '.join(f'{m[n]:.3f} [{losses[n]}]' for n in tn) + ' | '
              + ' | '.join(ratio(m[n], m[ref]) for n in tn[1:]) + ' |')
    print()
data = {}
for name in names:
    for f in glob.glob(f'{out}/data-{name}-np*-*.txt'):
        m = re.fullmatch(rf'.*/data-{re.escape(name)}-np(\d+)-\d+\.txt', f)
        if not m: continue
        for line in open(f):
            p = re.search(r'in ([\d.]+) s \(.*CPU ([\d.]+) s, ([\d.]+) MB/s per CPU second\); peak RSS so far (\d+) kB', line)
            if p: data.setdefault((m.group(1), name), []).append(tuple(float(x) for x in p.groups()))
if data:
    print('CSV loading (`DML_DATA_STATS=1 dml-train --data big.csv --steps 1`), medians over ranks and rounds.')
    print()
    print('| np | build | parse wall s | parse CPU s | MB/s per CPU second | peak RSS kB |')
    print('|---|---|---|---|---|---|')
    for key in sorted(data, key=lambda k: (k[0], names.index(k[1]))):
        d = data[key]
        print(f'| {key[0]} | {key[1]} | ' + ' | '.join(fmt(med([x[i] for x in d])) for i in range(3)) + f' | {med([x[3] for x in d]):.0f} |')
    print()
ar = {}
for name in names:
    for f in glob.glob(f'{out}/allreduce-{name}-*.txt'):
        if not re.fullmatch(rf'.*/allreduce-{re.escape(name)}-\d+\.txt', f): continue
        header = None
        for line in open(f):
            if line.startswith('#') and '|' in line and 'ring' in line: header = [h.strip() for h in line.split('|')[1:]]
            elif '|' in line and not line.startswith('#') and header:
                blocks = line.split('|')
                for alg, block in zip(header, blocks[1:]):
                    ar.setdefault((blocks[0].split()[0], alg), {}).setdefault(name, []).append(float(block.split()[0]))
if ar:
    an = [n for n in names if any(n in d for d in ar.values())]
    print('`dml-bench allreduce --sizes 1M,16M --algorithms ring,ring-fp16,ring-bf16`, np 2: median time (µs).')
    print()
    print('| size | algorithm | ' + ' | '.join(an) + ' | ' + ' | '.join(f'{n}/{ref}' for n in an[1:]) + ' |')
    print('|---' * (2 + 2 * len(an) - 1) + '|')
    for key in sorted(ar, key=lambda k: (len(k[0]), k[0], k[1])):
        m = {n: med(ar[key].get(n, [])) for n in an}
        print(f'| {key[0]} | {key[1]} | ' + ' | '.join(f'{m[n]:.0f}' for n in an) + ' | ' + ' | '.join(ratio(m[n], m[ref]) for n in an[1:]) + ' |')
