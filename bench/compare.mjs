// The side-by-side comparison: walrus-ts against what Node users pick today, in one process,
// on the same pre-generated payloads (random 500-1000 bytes each) and at the same durability
// level, in interleaved rounds whose medians are reported.
//
//   npm run bench                  # installs bench/ packages on first use, then the quick run
//   npm run bench:full             # the full suite (this with --full, then every other script)
//   node bench/compare.mjs [--full] [--runs=3] [--entries=N] [--seconds=S] ...
//
// Cells (level x in flight), each system that supports it in each:
//   none       N entries written in batches of --batch (1000), no fsync; timed until every
//              record is handed to the kernel; then the same records are read back (read-back)
//   group      for --seconds: batches of --group (100) records, each batch made durable
//              (fsync / synced commit) before the next one starts
//   record xK  for --seconds: every record durable before it is acknowledged; K in flight
//              (1 for every system, 16 and 256 for those with an asynchronous API); latency of
//              every acknowledgement is recorded (p50/p99/p999)
//
// Knobs (flag or environment): --full / BENCH_FULL=1, --runs / BENCH_RUNS (3),
// --entries / BENCH_ENTRIES (level none: 150000; full 500000), --seconds / BENCH_SECONDS (each
// durable cell: 0.8; full 2), --batch / BENCH_BATCH (1000), --group / BENCH_GROUP (100),
// --in-flight / BENCH_IN_FLIGHT (1,16,256), --only / BENCH_ONLY and --skip / BENCH_SKIP
// (system names), --cells / BENCH_CELLS (none,group,record), --no-warmup / BENCH_WARMUP=0,
// --no-charts.
//
// Output: tables on stdout; bench/results/compare-<time>.csv (one row per cell, system and
// round), compare-timeline-<time>.csv (samples every 500 ms: throughput, Dirty, RSS), and SVG
// (+PNG) charts; progress on stderr. Files live under os.tmpdir() and are removed at the end.
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { ensurePeers } from './setup.mjs';
import { makePayloads, framePayloads } from './lib/payloads.mjs';
import { median, percentile, max } from './lib/stats.mjs';
import { fmtInt, fmtNum, machineLines, progress, progressDone, resultsDir, stamp, throughputRow, writeCsv, writeResultsCsv, runBench } from './lib/report.mjs';
import { ioInFlightOf, makeTmpRoot, removeAndSettle } from './lib/disk.mjs';
import { hasFlag, listArg, numArg, secondsArg } from './lib/config.mjs';
import { startSampler, SAMPLE_COLUMNS } from './lib/sampler.mjs';
import { loadCharting, writeChart, timelineSpec } from './lib/charts.mjs';
import { probeIo } from './lib/walrus.mjs';
import { compareReport } from './lib/compare-report.mjs';

const FULL = hasFlag('full', 'BENCH_FULL');
const cfg = {
  full: FULL,
  runs: Math.floor(numArg('runs', 'BENCH_RUNS', 3)),
  entries: Math.floor(numArg('entries', 'BENCH_ENTRIES', FULL ? 500_000 : 150_000, 1000)),
  seconds: secondsArg('seconds', 'BENCH_SECONDS', FULL ? 2 : 0.8),
  batch: Math.floor(numArg('batch', 'BENCH_BATCH', 1000)),
  group: Math.floor(numArg('group', 'BENCH_GROUP', 100)),
  inFlight: [...(listArg('in-flight', 'BENCH_IN_FLIGHT') ?? ['1', '16', '256'])].map(Number),
  only: listArg('only', 'BENCH_ONLY'),
  skip: listArg('skip', 'BENCH_SKIP'),
  cells: listArg('cells', 'BENCH_CELLS') ?? new Set(['none', 'group', 'record']),
  warmup: !hasFlag('no-warmup') && process.env.BENCH_WARMUP !== '0',
  charts: !hasFlag('no-charts'),
};
const SAMPLE_EVERY = 1009; // read-back compares every 1009th record byte for byte
/** Named consumers that drain the records of the 'none' cell at once (walrus only). */
const CONSUMERS = 4;

ensurePeers();
const { SYSTEMS } = await import('./peers/index.mjs');
const systems = SYSTEMS.filter((s) => (!cfg.only || cfg.only.has(s.name)) && !cfg.skip?.has(s.name));
if (systems.length === 0) throw new Error(`no system selected; known: ${SYSTEMS.map((s) => s.name).join(', ')}`);

// ---------------------------------------------------------------------------------------------
// Payloads (generated once, not measured). Durable cells run for a time and wrap around them.

const tGen = performance.now();
const { payloads, all } = makePayloads(Math.max(cfg.entries, 100_000));
const { framed } = framePayloads(payloads);
const n = payloads.length;
const cum = new Float64Array(n + 1);
for (let i = 0; i < n; i++) cum[i + 1] = cum[i] + payloads[i].length;
/** Payload bytes of records [seq, seq + count), wrapping around the payloads. */
const bytesRange = (seq, count) => {
  const a = seq % n;
  const full = Math.floor((a + count) / n);
  return full * cum[n] + cum[(a + count) % n] - cum[a];
};
const data = {
  payloads,
  all,
  payloadAt: (seq) => payloads[seq % n],
  framedAt: (seq) => framed[seq % n],
  payloadsAt: (seq, count) => (seq % n) + count <= n ? payloads.slice(seq % n, (seq % n) + count) : Array.from({ length: count }, (_, k) => payloads[(seq + k) % n]),
};
const genSeconds = (performance.now() - tGen) / 1000;

// ---------------------------------------------------------------------------------------------
// Cells

const tmp = makeTmpRoot('walrus-compare-', () => progressDone());
const inFlight = ioInFlightOf(tmp.root);
const live = { entries: 0, bytes: 0, label: 'setup' };
const problems = [];

function problem(what) {
  problems.push(what);
  progress(`PROBLEM ${what}`);
}

/** The read-back check: record `seq` must hold payload `seq`. */
function checker(label) {
  let reported = false;
  return (seq, got) => {
    if (reported) return;
    const want = payloads[seq % n];
    if (!(Number.isInteger(seq) && Buffer.compare(Buffer.from(got.buffer, got.byteOffset, got.byteLength), want) === 0)) {
      reported = true;
      problem(`${label}: record ${seq} read back differs from what was written`);
    }
  };
}

async function cellNone(sys, dir, entries) {
  const h = await sys.open(dir, 'none', data, 1);
  try {
    const bytes = bytesRange(0, entries);
    const t0 = performance.now();
    if (sys.oneCall) h.writeBatch(0, entries);
    else {
      for (let seq = 0; seq < entries; seq += cfg.batch) {
        const c = Math.min(cfg.batch, entries - seq);
        const r = h.writeBatch(seq, c);
        if (r !== undefined) await r;
        live.entries += c;
        live.bytes += bytesRange(seq, c);
      }
    }
    if (h.finish) await h.finish();
    const t1 = performance.now();
    // Untimed: the consumers of the cell below get their positions before the read-back
    // consumes the records (and deletion could take them). Each position is recorded durably,
    // and the first fsync takes everything the cell wrote to the disk: until 2026-12-03 this
    // ran before t1 was taken, and walrus's 'none' time included it.
    if (h.prepareConsumers) await h.prepareConsumers(CONSUMERS);
    live.label = `read-back: ${sys.name}`;
    const back = await h.readAll(checker(`${sys.name} read-back`), SAMPLE_EVERY);
    const t2 = performance.now();
    if (back.entries !== entries || back.bytes !== bytes) problem(`${sys.name} read-back: ${back.entries} records / ${back.bytes} bytes, expected ${entries} / ${bytes}`);
    const rows = [
      throughputRow(entries, bytes, (t1 - t0) / 1000, { cell: 'none', inFlight: 1 }),
      throughputRow(back.entries, back.bytes, (t2 - t1) / 1000, { cell: 'read-back', inFlight: 1 }),
    ];
    if (h.readConsumers) {
      // walrus only: CONSUMERS named consumers drain the same records at once, each reading
      // every one (total entries/s over the wall time; per consumer in the report).
      live.label = `consumers x${CONSUMERS}: ${sys.name}`;
      const per = await h.readConsumers(CONSUMERS, checker(`${sys.name} consumers`), SAMPLE_EVERY);
      for (const c of per) if (c.entries !== entries || c.bytes !== bytes) problem(`${sys.name} consumers x${CONSUMERS}: a consumer read ${c.entries} records / ${c.bytes} bytes, expected ${entries} / ${bytes}`);
      const wall = Math.max(...per.map((c) => c.seconds));
      rows.push(
        throughputRow(entries * CONSUMERS, bytes * CONSUMERS, wall, {
          cell: `consumers x${CONSUMERS}`,
          inFlight: CONSUMERS,
          perConsumer: per.map((c) => c.entries / c.seconds),
        }),
      );
    }
    return rows;
  } finally {
    await h.close();
  }
}

async function cellGroup(sys, dir, seconds) {
  const h = await sys.open(dir, 'group', data, 1);
  try {
    const g = cfg.group;
    let seq = 0;
    const t0 = performance.now();
    const end = t0 + seconds * 1000;
    let now = t0;
    while (now < end) {
      const r = h.writeBatch(seq, g);
      if (r !== undefined) await r;
      live.entries += g;
      live.bytes += bytesRange(seq, g);
      seq += g;
      now = performance.now();
    }
    return [throughputRow(seq, bytesRange(0, seq), (now - t0) / 1000, { cell: 'group', inFlight: 1 })];
  } finally {
    await h.close();
  }
}

async function cellRecord(sys, dir, seconds, k) {
  const h = await sys.open(dir, 'record', data, k);
  try {
    const lat = [];
    let seq = 0;
    const t0 = performance.now();
    const end = t0 + seconds * 1000;
    const lane = async () => {
      for (let s = performance.now(); s < end; ) {
        const my = seq++;
        const r = h.writeOne(my);
        if (r !== undefined) await r;
        const t = performance.now();
        lat.push(t - s);
        live.entries++;
        live.bytes += payloads[my % n].length;
        s = t;
      }
    };
    await Promise.all(Array.from({ length: k }, lane));
    const seconds_ = (performance.now() - t0) / 1000;
    return [
      throughputRow(lat.length, bytesRange(0, seq), seconds_, {
        cell: `record x${k}`,
        inFlight: k,
        p50Ms: percentile(lat, 50),
        p99Ms: percentile(lat, 99),
        p999Ms: percentile(lat, 99.9),
        maxMs: max(lat),
      }),
    ];
  } finally {
    await h.close();
  }
}

/** The cells of one round, each as { cell, sys, run(dir) }, systems rotated by `round`. */
function plan(round, { entries = cfg.entries, seconds = cfg.seconds } = {}) {
  const rot = (list) => {
    const k = round % list.length;
    return [...list.slice(k), ...list.slice(0, k)];
  };
  const out = [];
  const supports = (s, level) => s.levels.includes(level);
  if (cfg.cells.has('none')) for (const s of rot(systems.filter((x) => supports(x, 'none')))) out.push({ cell: 'none', sys: s, run: (d) => cellNone(s, d, entries) });
  if (cfg.cells.has('group')) for (const s of rot(systems.filter((x) => supports(x, 'group')))) out.push({ cell: 'group', sys: s, run: (d) => cellGroup(s, d, seconds) });
  if (cfg.cells.has('record')) {
    for (const k of cfg.inFlight) {
      const eligible = systems.filter((x) => supports(x, 'record') && (k === 1 || x.concurrent));
      for (const s of rot(eligible)) out.push({ cell: `record x${k}`, sys: s, run: (d) => cellRecord(s, d, seconds, k) });
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Main

const rows = [];
const startedAt = new Date();

async function runRound(round, label, sizes) {
  const cells = plan(round, sizes);
  for (let i = 0; i < cells.length; i++) {
    const { cell, sys, run } = cells[i];
    const dir = tmp.freshDir(`${cell.replace(/\s/g, '')}-${sys.name}`);
    live.label = `${cell}: ${sys.name}`;
    progress(`[${label}, ${i + 1}/${cells.length}] ${cell}: ${sys.name} ...`);
    try {
      const out = await run(dir);
      for (const r of out) rows.push({ ...r, system: sys.name, run: round });
      const r0 = out[0];
      const lat = r0.p50Ms !== undefined ? `, p50 ${fmtNum(r0.p50Ms, 3)} ms` : '';
      progress(`[${label}, ${i + 1}/${cells.length}] ${cell}: ${sys.name}: ${fmtInt(r0.entriesPerSec)} entries/s${lat}`);
    } catch (e) {
      problem(`${sys.name} (${cell}, round ${round}): ${e instanceof Error ? e.message : e}`);
    } finally {
      // Short settle: most cells leave little to trim, and the quick run has 80 cells.
      await removeAndSettle(dir, tmp.root, inFlight, cell === 'none' ? 1000 : 300);
    }
  }
}

async function main() {
  const io = await probeIo(tmp.freshDir('probe'));
  const head = machineLines('walrus-ts side-by-side comparison', io, tmp.root);
  head.push(
    `  payloads: ${fmtInt(n)} distinct, 500-1000 B random, ${(cum[n] / 1e6).toFixed(1)} MB (generated in ${genSeconds.toFixed(1)} s, not measured)`,
    `  cells   : none = ${fmtInt(cfg.entries)} entries in batches of ${cfg.batch} + read-back; group = batches of ${cfg.group}, each durable, ${cfg.seconds} s; record x${cfg.inFlight.join('/x')} = durable per record, ${cfg.seconds} s`,
    `  runs    : ${cfg.runs} interleaved rounds (systems rotated per round), medians reported${FULL ? ' (--full)' : ''}`,
  );
  console.log(head.join('\n'));
  console.log('');

  const sampler = startSampler({ read: () => live, label: () => live.label });
  if (cfg.warmup) await runRound(0, 'warm-up', { entries: Math.min(cfg.entries, 10_000), seconds: 0.1 });
  rows.length = 0; // warm-up rows are not reported
  for (let round = 1; round <= cfg.runs; round++) await runRound(round, `round ${round}/${cfg.runs}`);
  const samples = sampler.stop();
  progressDone();

  const summary = compareReport(rows, systems, cfg);
  const dir = resultsDir();
  const csv = writeResultsCsv(dir, 'compare', ['cell', 'system', 'run', 'inFlight', 'entries', 'payloadBytes', 'seconds', 'entriesPerSec', 'mbPerSec', 'p50Ms', 'p99Ms', 'p999Ms', 'maxMs'], rows, { quick: !FULL, startedAt });
  const timelineCsv = path.join(dir, `compare-timeline-${stamp(startedAt)}.csv`);
  writeCsv(timelineCsv, SAMPLE_COLUMNS, samples);
  console.log(`CSV: ${path.relative(process.cwd(), timelineCsv)} (samples every 500 ms)`);
  if (cfg.charts) await charts(summary, samples, csv.replace(/\.csv$/, ''));

  if (problems.length > 0) {
    console.log(`\nPROBLEMS (${problems.length}):`);
    for (const p of problems) console.log(`  ${p}`);
    process.exitCode = 1;
  }
}

async function charts(summary, samples, base) {
  const charting = await loadCharting();
  if (charting.error) {
    console.log(`charts skipped: ${charting.error}`);
    return;
  }
  const written = [];
  for (const [name, spec] of summary.chartSpecs) written.push(...(await writeChart(charting, spec, `${base}-${name}`)));
  const cellOf = (label) => label.split(':')[0];
  written.push(...(await writeChart(charting, timelineSpec('Comparison timeline: throughput, dirty pages, RSS (500 ms samples)', samples.map((s) => ({ ...s, cell: cellOf(s.label) })), 'cell'), `${base}-timeline`)));
  console.log(`Charts: ${written.map((p) => path.relative(process.cwd(), p)).join(', ')}`);
}

await runBench(main, tmp);
