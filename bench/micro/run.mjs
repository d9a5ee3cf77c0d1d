// Micro-benchmarks of the hot parts, with tinybench: ring publish, framing, CRC32C (the
// addon against @node-rs/crc32) and topic routing. They guide optimisation; the end-to-end
// numbers are in compare.mjs and scenarios.mjs.
//
//   npm run bench:micro                       # build, install bench/ packages if needed, run
//   node bench/micro/run.mjs --suites=crc,ring --time=1000
//
// Knobs: --suites / BENCH_SUITES (ring,framing,crc,routing), --time / BENCH_MICRO_TIME (ms of
// sampling per task, default 500). Each task runs a loop of `opsPerCall` operations per call,
// so timer overhead is negligible; the table gives the time per operation.
// Output: a table on stdout, bench/results/micro-<time>.csv and micro-<time>.svg/.png.
import path from 'node:path';
import { ensurePeers } from '../setup.mjs';
import { makePayloads } from '../lib/payloads.mjs';
import { fmtInt, fmtNum, progress, progressDone, resultsDir, stamp, table, writeCsv } from '../lib/report.mjs';
import { listArg, numArg } from '../lib/config.mjs';
import { loadCharting, writeChart } from '../lib/charts.mjs';
import { ringTasks } from './ring.mjs';
import { framingTasks } from './framing.mjs';
import { crcTasks } from './crc.mjs';
import { routingTasks } from './routing.mjs';

ensurePeers();
const { Bench } = await import('tinybench');

const SUITES = { ring: ringTasks, framing: framingTasks, crc: crcTasks, routing: routingTasks };
const wanted = listArg('suites', 'BENCH_SUITES') ?? new Set(Object.keys(SUITES));
for (const s of wanted) if (!SUITES[s]) throw new Error(`unknown suite ${s}; known: ${Object.keys(SUITES).join(', ')}`);
const time = numArg('time', 'BENCH_MICRO_TIME', 500, 10);

const ctx = makePayloads(20_000);
const tasks = [...wanted].flatMap((s) => SUITES[s](ctx).map((t) => ({ ...t, suite: s })));
const bench = new Bench({ time, warmupTime: Math.min(200, time) });
for (const t of tasks) bench.add(t.name, t.fn);
bench.addEventListener('cycle', (e) => progress(`micro: ${e.task?.name ?? ''} done`));
await bench.run();
progressDone();

const rows = tasks.map((t) => {
  const task = bench.getTask(t.name);
  const r = task.result;
  if (!r || r.state !== 'completed') throw new Error(`micro: ${t.name}: ${r?.error?.message ?? r?.state ?? 'no result'}`);
  const nsPerOp = (r.latency.mean * 1e6) / t.opsPerCall;
  const p99NsPerOp = (r.latency.p99 * 1e6) / t.opsPerCall;
  return {
    suite: t.suite,
    task: t.name,
    nsPerOp,
    p99NsPerOp,
    opsPerSec: 1e9 / nsPerOp,
    mbPerSec: t.bytesPerOp ? (t.bytesPerOp * 1e3) / nsPerOp : NaN,
    rmePct: r.latency.rme,
    samples: r.latency.samplesCount ?? r.latency.samples?.length ?? NaN,
  };
});

console.log(`walrus-ts micro-benchmarks (tinybench, ${time} ms per task, node ${process.version})`);
console.log(table(['task', 'ns/op', 'p99 ns/op', 'ops/s', 'MB/s', '±%', 'samples'], rows.map((r) => [r.task, fmtNum(r.nsPerOp, 1), fmtNum(r.p99NsPerOp, 1), fmtInt(r.opsPerSec), Number.isFinite(r.mbPerSec) ? fmtInt(r.mbPerSec) : '', fmtNum(r.rmePct, 1), fmtInt(r.samples)]), new Set([1, 2, 3, 4, 5, 6])));

const startedAt = new Date();
const base = path.join(resultsDir(), `micro-${stamp(startedAt)}`);
writeCsv(`${base}.csv`, ['suite', 'task', 'nsPerOp', 'p99NsPerOp', 'opsPerSec', 'mbPerSec', 'rmePct', 'samples'], rows);
const charting = await loadCharting();
let charts = [];
if (!charting.error) {
  charts = await writeChart(charting, {
    title: 'walrus-ts micro-benchmarks: time per operation (ns, log scale)',
    data: { values: rows },
    width: 420,
    height: { step: 18 },
    mark: { type: 'bar', tooltip: true },
    encoding: {
      y: { field: 'task', type: 'nominal', sort: null, title: null },
      x: { field: 'nsPerOp', type: 'quantitative', scale: { type: 'log' }, stack: null, title: 'ns per operation' },
      color: { field: 'suite', type: 'nominal' },
    },
  }, base);
}
console.log(`CSV: ${path.relative(process.cwd(), base)}.csv${charts.length ? `; charts: ${charts.map((p) => path.basename(p)).join(', ')}` : ''}`);
