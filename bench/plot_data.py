#!/usr/bin/env python3
"""Turns benchmark outputs into the gnuplot .dat tables bench/plots.sh draws.

  plot_data.py iotlb JSON OUTDIR   bench_iotlb's Google Benchmark JSON ->
      OUTDIR/iotlb_hit_vs_entries.dat  entries, then M translations/s per
          implementation (BM_IotlbHit/<impl>/<entries>, items_per_second / 1e6)
      OUTDIR/unmap_cost_vs_batch.dat   batch, ns per UNMAP (BM_UnmapSync/<batch>,
          the ns_per_unmap counter: wall time of unmap + invalidate + one sync
          per batch, divided by the UNMAPs), min, max
  plot_data.py pvp RESULTS_TSV OUTDIR  bench/pvp.sh's results.tsv ->
      OUTDIR/pvp_mpps_vs_size.dat      size, then Mpps per back end and setup:
          plain = config plain-txonly, vIOMMU = config iommu with mode lazy

Every value is the median over the repetitions (Google Benchmark iteration
runs grouped by run_name, or its _median aggregate when the JSON only holds
aggregates; results.tsv rows grouped by everything but rep). Min and max, where
written, are over the same repetitions. The first line of each table is its
column header (gnuplot's columnheader); a missing value is NaN, and a series
with no data at all is said so on stderr.
"""
import collections
import csv
import json
import math
import os
import statistics
import sys

NAN = float('nan')


def warn(msg):
    print(f'plot_data: {msg}', file=sys.stderr)


def fmt(v):
    return 'NaN' if v is None or (isinstance(v, float) and math.isnan(v)) else f'{v:.6g}'


def shown(path):
    """`path` relative to the working directory (plots.sh: the repository) when inside it."""
    rel = os.path.relpath(path)
    return path if rel.startswith('..') else rel


def write_table(path, comments, header, rows):
    with open(path, 'w') as f:
        f.write(' '.join(header) + '\n')
        for c in comments:
            f.write(f'# {c}\n')
        for r in rows:
            f.write(' '.join(fmt(v) if not isinstance(v, int) else str(v) for v in r) + '\n')
    print(f'plot_data: wrote {path}', file=sys.stderr)


def bench_values(doc, field):
    """{run_name: [value of `field` per repetition]}, from iteration runs, or
    from the _median aggregates when there are none."""
    runs = collections.defaultdict(list)
    medians = {}
    for b in doc.get('benchmarks', []):
        if b.get('error_occurred'):
            warn(f"{b.get('name')}: skipped, error: {b.get('error_message', '?')}")
            continue
        if field not in b:
            continue
        name = b.get('run_name', b['name'])
        if b.get('run_type', 'iteration') == 'iteration':
            runs[name].append(float(b[field]))
        elif b.get('aggregate_name') == 'median':
            medians[name] = float(b[field])
    for name, v in medians.items():
        runs.setdefault(name, [v])
    return runs


def iotlb(json_path, outdir):
    with open(json_path) as f:
        doc = json.load(f)
    ctx = doc.get('context', {})
    src = (f"{shown(json_path)}: {ctx.get('executable', '?')}, "
           f"{ctx.get('date', '?')}, {ctx.get('num_cpus', '?')} CPUs")
    ok = True

    # BM_IotlbHit/<impl>/<entries>: items_per_second = translations/s.
    hit = {}
    for name, vs in bench_values(doc, 'items_per_second').items():
        parts = name.split('/')
        if len(parts) == 3 and parts[0] == 'BM_IotlbHit':
            hit[(parts[1], int(parts[2]))] = vs
    if hit:
        impls = []
        for impl, _ in hit:  # JSON order: vxlate first, then the baselines
            if impl not in impls:
                impls.append(impl)
        sizes = sorted({e for _, e in hit})
        rows = [[e] + [statistics.median(hit[(i, e)]) / 1e6 if (i, e) in hit else NAN for i in impls]
                for e in sizes]
        reps = sorted({len(v) for v in hit.values()})
        write_table(os.path.join(outdir, 'iotlb_hit_vs_entries.dat'),
                    [src, 'BM_IotlbHit/<impl>/<entries>: median M translations/s (items_per_second / 1e6)',
                     f'repetitions per point: {reps}'],
                    ['entries'] + impls, rows)
    else:
        warn(f'{json_path}: no BM_IotlbHit/<impl>/<entries> results')
        ok = False

    # BM_UnmapSync/<batch>: ns_per_unmap (items_per_second there is per CPU second).
    unmap = {}
    for name, vs in bench_values(doc, 'ns_per_unmap').items():
        parts = name.split('/')
        if len(parts) == 2 and parts[0] == 'BM_UnmapSync':
            unmap[int(parts[1])] = vs
    if unmap:
        rows = [[b, statistics.median(unmap[b]), min(unmap[b]), max(unmap[b])] for b in sorted(unmap)]
        write_table(os.path.join(outdir, 'unmap_cost_vs_batch.dat'),
                    [src, 'BM_UnmapSync/<batch>: ns per UNMAP (ns_per_unmap counter), median, min, max over '
                     f'{sorted({len(v) for v in unmap.values()})} repetitions'],
                    ['batch', 'ns_per_unmap', 'min', 'max'], rows)
    else:
        warn(f'{json_path}: no BM_UnmapSync/<batch> results with ns_per_unmap')
        ok = False
    return ok


PVP_HEADER = ['config', 'backend', 'mode', 'size', 'rep', 'mpps', 'drops', 'ack_p99_us']
# (column header, config, backend, mode or None for any): the four curves of
# pvp_mpps_vs_size. Headers are quoted: gnuplot's columnheader reads them whole.
PVP_SERIES = [
    ('"vxlate-switch, no vIOMMU"', 'plain-txonly', 'vxlate', None),
    ('"net_vhost, no vIOMMU"', 'plain-txonly', 'net_vhost', None),
    ('"vxlate-switch, vIOMMU lazy"', 'iommu', 'vxlate', 'lazy'),
    ('"net_vhost, vIOMMU lazy"', 'iommu', 'net_vhost', 'lazy'),
]


def pvp(tsv_path, outdir):
    with open(tsv_path, newline='') as f:
        reader = csv.reader(f, delimiter='\t')
        header = next(reader, None)
        if header != PVP_HEADER:
            sys.exit(f'plot_data: {tsv_path}: header is {header}, expected {PVP_HEADER}')
        vals = collections.defaultdict(list)
        for n, row in enumerate(reader, start=2):
            if not row or not ''.join(row).strip():
                continue
            if len(row) != len(PVP_HEADER):
                warn(f'{tsv_path}:{n}: {len(row)} fields, skipped')
                continue
            r = dict(zip(PVP_HEADER, row))
            try:
                mpps, size = float(r['mpps']), int(r['size'])
            except ValueError:
                warn(f"{tsv_path}:{n}: size {r['size']!r} / mpps {r['mpps']!r} not numbers, skipped")
                continue
            vals[(r['config'], r['backend'], r['mode'], size)].append(mpps)
    # All four columns are always written (plots.sh styles them by position);
    # a curve with no rows is all NaN, which gnuplot skips with a warning.
    cols, series = [], []
    for col, config, backend, mode in PVP_SERIES:
        keys = {k for k in vals if k[0] == config and k[1] == backend and (mode is None or k[2] == mode)}
        modes = sorted({k[2] for k in keys})
        if len(modes) > 1:  # plain-txonly is expected to have one mode; keep 'plain' if several
            warn(f'{config}/{backend}: modes {modes}; plotting mode plain')
            keys = {k for k in keys if k[2] == 'plain'}
        if not keys:
            warn(f'{tsv_path}: no rows for config {config}, backend {backend}'
                 + (f', mode {mode}' if mode else '') + f': curve {col} is empty')
        cols.append(col)
        series.append({k[3]: vals[k] for k in keys})
    if not any(series):
        warn(f'{tsv_path}: nothing to plot')
        return False
    sizes = sorted({s for d in series for s in d})
    rows = [[s] + [statistics.median(d[s]) if s in d else NAN for d in series] for s in sizes]
    reps = sorted({len(v) for d in series for v in d.values()})
    write_table(os.path.join(outdir, 'pvp_mpps_vs_size.dat'),
                [f'{shown(tsv_path)}: median Mpps over reps ({reps} per point); '
                 'no vIOMMU = config plain-txonly, vIOMMU lazy = config iommu mode lazy'],
                ['size'] + cols, rows)
    return True


def main(argv):
    if len(argv) != 4 or argv[1] not in ('iotlb', 'pvp'):
        sys.exit(__doc__)
    os.makedirs(argv[3], exist_ok=True)
    ok = (iotlb if argv[1] == 'iotlb' else pvp)(argv[2], argv[3])
    return 0 if ok else 2


if __name__ == '__main__':
    sys.exit(main(sys.argv))
