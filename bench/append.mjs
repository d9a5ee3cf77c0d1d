// End-to-end append benchmark: walrus-ts against hand-made Node baselines, side by side in
// one process, on the same pre-generated payloads (random 500-1000 bytes each).
//
//   npm run bench                       # build, then run with the defaults
//   node bench/append.mjs               # run against the current dist/
//   BENCH_QUICK=1 node bench/append.mjs # smaller, well under 2 minutes
//
// Knobs (environment):
//   BENCH_ENTRIES          payloads per throughput run (default 500000, ~375 MB; quick: 150000)
//   BENCH_RUNS             interleaved rounds; medians are reported (default 3; quick: 2)
//   BENCH_DURABLE_SECONDS  time budget of each durable throughput run (default 3; quick: 1)
//   BENCH_LATENCY_SAMPLES  single-producer durable latency samples per side and run (default 300; quick: 100)
//   BENCH_ONLY             comma-separated scenario names to run (default: all)
//   BENCH_SKIP             comma-separated scenario names to skip
//   BENCH_RING_BYTES       ringBytes passed to Walrus.open (default: the library's default)
//   BENCH_WARMUP=0         skip the short untimed warm-up round
//   BENCH_STATS=1          print each walrus run's wal.stats() on stderr
//   BENCH_MARKS=file       append one JSON line per timed region: {scenario, run, startUs, endUs} on
//                          the monotonic clock (the clock of --cpu-prof timestamps), to cut profiles;
//                          walrus-append also marks its ':loop' and ':close' (written + fsync) phases
// CLI: `--only=a,b` and `--skip=a,b` work like BENCH_ONLY / BENCH_SKIP.
//
// Output: a table on stdout, one CSV row per (scenario, run) in bench/results/, progress on
// stderr. Every file lives in a temporary directory under os.tmpdir(), removed at the end.
// Each scenario run gets a fresh directory, removed right after it; the benchmark then waits
// for the disk to go quiet (bounded) before the next one.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { Walrus, FsyncSchedule } from '../dist/index.js';
import { batches, chunk, makePayloads } from './lib/payloads.mjs';
import { median, percentile, min, max } from './lib/stats.mjs';
import { fmtInt, fmtNum, progress, progressDone, table, writeResultsCsv } from './lib/report.mjs';
import { fsType, ioInFlightOf, makeTmpRoot, readText, removeAndSettle as removeAndSettleIn } from './lib/disk.mjs';
import { envNum, listArg } from './lib/config.mjs';

// ---------------------------------------------------------------------------------------------
// Configuration

const QUICK = process.env.BENCH_QUICK === '1';

const cfg = {
  entries: Math.floor(envNum('BENCH_ENTRIES', QUICK ? 150_000 : 500_000)),
  runs: Math.floor(envNum('BENCH_RUNS', QUICK ? 2 : 3)),
  durableSeconds: envNum('BENCH_DURABLE_SECONDS', QUICK ? 1 : 3, 0.1),
  latencySamples: Math.floor(envNum('BENCH_LATENCY_SAMPLES', QUICK ? 100 : 300)),
  ringBytes: process.env.BENCH_RING_BYTES ? Math.floor(envNum('BENCH_RING_BYTES', 0)) : undefined,
  warmup: process.env.BENCH_WARMUP !== '0',
  printStats: process.env.BENCH_STATS === '1',
  only: listArg('only', 'BENCH_ONLY'),
  skip: listArg('skip', 'BENCH_SKIP'),
};

const BATCH = 1000; // entries per writev / batchAppend call
const CHUNK_BYTES = 1024 * 1024; // bare baseline block size
const IN_FLIGHT = 256; // concurrent appendAndSync calls
const LATENCY_BLOCK = 25; // latency samples per interleaving block
const TOPIC = 'bench';
const MB = 1e6;

// ---------------------------------------------------------------------------------------------
// Temporary files: one root under os.tmpdir(), a fresh directory per scenario run.

const tmp = makeTmpRoot('walrus-bench-', () => progressDone());
const inFlight = ioInFlightOf(tmp.root);

const removeAndSettle = (dir) => removeAndSettleIn(dir, tmp.root, inFlight);

function walOptions(dir, extra = {}) {
  const o = { dir, fsync: FsyncSchedule.NoFsync, shards: 1, ...extra };
  if (cfg.ringBytes !== undefined) o.ringBytes = cfg.ringBytes;
  return o;
}

function statsDelta(after, before) {
  const out = { fsyncs: 0, writeSubmits: 0, bytesWritten: 0, recordsWritten: 0 };
  after.shards.forEach((s, i) => {
    const b = before?.shards[i] ?? { fsyncs: 0, writeSubmits: 0, bytesWritten: 0, recordsWritten: 0 };
    out.fsyncs += s.fsyncs - b.fsyncs;
    out.writeSubmits += s.writeSubmits - b.writeSubmits;
    out.bytesWritten += s.bytesWritten - b.bytesWritten;
    out.recordsWritten += s.recordsWritten - b.recordsWritten;
  });
  return out;
}

function sumStats(st) {
  return statsDelta(st, null);
}

function isBackpressure(e) {
  return e !== null && typeof e === 'object' && e.code === 'ERR_WALRUS_BACKPRESSURE';
}

/** FNV-1a of the UTF-8 name: the documented shard routing (topic lives in shard hash % N). */
function topicShard(name, shards) {
  const bytes = Buffer.from(name, 'utf8');
  let h = 0x811c9dc5;
  for (let i = 0; i < bytes.length; i++) {
    h ^= bytes[i];
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0) % shards;
}

/** One topic name per shard, so a multi-shard run really spreads over every shard. */
function topicsForShards(shards) {
  const out = new Array(shards).fill(null);
  for (let k = 0; out.includes(null); k++) {
    const name = `bench-${k}`;
    const s = topicShard(name, shards);
    if (out[s] === null) out[s] = name;
  }
  return out;
}

/** Records a timed region (BENCH_MARKS) from `startNs` (process.hrtime.bigint()) to now. */
let currentRound = 0;
function mark(name, startNs) {
  if (!process.env.BENCH_MARKS) return;
  const endNs = process.hrtime.bigint();
  const m = { scenario: name, run: currentRound, startUs: Number(startNs / 1000n), endUs: Number(endNs / 1000n) };
  fs.appendFileSync(process.env.BENCH_MARKS, JSON.stringify(m) + '\n');
}

// ---------------------------------------------------------------------------------------------
// Payloads (generated once, not measured)

const tGen = performance.now();
const { payloads, all: payloadBytes, totalBytes } = makePayloads(cfg.entries);
const blocks1MiB = chunk(payloadBytes, CHUNK_BYTES);
const batches1000 = batches(payloads, BATCH);
const genSeconds = (performance.now() - tGen) / 1000;

// ---------------------------------------------------------------------------------------------
// Scenarios. Each `run(dir, payloadSet)` returns one row object or an array of them.

function throughputRow(entries, bytes, seconds, extra = {}) {
  return { entries, payloadBytes: bytes, seconds, entriesPerSec: entries / seconds, mbPerSec: bytes / MB / seconds, ...extra };
}

async function runBare(dir, set, fsyncAtEnd = false) {
  const fd = fs.openSync(path.join(dir, 'bare.log'), 'w');
  try {
    const t0 = performance.now();
    for (const b of set.blocks) {
      let off = 0;
      while (off < b.length) off += fs.writeSync(fd, b, off, b.length - off);
    }
    const t1 = performance.now();
    if (fsyncAtEnd) fs.fdatasyncSync(fd);
    const t2 = performance.now();
    const extra = fsyncAtEnd ? { enqueueSeconds: (t1 - t0) / 1000, closeSeconds: (t2 - t1) / 1000, fsyncs: 1 } : {};
    return throughputRow(set.payloads.length, set.totalBytes, (t2 - t0) / 1000, extra);
  } finally {
    fs.closeSync(fd);
  }
}

async function runWritev(dir, set) {
  const fd = fs.openSync(path.join(dir, 'writev.log'), 'w');
  const expected = set.batches.map((b) => b.reduce((a, p) => a + p.length, 0));
  try {
    const t0 = performance.now();
    for (let k = 0; k < set.batches.length; k++) {
      const n = fs.writevSync(fd, set.batches[k]);
      if (n !== expected[k]) throw new Error(`short writev: ${n} of ${expected[k]} bytes`);
    }
    const s = (performance.now() - t0) / 1000;
    return throughputRow(set.payloads.length, set.totalBytes, s);
  } finally {
    fs.closeSync(fd);
  }
}

/** Appends every payload, round-robin over `topics`; returns how many BACKPRESSURE errors it saw. */
async function appendAll(wal, topics, list) {
  const n = list.length;
  let i = 0;
  let pressure = 0;
  if (topics.length === 1) {
    const topic = topics[0];
    while (i < n) {
      try {
        for (; i < n; i++) wal.append(topic, list[i]);
      } catch (e) {
        if (!isBackpressure(e)) throw e;
        pressure++;
        await wal.drain(); // then retry the same entry
      }
    }
  } else {
    const m = topics.length;
    while (i < n) {
      try {
        for (; i < n; i++) wal.append(topics[i % m], list[i]);
      } catch (e) {
        if (!isBackpressure(e)) throw e;
        pressure++;
        await wal.drain();
      }
    }
  }
  return pressure;
}

let lastAppendStats = null;

/**
 * One walrus throughput run on a fresh log: `loop(wal)` is the timed append loop and returns how
 * many BACKPRESSURE errors it saw; then flush and close. With `markAs`, the loop and the close
 * are marked (BENCH_MARKS) as '<markAs>:loop' and '<markAs>:close'. Returns the row and
 * wal.stats() after close.
 */
async function walrusThroughputRun(dir, set, shards, markAs, loop) {
  const wal = await Walrus.open(walOptions(dir, { shards }));
  let closed = false;
  try {
    const m0 = markAs ? process.hrtime.bigint() : 0n;
    const t0 = performance.now();
    const pressure = await loop(wal);
    const t1 = performance.now();
    if (markAs) mark(`${markAs}:loop`, m0);
    const m1 = markAs ? process.hrtime.bigint() : 0n;
    // Headline: everything written to the files (handed to the kernel), no fsync: the same
    // point the bare rows stop at. close() (which adds one fdatasync) is reported apart.
    await wal.flush();
    const tw = performance.now();
    await wal.close();
    closed = true;
    const t2 = performance.now();
    if (markAs) mark(`${markAs}:close`, m1);
    const st = wal.stats();
    const row = throughputRow(set.payloads.length, set.totalBytes, (tw - t0) / 1000, {
      enqueueEntriesPerSec: set.payloads.length / ((t1 - t0) / 1000),
      enqueueSeconds: (t1 - t0) / 1000,
      endToEndSeconds: (t2 - t0) / 1000,
      endToEndEntriesPerSec: set.payloads.length / ((t2 - t0) / 1000),
      closeSeconds: (t2 - tw) / 1000,
      backpressure: pressure,
      ...sumStats(st),
    });
    return { row, st };
  } finally {
    if (!closed) await wal.close().catch(() => {});
  }
}

async function runWalrusAppend(dir, set, shards = 1) {
  const topics = shards === 1 ? [TOPIC] : topicsForShards(shards);
  const name = `walrus-append${shards === 1 ? '' : `-${shards}shards`}`;
  const { row, st } = await walrusThroughputRun(dir, set, shards, name, (wal) => appendAll(wal, topics, set.payloads));
  if (row.recordsWritten < set.payloads.length) throw new Error(`only ${row.recordsWritten} of ${set.payloads.length} records written`);
  if (shards === 1) lastAppendStats = st;
  if (cfg.printStats) process.stderr.write(`\nwalrus-append shards=${shards} stats: ${JSON.stringify(st)}\n`);
  return row;
}

async function runWalrusBatch(dir, set) {
  const list = set.batches;
  const { row, st } = await walrusThroughputRun(dir, set, 1, null, async (wal) => {
    let pressure = 0;
    let k = 0;
    while (k < list.length) {
      try {
        for (; k < list.length; k++) wal.batchAppend(TOPIC, list[k]);
      } catch (e) {
        if (!isBackpressure(e)) throw e;
        pressure++;
        await wal.drain();
      }
    }
    return pressure;
  });
  if (cfg.printStats) process.stderr.write(`\nwalrus-batch stats: ${JSON.stringify(st)}\n`);
  return row;
}

async function runFdatasyncEach(dir, set, seconds) {
  const fd = fs.openSync(path.join(dir, 'fdatasync.log'), 'w');
  try {
    const list = set.payloads;
    let i = 0;
    let bytes = 0;
    const t0 = performance.now();
    const end = t0 + seconds * 1000;
    let now = t0;
    while (now < end) {
      const p = list[i % list.length];
      fs.writeSync(fd, p);
      fs.fdatasyncSync(fd);
      bytes += p.length;
      i++;
      now = performance.now();
    }
    const s = (now - t0) / 1000;
    return throughputRow(i, bytes, s, { fsyncs: i });
  } finally {
    fs.closeSync(fd);
  }
}

async function runAppendAndSync256(dir, set, seconds) {
  const wal = await Walrus.open(walOptions(dir));
  try {
    const list = set.payloads;
    let next = 0;
    let done = 0;
    let bytes = 0;
    let pressure = 0;
    const before = wal.stats();
    const t0 = performance.now();
    const end = t0 + seconds * 1000;
    const lane = async () => {
      while (performance.now() < end) {
        const p = list[next++ % list.length];
        for (;;) {
          try {
            await wal.appendAndSync(TOPIC, p);
            break;
          } catch (e) {
            if (!isBackpressure(e)) throw e;
            pressure++;
            await wal.drain();
          }
        }
        done++;
        bytes += p.length;
      }
    };
    await Promise.all(Array.from({ length: IN_FLIGHT }, lane));
    const s = (performance.now() - t0) / 1000;
    const d = statsDelta(wal.stats(), before);
    return throughputRow(done, bytes, s, { backpressure: pressure, ...d, recordsPerFsync: done / d.fsyncs });
  } finally {
    await wal.close();
  }
}

/** Single producer, one in flight: walrus appendAndSync vs bare write+fdatasync, interleaved in blocks. */
async function runLatency(dir, set, samples) {
  const wal = await Walrus.open(walOptions(dir));
  const fd = fs.openSync(path.join(dir, 'bare-latency.log'), 'w');
  try {
    const list = set.payloads;
    let i = 0;
    const walrusMs = [];
    const bareMs = [];
    const doWalrus = async (record) => {
      const p = list[i++ % list.length];
      const t0 = performance.now();
      await wal.appendAndSync(TOPIC, p);
      const dt = performance.now() - t0;
      if (record) walrusMs.push(dt);
    };
    const doBare = (record) => {
      const p = list[i++ % list.length];
      const t0 = performance.now();
      fs.writeSync(fd, p);
      fs.fdatasyncSync(fd);
      const dt = performance.now() - t0;
      if (record) bareMs.push(dt);
    };
    // A few unrecorded samples first (JIT, first block allocation, first fdatasync).
    for (let k = 0; k < 5; k++) {
      await doWalrus(false);
      doBare(false);
    }
    let block = 0;
    while (walrusMs.length < samples || bareMs.length < samples) {
      const walrusFirst = block++ % 2 === 0;
      for (const side of walrusFirst ? ['w', 'b'] : ['b', 'w']) {
        for (let k = 0; k < LATENCY_BLOCK; k++) {
          if (side === 'w' && walrusMs.length < samples) await doWalrus(true);
          if (side === 'b' && bareMs.length < samples) doBare(true);
        }
      }
    }
    const st = sumStats(wal.stats());
    const row = (name, xs, extra = {}) => ({
      scenario: name,
      entries: xs.length,
      seconds: xs.reduce((a, b) => a + b, 0) / 1000,
      entriesPerSec: xs.length / (xs.reduce((a, b) => a + b, 0) / 1000),
      p50Ms: percentile(xs, 50),
      p90Ms: percentile(xs, 90),
      p99Ms: percentile(xs, 99),
      maxMs: max(xs),
      minMs: min(xs),
      ...extra,
    });
    return [row('walrus-appendAndSync-1', walrusMs, { fsyncs: st.fsyncs, writeSubmits: st.writeSubmits }), row('bare-write+fdatasync', bareMs, { fsyncs: bareMs.length })];
  } finally {
    fs.closeSync(fd);
    await wal.close();
  }
}

const SCENARIOS = [
  { name: 'bare-1MiB', kind: 'tput', run: (dir, set) => runBare(dir, set) },
  { name: 'bare-1MiB+fdatasync', kind: 'tput', run: (dir, set) => runBare(dir, set, true) },
  { name: 'writevSync-1000', kind: 'tput', run: (dir, set) => runWritev(dir, set) },
  { name: 'walrus-append', kind: 'tput', run: (dir, set) => runWalrusAppend(dir, set, 1) },
  { name: 'walrus-append-2shards', kind: 'tput', run: (dir, set) => runWalrusAppend(dir, set, 2) },
  { name: 'walrus-batch', kind: 'tput', run: (dir, set) => runWalrusBatch(dir, set) },
  { name: 'fdatasync-each', kind: 'durable', run: (dir, set) => runFdatasyncEach(dir, set, cfg.durableSeconds) },
  { name: 'walrus-appendAndSync-256', kind: 'durable', run: (dir, set) => runAppendAndSync256(dir, set, cfg.durableSeconds) },
  { name: 'latency', kind: 'latency', produces: ['walrus-appendAndSync-1', 'bare-write+fdatasync'], run: (dir, set) => runLatency(dir, set, cfg.latencySamples) },
];

const selected = SCENARIOS.filter((s) => {
  const names = [s.name, ...(s.produces ?? [])];
  if (cfg.only && !names.some((n) => cfg.only.has(n))) return false;
  if (cfg.skip && names.some((n) => cfg.skip.has(n))) return false;
  return true;
});
if (selected.length === 0) throw new Error(`no scenario selected; known: ${SCENARIOS.map((s) => s.name).join(', ')}`);

// ---------------------------------------------------------------------------------------------
// Machine description

async function probeIo() {
  const dir = tmp.freshDir('probe');
  const wal = await Walrus.open(walOptions(dir));
  try {
    return wal.stats().io;
  } finally {
    await wal.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------
// Main

const rows = [];
const startedAt = new Date();

async function runScenario(s, set, round, label) {
  progress(`[${label}] ${s.name} ...`);
  const dir = tmp.freshDir(s.name);
  try {
    currentRound = round;
    const m0 = process.hrtime.bigint();
    const out = await s.run(dir, set);
    mark(s.name, m0);
    const list = Array.isArray(out) ? out : [out];
    for (const r of list) {
      r.scenario ??= s.name;
      r.run = round;
    }
    const first = list[0];
    const brief =
      s.kind === 'latency'
        ? list.map((r) => `${r.scenario} p50 ${fmtNum(r.p50Ms, 3)} ms`).join(', ')
        : `${fmtInt(first.entriesPerSec)} entries/s, ${fmtNum(first.mbPerSec, 1)} MB/s`;
    progress(`[${label}] ${s.name}: ${brief}`);
    return list;
  } finally {
    await removeAndSettle(dir);
  }
}

async function main() {
  const io = await probeIo();
  const cpus = os.cpus();
  const mem = os.totalmem();
  const lines = [
    'walrus-ts append benchmark',
    `  machine : nproc ${os.availableParallelism()}, ${cpus[0]?.model ?? '?'}, ${(mem / 1024 ** 3).toFixed(1)} GiB RAM`,
    `  software: node ${process.version}, kernel ${os.release()} (${os.arch()}), io path ${io}`,
    `  files   : ${tmp.root} (${fsType(tmp.root)}); vm.dirty_ratio ${readText('/proc/sys/vm/dirty_ratio')}%, dirty_background_ratio ${readText('/proc/sys/vm/dirty_background_ratio')}%`,
    `  payloads: ${fmtInt(cfg.entries)} entries, 500-1000 B random, ${(totalBytes / MB).toFixed(1)} MB total (generated in ${genSeconds.toFixed(1)} s, not measured)`,
    `  runs    : ${cfg.runs} interleaved rounds, medians reported; durable budget ${cfg.durableSeconds} s; latency ${cfg.latencySamples} samples/side/run${QUICK ? ' (BENCH_QUICK)' : ''}${cfg.ringBytes ? `; ringBytes ${cfg.ringBytes}` : ''}`,
    `  walrus  : fsync NoFsync, shards 1 (except -2shards); walrus rows = append loop + await wal.flush() (all written to the files, no fsync, like the bare rows); close() (+1 fdatasync/shard) reported apart`,
  ];
  console.log(lines.join('\n'));
  console.log('');

  if (cfg.warmup) {
    // Short untimed round: JIT for the loops and the addon's first calls, on a slice.
    const n = Math.min(20_000, payloads.length);
    const wp = payloads.slice(0, n);
    const wBytes = wp.reduce((a, p) => a + p.length, 0);
    const warmSet = { payloads: wp, totalBytes: wBytes, blocks: chunk(payloadBytes.subarray(0, wBytes), CHUNK_BYTES), batches: batches(wp, BATCH) };
    for (const s of selected) {
      if (s.kind === 'tput') await runScenario(s, warmSet, 0, 'warm-up');
    }
    lastAppendStats = null;
  }

  const set = { payloads, totalBytes, blocks: blocks1MiB, batches: batches1000 };
  for (let round = 1; round <= cfg.runs; round++) {
    for (const s of selected) {
      rows.push(...(await runScenario(s, set, round, `round ${round}/${cfg.runs}`)));
    }
  }
  progressDone();
  report();
}

function report() {
  const names = [...new Set(rows.map((r) => r.scenario))];
  const by = (name) => rows.filter((r) => r.scenario === name);
  const med = (name, field) => median(by(name).map((r) => r[field]));

  // Throughput table
  const tputRows = [];
  for (const n of names) {
    const rs = by(n);
    if (rs[0].p50Ms !== undefined) continue;
    const eps = rs.map((r) => r.entriesPerSec);
    let extra = '';
    if (rs[0].enqueueEntriesPerSec !== undefined) {
      extra = `enqueue ${fmtInt(med(n, 'enqueueEntriesPerSec'))}/s; incl. close ${fmtInt(med(n, 'endToEndEntriesPerSec'))}/s (close ${fmtNum(med(n, 'closeSeconds') * 1000, 0)} ms); ${fmtInt(median(rs.map((r) => r.recordsWritten / r.writeSubmits)))} rec/submit`;
      const bp = rs.reduce((a, r) => a + (r.backpressure ?? 0), 0);
      if (bp > 0) extra += `; ${bp} BACKPRESSURE errors in ${rs.length} runs`;
    } else if (n === 'bare-1MiB+fdatasync') {
      extra = `writes ${fmtNum(med(n, 'enqueueSeconds') * 1000, 0)} ms + fdatasync ${fmtNum(med(n, 'closeSeconds') * 1000, 0)} ms`;
    } else if (n === 'walrus-appendAndSync-256') {
      extra = `${fmtInt(med(n, 'fsyncs'))} fsyncs/run, ${fmtNum(med(n, 'recordsPerFsync'), 1)} rec/fsync`;
    } else if (n === 'fdatasync-each') {
      extra = `${fmtInt(med(n, 'fsyncs'))} fsyncs/run`;
    }
    tputRows.push([n, fmtInt(median(eps)), fmtNum(med(n, 'mbPerSec'), 1), `${fmtInt(min(eps))} .. ${fmtInt(max(eps))}`, fmtNum(med(n, 'seconds'), 3), extra]);
  }
  if (tputRows.length > 0) {
    console.log('Throughput (median of runs; MB = 10^6 payload bytes; walrus rows: until written, as the bare rows)');
    console.log(table(['scenario', 'entries/s', 'MB/s', 'min .. max entries/s', 'seconds', 'notes'], tputRows, new Set([1, 2, 3, 4])));
    console.log('');
  }

  // Latency table
  const latRows = [];
  for (const n of names) {
    const rs = by(n);
    if (rs[0].p50Ms === undefined) continue;
    latRows.push([
      n,
      fmtNum(med(n, 'p50Ms'), 3),
      fmtNum(med(n, 'p90Ms'), 3),
      fmtNum(med(n, 'p99Ms'), 3),
      fmtNum(med(n, 'maxMs'), 3),
      `${fmtNum(min(rs.map((r) => r.p50Ms)), 3)} .. ${fmtNum(max(rs.map((r) => r.p50Ms)), 3)}`,
      fmtInt(med(n, 'entries')),
    ]);
  }
  if (latRows.length > 0) {
    console.log('Durable latency, single producer, one in flight (ms; median of per-run percentiles)');
    console.log(table(['scenario', 'p50', 'p90', 'p99', 'max', 'p50 min .. max', 'samples/run'], latRows, new Set([1, 2, 3, 4, 5, 6])));
    console.log('');
  }

  // Ratios: from the medians, plus the median of the per-round ratios (paired, same round).
  const perRound = (a, b, field) => {
    const out = [];
    for (let r = 1; r <= cfg.runs; r++) {
      const x = rows.find((q) => q.scenario === a && q.run === r)?.[field];
      const y = rows.find((q) => q.scenario === b && q.run === r)?.[field];
      if (x !== undefined && y !== undefined) out.push(x / y);
    }
    return median(out);
  };
  const ratioDefs = [
    ['walrus-append / bare-1MiB', 'walrus-append', 'bare-1MiB', 'entriesPerSec', '>=', 0.85],
    ['walrus-append / writevSync-1000', 'walrus-append', 'writevSync-1000', 'entriesPerSec', '>=', 1.0],
    ['walrus-append enqueue-only / bare-1MiB', 'walrus-append', 'bare-1MiB', ['enqueueEntriesPerSec', 'entriesPerSec'], null, null],
    ['walrus-append incl. close / bare-1MiB+fdatasync', 'walrus-append', 'bare-1MiB+fdatasync', ['endToEndEntriesPerSec', 'entriesPerSec'], null, null],
    ['walrus-append-2shards / bare-1MiB', 'walrus-append-2shards', 'bare-1MiB', 'entriesPerSec', null, null],
    ['walrus-batch / bare-1MiB', 'walrus-batch', 'bare-1MiB', 'entriesPerSec', null, null],
    ['walrus-batch / writevSync-1000', 'walrus-batch', 'writevSync-1000', 'entriesPerSec', null, null],
    ['appendAndSync-256 / fdatasync-each', 'walrus-appendAndSync-256', 'fdatasync-each', 'entriesPerSec', '>=', 50],
    ['latency p50 walrus / bare', 'walrus-appendAndSync-1', 'bare-write+fdatasync', 'p50Ms', '<=', 1.5],
    ['latency p99 walrus / bare', 'walrus-appendAndSync-1', 'bare-write+fdatasync', 'p99Ms', null, null],
  ];
  const ratioRows = [];
  for (const [label, a, b, field, op, target] of ratioDefs) {
    if (!names.includes(a) || !names.includes(b)) continue;
    const [fa, fb] = Array.isArray(field) ? field : [field, field];
    const ratio = med(a, fa) / med(b, fb);
    let paired = NaN;
    if (fa === fb) paired = perRound(a, b, fa);
    else {
      const out = [];
      for (let r = 1; r <= cfg.runs; r++) {
        const x = rows.find((q) => q.scenario === a && q.run === r)?.[fa];
        const y = rows.find((q) => q.scenario === b && q.run === r)?.[fb];
        if (x !== undefined && y !== undefined) out.push(x / y);
      }
      paired = median(out);
    }
    let verdict = '';
    if (op) verdict = (op === '>=' ? ratio >= target : ratio <= target) ? 'PASS' : 'MISS';
    ratioRows.push([label, fmtNum(ratio, ratio >= 10 ? 1 : 3), fmtNum(paired, paired >= 10 ? 1 : 3), op ? `${op} ${target}` : '', verdict]);
  }
  if (ratioRows.length > 0) {
    console.log('Ratios (from the medians; "paired" = median of the per-round ratios)');
    console.log(table(['ratio', 'value', 'paired', 'target', ''], ratioRows, new Set([1, 2])));
    console.log('');
  }

  if (lastAppendStats) {
    const s = lastAppendStats.shards[0];
    console.log(
      `walrus-append wal.stats() (last run, after close): io ${lastAppendStats.io}, writeSubmits ${fmtInt(s.writeSubmits)}, bytesWritten ${fmtInt(s.bytesWritten)}, ` +
        `recordsWritten ${fmtInt(s.recordsWritten)}, fsyncs ${s.fsyncs} -> ${fmtInt(s.recordsWritten / s.writeSubmits)} records and ` +
        `${fmtNum(s.bytesWritten / s.writeSubmits / 1024, 1)} KiB per submission; ${fmtNum(s.bytesWritten / totalBytes, 3)} bytes on disk per payload byte`,
    );
  }

  // CSV
  const resultsDir = path.join(path.dirname(fileURLToPath(import.meta.url)), 'results');
  writeResultsCsv(resultsDir, 'append', [
    'scenario', 'run', 'entries', 'payloadBytes', 'seconds', 'entriesPerSec', 'mbPerSec',
    'enqueueSeconds', 'enqueueEntriesPerSec', 'endToEndSeconds', 'endToEndEntriesPerSec', 'closeSeconds', 'backpressure',
    'fsyncs', 'writeSubmits', 'bytesWritten', 'recordsWritten', 'recordsPerFsync',
    'p50Ms', 'p90Ms', 'p99Ms', 'maxMs', 'minMs',
  ], rows, { quick: QUICK, startedAt });
}

try {
  await main();
} catch (err) {
  progressDone();
  console.error(err);
  process.exitCode = 1;
} finally {
  tmp.cleanup();
}
