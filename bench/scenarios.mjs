// walrus's own benchmark scenarios, for walrus-ts: concurrent producers, one topic each, on
// random 500-1000 byte entries generated beforehand. Each scenario samples throughput, Dirty
// pages (/proc/meminfo) and RSS every 500 ms into CSV and renders a chart.
//
//   node bench/scenarios.mjs <writes|reads|scaling|batch|batch-scaling|all> [flags]
//   npm run bench:writes -- --fsync=no-fsync --threads=4 --duration=20
//
// Scenarios:
//   writes         THREADS producers append to their own topic for DURATION; then flush()
//   reads          the same for WRITE_DURATION, then THREADS consumers batchRead their topic
//                  (StrictlyAtOnce, the default) for READ_DURATION or until drained
//   scaling        writes for DURATION at 1, 2, 4, ... producers up to THREADS, with as many
//                  shards as producers (capped at 16)
//   batch          like writes, each producer calling batchAppend(topic, BATCH_SIZE entries)
//   batch-scaling  batch at 1, 2, 4, ... producers up to THREADS, shards as in scaling
//
// Knobs (flag, else environment, else default):
//   --fsync            WALRUS_FSYNC           sync-each | no-fsync | async (200 ms, the library
//                                             default) | <n>ms                      (async)
//   --threads          WALRUS_THREADS         producers / consumers; for the scaling
//                                             scenarios the largest count            (4; scaling 8)
//   --duration         WALRUS_DURATION        seconds (or 500ms, 2m) per run or point (10; scaling 3)
//   --write-duration   WALRUS_WRITE_DURATION  reads: the write phase                 (5)
//   --read-duration    WALRUS_READ_DURATION   reads: the read phase                  (5)
//   --batch-size       WALRUS_BATCH_SIZE      entries per batchAppend                (100)
//   --shards           WALRUS_SHARDS          shards of writes/reads/batch (default: the library's)
//   --retention-bytes  WALRUS_RETENTION_BYTES retentionBytes of the write-only scenarios, so that
//                                             a long run does not fill the disk (4e9; 0 = none)
//   --full             BENCH_FULL=1           durations x3, scaling up to 16 producers
// Output: a summary table on stdout; bench/results/<scenario>-<time>.csv (the samples),
// <scenario>-summary-<time>.csv and <scenario>-<time>.svg/.png; progress on stderr.
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { setImmediate as yieldTurn } from 'node:timers/promises';
import { Walrus, FsyncSchedule } from '../dist/index.js';
import { makePayloads } from './lib/payloads.mjs';
import { fmtInt, fmtNum, machineLines, progress, progressDone, resultsDir, stamp, table, throughputRow, writeCsv, runBench } from './lib/report.mjs';
import { ioInFlightOf, makeTmpRoot, removeAndSettle } from './lib/disk.mjs';
import { fsyncArg, hasFlag, numArg, secondsArg } from './lib/config.mjs';
import { startSampler, SAMPLE_COLUMNS } from './lib/sampler.mjs';
import { loadCharting, writeChart, timelineSpec } from './lib/charts.mjs';
import { isBackpressure, probeIo, topicsOverShards } from './lib/walrus.mjs';
import { ensurePeers } from './setup.mjs';

ensurePeers(); // the chart renderer lives in the bench package

const NAMES = ['writes', 'reads', 'scaling', 'batch', 'batch-scaling'];
const first = process.argv[2];
const which = first !== undefined && !first.startsWith('--') ? first : 'writes'; // the scenario comes first
if (which !== 'all' && !NAMES.includes(which)) throw new Error(`unknown scenario ${JSON.stringify(which)}; known: ${NAMES.join(', ')}, all`);

const FULL = hasFlag('full', 'BENCH_FULL');
const x = FULL ? 3 : 1;
const fsync = fsyncArg('fsync', 'WALRUS_FSYNC', 'async');
const cfg = {
  fsync: fsync.label,
  schedule: fsync.make(FsyncSchedule),
  threads: numArg('threads', 'WALRUS_THREADS', undefined),
  duration: secondsArg('duration', 'WALRUS_DURATION', undefined),
  writeDuration: secondsArg('write-duration', 'WALRUS_WRITE_DURATION', 5 * x),
  readDuration: secondsArg('read-duration', 'WALRUS_READ_DURATION', 5 * x),
  batchSize: Math.floor(numArg('batch-size', 'WALRUS_BATCH_SIZE', 100)),
  shards: numArg('shards', 'WALRUS_SHARDS', undefined),
  retentionBytes: numArg('retention-bytes', 'WALRUS_RETENTION_BYTES', 4e9, 0),
};
const threadsFor = (scaling) => Math.floor(cfg.threads ?? (scaling ? (FULL ? 16 : 8) : 4));
const durationFor = (scaling) => cfg.duration ?? (scaling ? 3 : 10) * x;

const APPENDS_PER_TURN = 64; // a producer yields to the event loop after this many appends
const READ_BYTES = 1024 * 1024;

const tGen = performance.now();
const { payloads } = makePayloads(200_000);
const genSeconds = (performance.now() - tGen) / 1000;
const n = payloads.length;

const tmp = makeTmpRoot('walrus-scenarios-', () => progressDone());
const inFlight = ioInFlightOf(tmp.root);
const live = { entries: 0, bytes: 0, label: '' };

function openWal(dir, { shards = cfg.shards, retain = true } = {}) {
  const o = { dir, fsync: cfg.schedule };
  if (shards !== undefined) o.shards = Math.min(16, shards);
  if (retain && cfg.retentionBytes > 0) o.retentionBytes = cfg.retentionBytes;
  return Walrus.open(o);
}

/**
 * Producers, one topic each, until `untilMs`: each appends APPENDS_PER_TURN entries (or one
 * batch of batchSize) per event-loop turn, waiting with drain() when a ring is full.
 */
async function produce(wal, topics, untilMs, batch) {
  const producer = async (topic, idx) => {
    let seq = idx * 7919;
    while (performance.now() < untilMs) {
      if (batch) {
        const entries = [];
        for (let k = 0; k < cfg.batchSize; k++) entries.push(payloads[seq++ % n]);
        for (;;) {
          try {
            wal.batchAppend(topic, entries);
            break;
          } catch (e) {
            if (!isBackpressure(e)) throw e;
            await wal.drain();
          }
        }
        live.entries += entries.length;
        for (const p of entries) live.bytes += p.length;
      } else {
        for (let k = 0; k < APPENDS_PER_TURN; ) {
          const p = payloads[seq % n];
          try {
            wal.append(topic, p);
          } catch (e) {
            if (!isBackpressure(e)) throw e;
            await wal.drain();
            continue;
          }
          seq++;
          k++;
          live.entries++;
          live.bytes += p.length;
        }
      }
      await yieldTurn();
    }
  };
  await Promise.all(topics.map(producer));
}

/** One write run: producers for `seconds`, then flush(); returns its summary row. */
async function writeRun(dir, producers, seconds, { batch = false, shards = cfg.shards, label }) {
  const wal = await openWal(dir, { shards });
  try {
    const topics = topicsOverShards(producers, wal.stats().shards.length, 'producer');
    const e0 = live.entries;
    const b0 = live.bytes;
    live.label = label;
    const t0 = performance.now();
    await produce(wal, topics, t0 + seconds * 1000, batch);
    await wal.flush();
    const s = (performance.now() - t0) / 1000;
    return throughputRow(live.entries - e0, live.bytes - b0, s, { label, producers, shards: wal.stats().shards.length, fsync: cfg.fsync, batchSize: batch ? cfg.batchSize : 1 });
  } finally {
    live.label = 'close';
    await wal.close();
  }
}

async function readsScenario(dir) {
  const producers = threadsFor(false);
  const wal = await openWal(dir, { retain: false });
  try {
    const topics = topicsOverShards(producers, wal.stats().shards.length, 'producer');
    live.label = 'write phase';
    let t0 = performance.now();
    const e0 = live.entries;
    const b0 = live.bytes;
    await produce(wal, topics, t0 + cfg.writeDuration * 1000, false);
    await wal.flush();
    const written = live.entries - e0;
    const w = throughputRow(written, live.bytes - b0, (performance.now() - t0) / 1000, { label: 'write phase', producers, shards: wal.stats().shards.length, fsync: cfg.fsync });
    live.label = 'read phase';
    const e1 = live.entries;
    const b1 = live.bytes;
    t0 = performance.now();
    const until = t0 + cfg.readDuration * 1000;
    const consumer = async (topic) => {
      while (performance.now() < until) {
        const batch = await wal.batchRead(topic, READ_BYTES, true);
        if (batch.length === 0) return;
        live.entries += batch.length;
        for (const e of batch) live.bytes += e.data.length;
      }
    };
    await Promise.all(topics.map(consumer));
    const read = live.entries - e1;
    const r = throughputRow(read, live.bytes - b1, (performance.now() - t0) / 1000, { label: 'read phase', producers, shards: w.shards, fsync: cfg.fsync, drained: read === written ? 1 : 0 });
    return [w, r];
  } finally {
    await wal.close();
  }
}

function powersUpTo(max) {
  const out = [];
  for (let p = 1; p < max; p *= 2) out.push(p);
  out.push(max);
  return out;
}

async function scalingScenario(name, batch) {
  const rows = [];
  for (const p of powersUpTo(threadsFor(true))) {
    const dir = tmp.freshDir(`${name}-${p}`);
    progress(`${name}: ${p} producer(s), ${Math.min(16, p)} shard(s), ${durationFor(true)} s ...`);
    try {
      rows.push(await writeRun(dir, p, durationFor(true), { batch, shards: p, label: `${p} producers` }));
      progress(`${name}: ${p} producer(s): ${fmtInt(rows.at(-1).entriesPerSec)} entries/s`);
    } finally {
      await removeAndSettle(dir, tmp.root, inFlight);
    }
  }
  return rows;
}

const SCENARIOS = {
  writes: async (dir) => [await writeRun(dir, threadsFor(false), durationFor(false), { label: 'writes' })],
  reads: readsScenario,
  scaling: () => scalingScenario('scaling', false),
  batch: async (dir) => [await writeRun(dir, threadsFor(false), durationFor(false), { batch: true, label: 'batch' })],
  'batch-scaling': () => scalingScenario('batch-scaling', true),
};

function scalingSpec(name, rows) {
  return {
    title: `walrus-ts ${name}: entries/s by producers (shards = producers, fsync ${cfg.fsync})`,
    data: { values: rows },
    width: 480,
    height: 260,
    mark: { type: 'line', point: { size: 60 } },
    encoding: {
      x: { field: 'producers', type: 'quantitative', scale: { type: 'log', base: 2 }, axis: { values: rows.map((r) => r.producers) }, title: 'producers (one topic each)' },
      y: { field: 'entriesPerSec', type: 'quantitative', title: 'entries/s' },
    },
  };
}

async function runOne(name, charting, startedAt) {
  live.entries = 0;
  live.bytes = 0;
  const dir = tmp.freshDir(name);
  const sampler = startSampler({ read: () => live, label: () => live.label, onSample: (s) => progress(`${name} [${s.label}] ${fmtInt(s.entriesPerSec)} entries/s, Dirty ${fmtNum(s.dirtyMB, 0)} MB, RSS ${fmtNum(s.rssMB, 0)} MB`) });
  let rows;
  let samples;
  try {
    rows = await SCENARIOS[name](dir);
  } finally {
    samples = sampler.stop(); // before the files' removal, which is not the scenario's
    await removeAndSettle(dir, tmp.root, inFlight);
  }
  progressDone();
  console.log(`${name} (fsync ${cfg.fsync}${name.startsWith('batch') ? `, batch size ${cfg.batchSize}` : ''})`);
  const body = rows.map((r) => [r.label, String(r.producers), String(r.shards), fmtInt(r.entries), fmtNum(r.seconds, 2), fmtInt(r.entriesPerSec), fmtNum(r.mbPerSec, 1)]);
  console.log(table(['run', 'producers', 'shards', 'entries', 'seconds', 'entries/s', 'MB/s'], body, new Set([1, 2, 3, 4, 5, 6])));
  const peakDirty = Math.max(...samples.map((s) => s.dirtyMB));
  const peakRss = Math.max(...samples.map((s) => s.rssMB));
  console.log(`peak Dirty ${fmtNum(peakDirty, 0)} MB, peak RSS ${fmtNum(peakRss, 0)} MB (${samples.length} samples)`);
  const out = resultsDir();
  const base = path.join(out, `${name}-${stamp(startedAt)}`);
  writeCsv(`${base}.csv`, SAMPLE_COLUMNS, samples);
  writeCsv(path.join(out, `${name}-summary-${stamp(startedAt)}.csv`), ['label', 'producers', 'shards', 'fsync', 'batchSize', 'entries', 'payloadBytes', 'seconds', 'entriesPerSec', 'mbPerSec', 'drained'], rows);
  let charts = [];
  if (!charting.error) {
    charts = await writeChart(charting, timelineSpec(`walrus-ts ${name}: throughput, dirty pages, RSS (500 ms samples, fsync ${cfg.fsync})`, samples), base);
    if (name.endsWith('scaling')) charts.push(...(await writeChart(charting, scalingSpec(name, rows), `${base}-by-producers`)));
  }
  console.log(`CSV: ${path.relative(process.cwd(), base)}.csv, ${name}-summary-${stamp(startedAt)}.csv${charts.length ? `; charts: ${charts.map((p) => path.basename(p)).join(', ')}` : `; charts skipped: ${charting.error}`}`);
  console.log('');
}

async function main() {
  const io = await probeIo(tmp.freshDir('probe'));
  const head = machineLines(`walrus-ts scenarios: ${which}`, io, tmp.root);
  head.push(
    `  payloads: ${fmtInt(n)} distinct, 500-1000 B random (generated in ${genSeconds.toFixed(1)} s, not measured)`,
    `  knobs   : fsync ${cfg.fsync}, threads ${threadsFor(false)} (scaling up to ${threadsFor(true)}), duration ${durationFor(false)} s (scaling ${durationFor(true)} s per point), ` +
      `write/read duration ${cfg.writeDuration}/${cfg.readDuration} s, batch size ${cfg.batchSize}, shards ${cfg.shards ?? 'default'}, retentionBytes ${cfg.retentionBytes || 'none'}`,
  );
  console.log(head.join('\n'));
  console.log('');
  const charting = await loadCharting();
  const startedAt = new Date();
  for (const name of which === 'all' ? NAMES : [which]) await runOne(name, charting, startedAt);
}

await runBench(main, tmp);
