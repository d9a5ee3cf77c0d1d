// The comparison's report: medians per (cell, system), the walrus-vs-peers table, latency
// percentiles, the project's performance goals, each system's settings, and the chart
// specifications.
import { median } from './stats.mjs';
import { fmtInt, fmtNum, table } from './report.mjs';

const CELL_ORDER = ['none', 'group', 'record x1', 'record x16', 'record x256', 'read-back', 'consumers x4'];

function ratioText(v, base) {
  if (!Number.isFinite(v) || !Number.isFinite(base) || base === 0) return '';
  const r = v / base;
  return `${r >= 10 ? fmtNum(r, 0) : r >= 1 ? fmtNum(r, 2) : fmtNum(r, 3)}x`;
}

/** Prints the report; returns { medians, chartSpecs }. */
export function compareReport(rows, systems, cfg) {
  const cells = CELL_ORDER.filter((c) => rows.some((r) => r.cell === c));
  const med = new Map(); // `${cell}|${system}` -> median row fields
  for (const c of cells) {
    for (const s of systems) {
      const rs = rows.filter((r) => r.cell === c && r.system === s.name);
      if (rs.length === 0) continue;
      const m = { cell: c, system: s.name, runs: rs.length };
      for (const f of ['entriesPerSec', 'mbPerSec', 'p50Ms', 'p99Ms', 'p999Ms', 'maxMs']) m[f] = median(rs.map((r) => r[f]));
      if (rs[0].perConsumer) m.perConsumerEps = median(rs.flatMap((r) => r.perConsumer));
      m.minEps = Math.min(...rs.map((r) => r.entriesPerSec));
      m.maxEps = Math.max(...rs.map((r) => r.entriesPerSec));
      med.set(`${c}|${s.name}`, m);
    }
  }
  const get = (c, name) => med.get(`${c}|${name}`);

  // Throughput: one column per cell, ratio to walrus of the same cell.
  const header = ['system', ...cells.map((c) => `${c} (entries/s, vs walrus)`)];
  const body = systems.map((s) => [
    s.name,
    ...cells.map((c) => {
      const m = get(c, s.name);
      if (!m) return '-';
      const w = get(c, 'walrus');
      return s.name === 'walrus' ? fmtInt(m.entriesPerSec) : `${fmtInt(m.entriesPerSec)} (${ratioText(m.entriesPerSec, w?.entriesPerSec) || '-'})`;
    }),
  ]);
  console.log(`Throughput, entries/s (median of ${cfg.runs} round${cfg.runs === 1 ? '' : 's'}; in parentheses: this / walrus in the same cell; '-' = not applicable)`);
  console.log(table(header, body, new Set(cells.map((_, i) => i + 1))));
  console.log('');

  // Spread: min .. max per cell, so a reader sees the noise.
  const spread = systems.map((s) => [s.name, ...cells.map((c) => (get(c, s.name) ? `${fmtInt(get(c, s.name).minEps)} .. ${fmtInt(get(c, s.name).maxEps)}` : '-'))]);
  console.log('Spread over rounds (min .. max entries/s)');
  console.log(table(['system', ...cells], spread, new Set(cells.map((_, i) => i + 1))));
  console.log('');

  // Named consumers draining one topic at once (walrus only): total and per consumer.
  for (const s of systems) {
    const m = get('consumers x4', s.name);
    if (m) {
      console.log(
        `${s.name}, 4 named consumers draining the 'none' cell's records at once, each reading all of them: ${fmtInt(m.entriesPerSec)} entries/s in total, ${fmtInt(m.perConsumerEps)} per consumer (medians); read-back by one reader: ${fmtInt(get('read-back', s.name)?.entriesPerSec ?? NaN)}`,
      );
    }
  }
  if (cells.includes('consumers x4')) console.log('');

  // Latency of durable acknowledgements.
  const latRows = [];
  for (const c of cells.filter((x) => x.startsWith('record'))) {
    for (const s of systems) {
      const m = get(c, s.name);
      if (m) latRows.push([c, s.name, fmtNum(m.p50Ms, 3), fmtNum(m.p99Ms, 3), fmtNum(m.p999Ms, 3), fmtNum(m.maxMs, 2), ratioText(m.p50Ms, get(c, 'walrus')?.p50Ms)]);
    }
  }
  if (latRows.length > 0) {
    console.log('Durable write latency, ms (median of per-round percentiles; last column: p50 / walrus p50)');
    console.log(table(['cell', 'system', 'p50', 'p99', 'p999', 'max', 'p50 vs walrus'], latRows, new Set([2, 3, 4, 5, 6])));
    console.log('');
  }

  // The project's performance goals (docs/BENCHMARKS.md, "Performance goals", says where each
  // comes from), where this run has both sides.
  const eps = (c, name) => get(c, name)?.entriesPerSec;
  const targets = [
    ['walrus none / bare-1MiB', eps('none', 'walrus') / eps('none', 'bare-1MiB'), '>= 0.85'],
    ['walrus none / writevSync none', eps('none', 'walrus') / eps('none', 'writevSync'), '>= 1'],
    ['walrus record x256 / writevSync record x1 (fdatasync each)', eps('record x256', 'walrus') / eps('record x1', 'writevSync'), '>= 50'],
    ['walrus record x1 p50 / writevSync record x1 p50', get('record x1', 'walrus')?.p50Ms / get('record x1', 'writevSync')?.p50Ms, '<= 1.5'],
    ['walrus read-back, entries/s', eps('read-back', 'walrus'), '>= 1,500,000'],
  ].filter(([, v]) => Number.isFinite(v));
  if (targets.length > 0) {
    const verdict = (v, t) => {
      const [op, x] = t.split(' ');
      const goal = Number(x.replace(/,/g, ''));
      return (op === '>=' ? v >= goal : v <= goal) ? 'PASS' : 'MISS';
    };
    console.log('walrus-ts performance goals, from the medians above (why these: docs/BENCHMARKS.md, "Performance goals")');
    console.log(table(['ratio', 'value', 'goal', ''], targets.map(([l, v, t]) => [l, v > 1000 ? fmtInt(v) : fmtNum(v, 3), t, verdict(v, t)]), new Set([1])));
    console.log('');
  }

  console.log('Settings of each system (same payloads, same cell = same durability):');
  for (const s of systems) console.log(`  ${s.name}: ${s.note}`);
  console.log('');

  const medians = [...med.values()];
  return { medians, chartSpecs: chartSpecs(medians, systems, cells, cfg) };
}

function chartSpecs(medians, systems, cells, cfg) {
  const sysOrder = systems.map((s) => s.name);
  const isWalrus = new Set(systems.filter((s) => s.walrus).map((s) => s.name));
  const values = medians.map((m) => ({ ...m, who: isWalrus.has(m.system) ? 'walrus-ts' : 'peer' }));
  const throughput = {
    title: `walrus-ts vs peers: entries/s per durability level (median of ${cfg.runs} round${cfg.runs === 1 ? '' : 's'}, log scale)`,
    data: { values },
    facet: { column: { field: 'cell', type: 'nominal', sort: cells, title: null } },
    spec: {
      width: 150,
      height: 260,
      mark: { type: 'bar', tooltip: true },
      encoding: {
        x: { field: 'system', type: 'nominal', sort: sysOrder, title: null, axis: { labelAngle: -60 } },
        y: { field: 'entriesPerSec', type: 'quantitative', scale: { type: 'log' }, stack: null, title: 'entries/s' },
        color: { field: 'who', type: 'nominal', scale: { domain: ['walrus-ts', 'peer'], range: ['#d62728', '#7f7f7f'] }, title: null },
      },
    },
    resolve: { scale: { x: 'independent' } },
  };
  const latValues = [];
  for (const m of medians.filter((x) => x.cell.startsWith('record'))) {
    for (const p of ['p50', 'p99', 'p999']) latValues.push({ cell: m.cell, system: m.system, percentile: p, ms: m[`${p}Ms`] });
  }
  const latency = {
    title: 'Durable write latency by records in flight (ms, log scale)',
    data: { values: latValues },
    facet: { column: { field: 'cell', type: 'nominal', sort: cells, title: null } },
    spec: {
      width: 170,
      height: 260,
      mark: { type: 'point', filled: true, size: 110, opacity: 0.9, tooltip: true },
      encoding: {
        x: { field: 'system', type: 'nominal', sort: sysOrder, title: null, axis: { labelAngle: -60 } },
        shape: { field: 'percentile', type: 'nominal', sort: ['p50', 'p99', 'p999'] },
        y: { field: 'ms', type: 'quantitative', scale: { type: 'log' }, stack: null, title: 'ms' },
        color: { field: 'percentile', type: 'nominal', sort: ['p50', 'p99', 'p999'] },
      },
    },
    resolve: { scale: { x: 'independent' } },
  };
  return [
    ['throughput', throughput],
    ...(latValues.length > 0 ? [['latency', latency]] : []),
  ];
}
