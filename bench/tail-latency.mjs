// Live-tail latency: how long after `append` returns an atLeastOnce subscriber of the same
// topic, in the same process, has the entry (issue 15). Chronicle Queue reports such a figure
// in microseconds, Kafka end to end in milliseconds.
//
//   node bench/tail-latency.mjs            # against the current dist/ (~15 s)
//   npm run bench                          # runs it after the comparison (~15 s)
//
// Cells: two append rates (10,000 and 100,000 entries/s) x two fsync schedules (NoFsync;
// SyncEach, where the worker fsyncs every write before it publishes it as written, so an
// entry is on stable storage before any reader can have it). Each cell opens a fresh log
// (one shard, ReadConsistency.atLeastOnce(1000)), starts `for await (const e of
// wal.subscribe('tail'))`, and appends pre-generated payloads of 500-1000 bytes at the cell's
// rate from a 1 ms timer (each tick appends the entries due by then, as a server appending
// what its requests brought), stamping each entry's append with performance.now(). The
// subscriber records now - stamp for every entry it gets, in the same thread. A warm-up
// second at the cell's rate runs first (untimed), then BENCH_TAIL_SECONDS of measurement.
//
// The subscriber gets each entry from the main thread's copy of it, once the shard worker has
// written it (docs/ARCHITECTURE.md, "Live tails"); the latency is then mostly the worker's
// wake-up and write (and its fsync with SyncEach), plus how long the event loop takes to run
// the subscriber, which shares the thread with the producer.
//
// Knobs: BENCH_TAIL_SECONDS (default 2), BENCH_TAIL_RATES (default 10000,100000),
// BENCH_TAIL_FSYNC (default no-fsync,sync-each), --no-charts.
// Output: a table on stdout (p50/p99/p999/max in microseconds, entries delivered), one CSV
// row per cell in bench/results/tail-latency-<time>.csv, and a chart
// tail-latency-<time>.svg/.png when the bench packages are installed; progress on stderr.
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Walrus, FsyncSchedule, ReadConsistency } from '../dist/index.js';
import { makePayloads } from './lib/payloads.mjs';
import { max, percentile } from './lib/stats.mjs';
import { fmtInt, machineLines, progress, progressDone, resultsDir, runBench, table, writeResultsCsv } from './lib/report.mjs';
import { makeTmpRoot } from './lib/disk.mjs';
import { envNum, hasFlag } from './lib/config.mjs';
import { loadCharting, writeChart } from './lib/charts.mjs';

const cfg = {
  seconds: envNum('BENCH_TAIL_SECONDS', 2, 0.1),
  rates: (process.env.BENCH_TAIL_RATES ?? '10000,100000').split(',').map(Number),
  fsync: (process.env.BENCH_TAIL_FSYNC ?? 'no-fsync,sync-each').split(',').map((s) => s.trim()),
  charts: !hasFlag('no-charts'),
};
const SCHEDULES = { 'no-fsync': FsyncSchedule.NoFsync, 'sync-each': FsyncSchedule.SyncEach };
for (const f of cfg.fsync) if (!(f in SCHEDULES)) throw new Error(`BENCH_TAIL_FSYNC: ${f} is not no-fsync or sync-each`);
const PERSIST_EVERY = 1000;
const WARM_SECONDS = 1;

const startedAt = new Date();
const tmp = makeTmpRoot('walrus-tail-latency-', () => progressDone());
const maxEntries = Math.max(...cfg.rates) * (cfg.seconds + WARM_SECONDS);
const { payloads } = makePayloads(Math.min(maxEntries, 200_000));

/**
 * Appends at `rate` entries/s for `seconds` from a 1 ms timer, payloads from index `first`;
 * stamps each append's time (ms) in `stamps` (null: none) by its index in this call.
 */
function produce(wal, rate, seconds, first, stamps) {
  const total = Math.round(rate * seconds);
  return new Promise((resolve) => {
    const t0 = performance.now();
    let i = 0;
    const tick = () => {
      const due = Math.min(total, Math.floor(((performance.now() - t0) * rate) / 1000));
      for (; i < due; i++) {
        const data = payloads[(first + i) % payloads.length];
        if (stamps !== null) stamps[i] = performance.now();
        wal.append('tail', data);
      }
      if (i < total) setTimeout(tick, 1);
      else resolve();
    };
    tick();
  });
}

async function cell(fsync, rate) {
  const dir = path.join(tmp.root, `${fsync}-${rate}`);
  const wal = await Walrus.open({ dir, shards: 1, fsync: SCHEDULES[fsync], consistency: ReadConsistency.atLeastOnce(PERSIST_EVERY) });
  try {
    const warm = Math.round(rate * WARM_SECONDS);
    const total = Math.round(rate * cfg.seconds);
    const latency = new Float64Array(total);
    const stamps = new Float64Array(total);
    let got = 0;
    let ok = true;
    const it = wal.subscribe('tail');
    const first = it.next(); // the subscriber is waiting before the first append
    await wal.readNext('tail', false);
    const consumer = (async () => {
      let r = await first;
      for (let offset = 0; offset < warm + total; offset++) {
        const now = performance.now();
        const e = r.value;
        if (e.offset !== offset || e.data.length !== payloads[offset % payloads.length].length) ok = false;
        if (offset >= warm) latency[got++] = (now - stamps[offset - warm]) * 1000;
        if (offset + 1 < warm + total) r = await it.next();
      }
      await it.return(undefined);
    })();
    progress(`${fsync}, ${fmtInt(rate)} entries/s: warm-up`);
    await produce(wal, rate, WARM_SECONDS, 0, null);
    progress(`${fsync}, ${fmtInt(rate)} entries/s: measuring ${cfg.seconds} s`);
    await produce(wal, rate, cfg.seconds, warm, stamps);
    await consumer;
    if (!ok) throw new Error(`${fsync} ${rate}: an entry came out of order or with the wrong length`);
    const us = Array.from(latency);
    const tail = wal.stats().liveTail;
    return {
      fsync,
      rate,
      entries: got,
      p50Us: percentile(us, 50),
      p99Us: percentile(us, 99),
      p999Us: percentile(us, 99.9),
      maxUs: max(us),
      fromMemory: tail.fromMemory,
      fromPeeks: tail.fromPeeks,
    };
  } finally {
    await wal.close();
  }
}

async function main() {
  const rows = [];
  for (const fsync of cfg.fsync) for (const rate of cfg.rates) rows.push(await cell(fsync, rate));
  progressDone();
  const io = await (async () => {
    const w = await Walrus.open({ dir: path.join(tmp.root, 'probe'), shards: 1, fsync: FsyncSchedule.NoFsync });
    try {
      return w.stats().io;
    } finally {
      await w.close();
    }
  })();
  console.log(machineLines('walrus-ts live-tail latency: append to delivery of an atLeastOnce subscriber, same process', io, tmp.root).join('\n'));
  console.log(`  workload: payloads of 500-1000 B, appended from a 1 ms timer at each rate; ${WARM_SECONDS} s warm-up, ${cfg.seconds} s measured; atLeastOnce(${PERSIST_EVERY}), 1 shard\n`);
  const us = (x) => fmtInt(x);
  console.log(
    table(
      ['fsync', 'entries/s', 'p50 us', 'p99 us', 'p999 us', 'max us', 'entries', 'from memory'],
      rows.map((r) => [r.fsync, fmtInt(r.rate), us(r.p50Us), us(r.p99Us), us(r.p999Us), us(r.maxUs), fmtInt(r.entries), `${((100 * r.fromMemory) / (r.fromMemory + r.fromPeeks)).toFixed(1)}%`]),
      new Set([1, 2, 3, 4, 5, 6, 7]),
    ),
  );
  console.log('Goal (docs/BENCHMARKS.md, "Performance goals"): p99 <= 1,000 us at 100,000 entries/s without fsync.');
  const csv = writeResultsCsv(resultsDir(), 'tail-latency', ['fsync', 'rate', 'entries', 'p50Us', 'p99Us', 'p999Us', 'maxUs', 'fromMemory', 'fromPeeks'], rows, { quick: false, startedAt });
  if (cfg.charts) await chart(rows, csv.replace(/\.csv$/, ''));
}

async function chart(rows, base) {
  const charting = await loadCharting();
  if (charting.error) {
    console.log(`chart skipped: ${charting.error}`);
    return;
  }
  const values = [];
  for (const r of rows) for (const p of ['p50', 'p99', 'p999']) values.push({ cell: `${r.fsync}, ${fmtInt(r.rate)}/s`, percentile: p, us: Math.max(1, r[`${p}Us`]) });
  const spec = {
    title: 'Live-tail latency, append to delivery (us, log scale)',
    data: { values },
    width: 360,
    height: 260,
    mark: { type: 'point', filled: true, size: 120, tooltip: true },
    encoding: {
      x: { field: 'cell', type: 'nominal', title: null, axis: { labelAngle: -30 } },
      y: { field: 'us', type: 'quantitative', scale: { type: 'log' }, title: 'microseconds' },
      color: { field: 'percentile', type: 'nominal', sort: ['p50', 'p99', 'p999'] },
      shape: { field: 'percentile', type: 'nominal', sort: ['p50', 'p99', 'p999'] },
    },
  };
  const written = await writeChart(charting, spec, base);
  console.log(`chart: ${written.map((f) => path.relative(process.cwd(), f)).join(', ')}`);
}

await runBench(main, tmp);
