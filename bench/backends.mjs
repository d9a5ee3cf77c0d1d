// fd vs mmap, side by side in one run: the same four workloads on each backend, rounds
// interleaved (the order of the backends alternates per round), medians reported.
//
//   append-NoFsync        one producer appends BENCH_ENTRIES entries to one topic; timed
//                         until every entry is written to the files (flush), no fsync
//   appendAndSync-256     256 appendAndSync in flight for BENCH_DURABLE_SECONDS
//   durable-latency       one producer, one appendAndSync at a time: p50 / p99 (ms)
//   batchRead-drain       batchRead(1 MiB) from the cursor until empty (CRC verified),
//                         over what append-NoFsync wrote (page cache warm)
//
// Knobs: BENCH_ENTRIES (default 300000; 150000 with BENCH_QUICK=1), BENCH_RUNS (3),
// BENCH_DURABLE_SECONDS (3), BENCH_LATENCY_SAMPLES (1000), BENCH_RESULTS (a directory: also
// write backends.csv there).
import { performance } from 'node:perf_hooks';
import { Walrus, FsyncSchedule } from '../dist/index.js';
import { makePayloads } from './lib/payloads.mjs';
import { median, percentile } from './lib/stats.mjs';
import { fmtInt, fmtNum, progress, progressDone, table, writeResultsCsv, runBench } from './lib/report.mjs';
import { fsType, ioInFlightOf, makeTmpRoot, removeAndSettle } from './lib/disk.mjs';
import { envNum } from './lib/config.mjs';

const QUICK = process.env.BENCH_QUICK === '1';
const cfg = {
  entries: Math.floor(envNum('BENCH_ENTRIES', QUICK ? 150_000 : 300_000)),
  runs: Math.floor(envNum('BENCH_RUNS', 3)),
  durableSeconds: envNum('BENCH_DURABLE_SECONDS', QUICK ? 1 : 3, 0.1),
  latencySamples: Math.floor(envNum('BENCH_LATENCY_SAMPLES', QUICK ? 300 : 1000)),
};
const BACKENDS = ['fd', 'mmap'];
const TOPIC = 'bench';
const IN_FLIGHT = 256;
const READ_BYTES = 1 << 20;

const tmp = makeTmpRoot('walrus-backends-', () => progressDone());
const inFlight = ioInFlightOf(tmp.root);
const set = makePayloads(cfg.entries);

function isBackpressure(e) {
  return e !== null && typeof e === 'object' && e.code === 'ERR_WALRUS_BACKPRESSURE';
}

const open = (dir, backend) => Walrus.open({ dir, backend, shards: 1, fsync: FsyncSchedule.NoFsync });

/** Appends every payload (retrying after backpressure), flushes; then drains with batchRead. */
async function appendThenDrain(dir, backend) {
  const wal = await open(dir, backend);
  try {
    const list = set.payloads;
    const t0 = performance.now();
    for (let i = 0; i < list.length; ) {
      try {
        for (; i < list.length; i++) wal.append(TOPIC, list[i]);
      } catch (e) {
        if (!isBackpressure(e)) throw e;
        await wal.drain();
      }
    }
    await wal.flush();
    const appendSeconds = (performance.now() - t0) / 1000;
    await wal.sync(); // the drain below measures reads, not the fsync behind the first one
    let n = 0;
    let bytes = 0;
    const t1 = performance.now();
    for (;;) {
      const batch = await wal.batchRead(TOPIC, READ_BYTES, true);
      if (batch.length === 0) break;
      for (const e of batch) {
        if (e.offset !== n) throw new Error(`${backend}: entry #${n} has offset ${e.offset}`);
        n++;
        bytes += e.data.length;
      }
      // One entry per batch compared byte for byte, so a wrong read cannot pass unnoticed.
      const s = batch[batch.length >> 1];
      if (!s.data.equals(list[s.offset])) throw new Error(`${backend}: entry ${s.offset} differs from its payload`);
    }
    const readSeconds = (performance.now() - t1) / 1000;
    if (n !== list.length || bytes !== set.totalBytes) throw new Error(`${backend}: drained ${n} entries / ${bytes} bytes, expected ${list.length} / ${set.totalBytes}`);
    return { appendPerSec: n / appendSeconds, appendMBps: bytes / 1e6 / appendSeconds, readPerSec: n / readSeconds };
  } finally {
    await wal.close();
  }
}

async function appendAndSync256(dir, backend) {
  const wal = await open(dir, backend);
  try {
    const list = set.payloads;
    let next = 0;
    let done = 0;
    const end = performance.now() + cfg.durableSeconds * 1000;
    const t0 = performance.now();
    const fsyncs0 = wal.stats().shards[0].fsyncs;
    const lane = async () => {
      while (performance.now() < end) {
        const p = list[next++ % list.length];
        for (;;) {
          try {
            await wal.appendAndSync(TOPIC, p);
            break;
          } catch (e) {
            if (!isBackpressure(e)) throw e;
            await wal.drain();
          }
        }
        done++;
      }
    };
    await Promise.all(Array.from({ length: IN_FLIGHT }, lane));
    const seconds = (performance.now() - t0) / 1000;
    return { syncedPerSec: done / seconds, recordsPerFsync: done / (wal.stats().shards[0].fsyncs - fsyncs0) };
  } finally {
    await wal.close();
  }
}

async function latency(dir, backend) {
  const wal = await open(dir, backend);
  try {
    const list = set.payloads;
    const ms = [];
    for (let k = 0; k < cfg.latencySamples + 20; k++) {
      const t0 = performance.now();
      await wal.appendAndSync(TOPIC, list[k % list.length]);
      // The first 20 warm up (JIT, first block, first sync) and are not recorded.
      if (k >= 20) ms.push(performance.now() - t0);
    }
    return { p50Ms: percentile(ms, 50), p99Ms: percentile(ms, 99) };
  } finally {
    await wal.close();
  }
}

const WORKLOADS = [appendThenDrain, appendAndSync256, latency];

async function main() {
  process.stderr.write(`fd vs mmap: ${fmtInt(cfg.entries)} entries of 500-1000 bytes (${fmtNum(set.totalBytes / 1e6, 0)} MB), ${cfg.runs} rounds, ${fsType(tmp.root)} at ${tmp.root}\n`);
  const results = { fd: [], mmap: [] };
  for (let round = 0; round < cfg.runs; round++) {
    const order = round % 2 === 0 ? BACKENDS : [...BACKENDS].reverse();
    const row = { fd: {}, mmap: {} };
    for (const work of WORKLOADS) {
      for (const backend of order) {
        progress(`round ${round + 1}/${cfg.runs}: ${work.name} (${backend})`);
        const dir = tmp.freshDir(`${backend}-${work.name}`);
        Object.assign(row[backend], await work(dir, backend));
        await removeAndSettle(dir, tmp.root, inFlight);
      }
    }
    for (const b of BACKENDS) results[b].push(row[b]);
  }
  progressDone();
  const metrics = [
    ['append NoFsync (entries/s)', 'appendPerSec', (x) => fmtInt(x)],
    ['append NoFsync (MB/s)', 'appendMBps', (x) => fmtNum(x, 0)],
    ['appendAndSync-256 (entries/s)', 'syncedPerSec', (x) => fmtInt(x)],
    ['appendAndSync-256 records per fsync', 'recordsPerFsync', (x) => fmtNum(x, 1)],
    ['durable latency p50 (ms)', 'p50Ms', (x) => fmtNum(x, 3)],
    ['durable latency p99 (ms)', 'p99Ms', (x) => fmtNum(x, 3)],
    ['batchRead drain (entries/s)', 'readPerSec', (x) => fmtInt(x)],
  ];
  const rows = metrics.map(([label, key, fmt]) => {
    const fd = median(results.fd.map((r) => r[key]));
    const mm = median(results.mmap.map((r) => r[key]));
    return { label, key, fd, mmap: mm, cells: [label, fmt(fd), fmt(mm), fmtNum(mm / fd, 2)] };
  });
  console.log(`\nmedians of ${cfg.runs} interleaved rounds (spread per round below)`);
  console.log(table(['metric', 'fd', 'mmap', 'mmap/fd'], rows.map((r) => r.cells), new Set([1, 2, 3])));
  for (const b of BACKENDS) {
    console.log(`${b} per round: ${results[b].map((r) => `append ${fmtInt(r.appendPerSec)}/s, sync256 ${fmtInt(r.syncedPerSec)}/s, p50 ${fmtNum(r.p50Ms, 3)} ms, drain ${fmtInt(r.readPerSec)}/s`).join(' | ')}`);
  }
  if (process.env.BENCH_RESULTS) {
    writeResultsCsv(process.env.BENCH_RESULTS, 'backends', ['metric', 'key', 'fd', 'mmap'], rows.map((r) => ({ metric: r.label, key: r.key, fd: r.fd, mmap: r.mmap })), { quick: QUICK, startedAt: new Date() });
  }
}

await runBench(main, tmp);
