// Read-ahead, before and after: a consumer draining one topic with fetch, on two logs open
// side by side in one process, one with `readAhead: true` (the default) and one with
// `readAhead: false`, on the same pre-generated payloads (random 500-1000 bytes each).
//
//   node bench/read-ahead.mjs               # against the current dist/ (~1 minute)
//   BENCH_QUICK=1 node bench/read-ahead.mjs # smaller
//
// Each round writes a fresh topic of N entries to both logs (NoFsync, then sync; untimed),
// then drains it from each log, in an order that alternates from round to round, with
// wal.fetch(topic, { maxBytes }) until an empty batch, under atLeastOnce(1e9) (no cursor
// record during a drain; consumed segments are deleted as it goes). Per entry the consumer:
//   none   reads its offset and payload length (what any consumer touches)
//   crc    also computes the CRC32C of its payload (@node-rs/crc32): a consumer with work to
//          do per entry, about as long per batch as the worker's read of it
// Warm-up drains of each log run first (a fresh worker's first reads fault in fresh memory).
//
// Knobs: BENCH_ENTRIES (default 200000; quick 60000), BENCH_RUNS (default 5; quick 3),
// BENCH_READ_BYTES (fetch maxBytes, default 1 MiB), BENCH_WORK (none,crc).
// Output: a table on stdout (medians, and the ratio on/off per work), one CSV row per
// (work, mode, round) in bench/results/read-ahead-*.csv, progress on stderr.
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Walrus, FsyncSchedule, ReadConsistency } from '../dist/index.js';
import { makePayloads } from './lib/payloads.mjs';
import { median } from './lib/stats.mjs';
import { fmtInt, fmtNum, machineLines, progress, progressDone, resultsDir, runBench, table, throughputRow, writeResultsCsv } from './lib/report.mjs';
import { makeTmpRoot } from './lib/disk.mjs';
import { envNum } from './lib/config.mjs';
import { batchAppendRetry } from './lib/walrus.mjs';

const QUICK = process.env.BENCH_QUICK === '1';
const cfg = {
  entries: Math.floor(envNum('BENCH_ENTRIES', QUICK ? 60_000 : 200_000)),
  runs: Math.floor(envNum('BENCH_RUNS', QUICK ? 3 : 5)),
  readBytes: Math.floor(envNum('BENCH_READ_BYTES', 1024 * 1024)),
  work: (process.env.BENCH_WORK ?? 'none,crc').split(',').map((s) => s.trim()).filter(Boolean),
};
const { crc32c } = await import('@node-rs/crc32');

const WARM_DRAINS = QUICK ? 1 : 3;
const startedAt = new Date();
const tmp = makeTmpRoot('walrus-read-ahead-', () => progressDone());
const { payloads } = makePayloads(cfg.entries);

async function fill(wal, topic) {
  for (let i = 0; i < cfg.entries; i += 1000) await batchAppendRetry(wal, topic, payloads.slice(i, Math.min(cfg.entries, i + 1000)));
  await wal.sync();
}

/** Drains `topic`; returns the row (throws when an entry is missing or out of order). */
async function drain(wal, topic, work) {
  let n = 0;
  let bytes = 0;
  let acc = 0;
  let calls = 0;
  const t0 = performance.now();
  for (;;) {
    const b = await wal.fetch(topic, { maxBytes: cfg.readBytes });
    if (b.length === 0) break;
    calls++;
    if (b.firstOffset !== n) throw new Error(`${topic}: batch at ${b.firstOffset}, expected ${n}`);
    for (let i = 0; i < b.length; i++) {
      const p = b.payload(i);
      bytes += p.length;
      if (work === 'crc') acc ^= crc32c(p);
    }
    n += b.length;
  }
  const seconds = (performance.now() - t0) / 1000;
  if (n !== cfg.entries) throw new Error(`${topic}: drained ${n} entries, expected ${cfg.entries}`);
  return throughputRow(n, bytes, seconds, { calls, check: acc });
}

async function main() {
  const open = (readAhead) =>
    Walrus.open({ dir: path.join(tmp.root, readAhead ? 'on' : 'off'), shards: 1, fsync: FsyncSchedule.NoFsync, consistency: ReadConsistency.atLeastOnce(1e9), readAhead });
  const logs = [
    { mode: 'on', wal: await open(true) },
    { mode: 'off', wal: await open(false) },
  ];
  const rows = [];
  try {
    // Warm-up (untimed): a fresh worker's first drains fault in the memory its reads use
    // (each read fills new buffers; freed ones are reused once the allocator holds enough),
    // and ran 2-3x slower than later ones here; three drains reach the steady state.
    for (let w = 0; w < WARM_DRAINS; w++) {
      for (const l of logs) {
        progress(`warm-up ${w + 1}/${WARM_DRAINS}, read-ahead ${l.mode}`);
        await fill(l.wal, `warm${w}`);
        await drain(l.wal, `warm${w}`, 'none');
      }
    }
    let topicSeq = 0;
    for (let run = 0; run < cfg.runs; run++) {
      for (const work of cfg.work) {
        const topic = `t${topicSeq++}`;
        for (const l of logs) await fill(l.wal, topic);
        const order = run % 2 === 0 ? logs : [...logs].reverse();
        for (const l of order) {
          progress(`round ${run + 1}/${cfg.runs}: ${work}, read-ahead ${l.mode}`);
          const r = await drain(l.wal, topic, work);
          rows.push({ work, mode: l.mode, run, ...r });
        }
      }
    }
    progressDone();
    const io = logs[0].wal.stats().io;
    console.log(machineLines('walrus-ts read-ahead: fetch drain with readAhead on and off, side by side', io, tmp.root).join('\n'));
    console.log(`  workload: ${fmtInt(cfg.entries)} entries of 500-1000 B per drain, fetch maxBytes ${fmtInt(cfg.readBytes)}, ${cfg.runs} rounds, medians\n`);
    const out = [];
    for (const work of cfg.work) {
      const med = (mode) => median(rows.filter((r) => r.work === work && r.mode === mode).map((r) => r.entriesPerSec));
      const on = med('on');
      const off = med('off');
      const served = logs[0].wal.stats().shards[0].readAhead.served;
      out.push([work, fmtInt(off), fmtInt(on), fmtNum(on / off), fmtInt(served)]);
    }
    console.log(table(['work per entry', 'readAhead off, entries/s', 'readAhead on, entries/s', 'on/off', 'reads served ahead (all)'], out, new Set([1, 2, 3, 4])));
    writeResultsCsv(resultsDir(), 'read-ahead', ['work', 'mode', 'run', 'entries', 'payloadBytes', 'seconds', 'entriesPerSec', 'mbPerSec', 'calls'], rows, { quick: QUICK, startedAt });
  } finally {
    for (const l of logs) await l.wal.close();
  }
}

await runBench(main, tmp);
