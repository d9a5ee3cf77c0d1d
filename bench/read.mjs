// End-to-end read benchmark: walrus-ts consumers against hand-made Node baselines, side by
// side in one process, on the same pre-generated payloads (random 500-1000 bytes each).
//
//   npm run bench:read                       # build, then run with the defaults (~1-2 minutes)
//   node bench/read.mjs                      # run against the current dist/
//   BENCH_QUICK=1 node bench/read.mjs        # smaller, about 30 s
//
// Two groups of scenarios; each round writes a fresh log (not timed), makes it durable, then
// runs the group's scenarios on it in an order rotated from round to round:
//
//   drain group (N entries written to topic 'bench', then again to 'bench-iter' and 'bench-keep',
//   NoFsync + flush + sync, untimed)
//     batchRead-drain        wal.batchRead('bench', 4 MiB, checkpoint = true) until [], consistency
//                            atLeastOnce(1_000_000): no cursor record is written during the drain,
//                            but consumed segments are deleted as it goes (as for any consumer)
//     batchRead-drain-keep   the same on topic 'bench-keep', written last: the unconsumed
//                            'bench-iter' before it keeps its segments, so nothing is deleted
//                            during this drain (the read path alone)
//     fetch-drain-keep       wal.fetch('bench-fetch', { maxBytes: 4 MiB, maxEntries: MAX_FETCH_ENTRIES })
//                            until empty: the bulk form, each entry's offset and length read from
//                            the RecordBatch without building an Entry (written after
//                            'bench-keep': nothing is deleted during it either)
//     iterate-drain          for await (wal.iterate('bench-iter', 0)): checkpoint = false
//     bare-read-4MiB         fs.readSync of the same payload bytes from a plain file, 4 MiB chunks
//     bare-read+crc32c       the same plus @node-rs/crc32 crc32c of every payload (a JS slice
//                            and one native call per record): what verifying costs from JS
//   strict group (one topic, M entries, fsynced, untimed)
//     readNext-strict-<C>    C concurrent consumers, each looping `await wal.readNext(topic)`
//                            under StrictlyAtOnce until null or the time budget
//     fdatasync-per-read     per read: fs.readSync of one record from a plain file, then
//                            pwrite + fdatasync of an 8-byte cursor to a small file
//
// Knobs (environment):
//   BENCH_ENTRIES          entries of the drain group (default 500000, ~375 MB; quick: 150000)
//   BENCH_RUNS             interleaved rounds; medians are reported (default 3; quick: 2)
//   BENCH_STRICT_ENTRIES   entries of the strict group (default 20000; quick: 5000)
//   BENCH_CONSUMERS        concurrent readNext consumers (default 64)
//   BENCH_STRICT_SECONDS   time budget of each strict-group scenario (default 10; quick: 2)
//   BENCH_READ_BYTES       maxBytes of each batchRead (default 4 MiB)
//   BENCH_ONLY / BENCH_SKIP  comma-separated scenario names (also --only=a,b / --skip=a,b)
//   BENCH_WARMUP=0         skip the short untimed warm-up round (which also checks every byte)
//   BENCH_WORKER_WARMUP    entries of a second topic that each round drains (untimed) before its
//                          scenarios, so that they meet a warm shard worker: every round opens a
//                          fresh log, hence a fresh worker thread (default 50000, strict group
//                          2000; 0 = off, to measure a cold worker's first drain)
//   BENCH_STATS=1          print wal.stats() of each group on stderr
//   BENCH_MARKS=file       append one JSON line per timed scenario run: {scenario, run, startUs, endUs}
//                          on the monotonic clock (the clock of --cpu-prof timestamps), to cut profiles
//
// Output: a table on stdout, one CSV row per (scenario, run) in bench/results/read-*.csv,
// progress on stderr. Every file lives under a temporary directory in os.tmpdir(), removed at
// the end (also on SIGINT/SIGTERM). Exit code 1 when any read returned wrong data.
import fs from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Walrus, FsyncSchedule, ReadConsistency, MAX_FETCH_ENTRIES } from '../dist/index.js';
import { makePayloads } from './lib/payloads.mjs';
import { median, percentile, min, max } from './lib/stats.mjs';
import { fmtInt, fmtNum, machineLines, markRegion, progress, progressDone, resultsDir, table, throughputRow, writeResultsCsv, runBench } from './lib/report.mjs';
import { fsyncDir, ioInFlightOf, makeTmpRoot, removeAndSettle as removeAndSettleIn, waitQuiet } from './lib/disk.mjs';
import { envNum, listArg } from './lib/config.mjs';
import { batchAppendRetry, probeIo } from './lib/walrus.mjs';

// ---------------------------------------------------------------------------------------------
// Configuration

const QUICK = process.env.BENCH_QUICK === '1';

const cfg = {
  entries: Math.floor(envNum('BENCH_ENTRIES', QUICK ? 150_000 : 500_000)),
  runs: Math.floor(envNum('BENCH_RUNS', QUICK ? 2 : 3)),
  strictEntries: Math.floor(envNum('BENCH_STRICT_ENTRIES', QUICK ? 5_000 : 20_000)),
  consumers: Math.floor(envNum('BENCH_CONSUMERS', 64)),
  strictSeconds: envNum('BENCH_STRICT_SECONDS', QUICK ? 2 : 10, 0.1),
  readBytes: Math.floor(envNum('BENCH_READ_BYTES', 4 * 1024 * 1024)),
  warmup: process.env.BENCH_WARMUP !== '0',
  workerWarmup: Math.floor(envNum('BENCH_WORKER_WARMUP', 50_000, 0)),
  printStats: process.env.BENCH_STATS === '1',
  only: listArg('only', 'BENCH_ONLY'),
  skip: listArg('skip', 'BENCH_SKIP'),
};

const TOPIC = 'bench';
const ITER_TOPIC = 'bench-iter'; // the same entries again, for iterate-drain (see the drain group)
const KEEP_TOPIC = 'bench-keep'; // and again, for batchRead-drain-keep
const FETCH_TOPIC = 'bench-fetch'; // and again, for fetch-drain-keep
const RELEASE_TOPIC = 'bench-release'; // and again, for fetch-release-keep
const WARM_TOPIC = 'warm';
const CHUNK_BYTES = 4 * 1024 * 1024; // bare read chunk
const APPEND_BATCH = 1000; // setup only: entries per batchAppend
const PERSIST_EVERY = 1_000_000; // atLeastOnce(n) of the drain group: no cursor write during a drain
const WARMUP_ENTRIES = 20_000;
const WARMUP_STRICT = 2_000;
const MB = 1e6;
const STRICT_NAME = `readNext-strict-${cfg.consumers}`;

// @node-rs/crc32 is a dependency of the package; the scenario is skipped if it cannot load.
let crc32c = null;
try {
  const m = await import('@node-rs/crc32');
  crc32c = m.crc32c ?? m.default?.crc32c ?? null;
} catch {
  crc32c = null;
}

// ---------------------------------------------------------------------------------------------
// Temporary files

const tmp = makeTmpRoot('walrus-read-bench-', () => progressDone());
const inFlight = ioInFlightOf(tmp.root);

const removeAndSettle = (dir) => removeAndSettleIn(dir, tmp.root, inFlight);

// ---------------------------------------------------------------------------------------------
// Payloads (generated once, not measured). Payload i is at byte payloads[i].byteOffset of
// `payloadBytes`, which is also its position in the bare files.

const tGen = performance.now();
const { payloads, all: payloadBytes } = makePayloads(Math.max(cfg.entries, cfg.strictEntries, WARMUP_ENTRIES));
const genSeconds = (performance.now() - tGen) / 1000;
const bytesOf = (n) => (n === 0 ? 0 : payloads[n - 1].byteOffset - payloadBytes.byteOffset + payloads[n - 1].length);

/** Problems found by the checks (wrong data, wrong counts): printed at the end, exit code 1. */
const problems = [];
function problem(scenario, round, msg) {
  problems.push(`${scenario} (round ${round}): ${msg}`);
  progress(`PROBLEM ${scenario} (round ${round}): ${msg}`);
}

// ---------------------------------------------------------------------------------------------
// Setup helpers (never timed)

async function appendFirst(wal, n, topic = TOPIC) {
  for (let i = 0; i < n; i += APPEND_BATCH) await batchAppendRetry(wal, topic, payloads.slice(i, Math.min(n, i + APPEND_BATCH)));
}

/** Writes the first `n` payloads, back to back, to `file` and fdatasyncs it. */
function writeBareFile(file, n) {
  const bytes = payloadBytes.subarray(0, bytesOf(n));
  const fd = fs.openSync(file, 'w');
  try {
    for (let at = 0; at < bytes.length; ) at += fs.writeSync(fd, bytes, at, Math.min(CHUNK_BYTES, bytes.length - at));
    fs.fdatasyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

const fsyncsOf = (wal) => wal.stats().shards.reduce((a, s) => a + s.fsyncs, 0);

/** Files under `dir` (recursively): the log's segment files, to see consumed ones deleted. */
function countFiles(dir) {
  let n = 0;
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) n += e.isDirectory() ? countFiles(path.join(dir, e.name)) : 1;
  return n;
}

// ---------------------------------------------------------------------------------------------
// Drain group. ctx: { wal, barePath, n, bytes, verifyAll, round }

/**
 * The checks and the row of a drain scenario: every entry once, every byte, no damage, and
 * (`keep`: a topic whose segments stay) no file deleted meanwhile.
 */
function drainRow(ctx, name, { n, bytes, calls, bad, t0, fsyncs0, files0, keep }) {
  const seconds = (performance.now() - t0) / 1000;
  const fsyncs = fsyncsOf(ctx.wal) - fsyncs0;
  const filesDeleted = files0 - countFiles(ctx.walDir);
  if (bad !== null) problem(name, ctx.round, bad);
  if (n !== ctx.n) problem(name, ctx.round, `drained ${n} entries, expected ${ctx.n}`);
  if (bytes !== ctx.bytes) problem(name, ctx.round, `drained ${bytes} payload bytes, expected ${ctx.bytes}`);
  if (keep && filesDeleted !== 0) problem(name, ctx.round, `${filesDeleted} files deleted, expected none`);
  return throughputRow(n, bytes, seconds, { calls, entriesPerCall: n / calls, fsyncs, filesDeleted });
}

async function runBatchReadDrain(ctx, topic = TOPIC, name = 'batchRead-drain') {
  const { wal, verifyAll } = ctx;
  let n = 0;
  let bytes = 0;
  let calls = 0;
  let bad = null;
  const fsyncs0 = fsyncsOf(wal);
  const files0 = countFiles(ctx.walDir);
  const t0 = performance.now();
  for (;;) {
    const batch = await wal.batchRead(topic, cfg.readBytes, true);
    const len = batch.length;
    if (len === 0) break;
    calls++;
    // Per entry: the offset sequence and the byte count (what any consumer touches).
    for (let k = 0; k < len; k++) {
      const e = batch[k];
      if (e.offset !== n && bad === null) bad = `entry #${n} has offset ${e.offset}`;
      n++;
      bytes += e.data.length;
      if (verifyAll && bad === null && !e.data.equals(payloads[e.offset])) bad = `entry ${e.offset}: bytes differ from the payload`;
    }
    // One entry per batch (at a varying index) compared byte for byte: a memcmp per ~1.5 MB.
    const s = batch[(calls * 7919) % len];
    if (bad === null && (s.offset >= payloads.length || !s.data.equals(payloads[s.offset]))) bad = `entry ${s.offset}: bytes differ from the payload`;
  }
  return drainRow(ctx, name, { n, bytes, calls, bad, t0, fsyncs0, files0, keep: topic === KEEP_TOPIC });
}

/**
 * fetch until empty; with `release`, each batch is released once handled (its buffers go
 * back to the shard worker for the next reads), as a processor done with a batch would.
 */
async function runFetchDrain(ctx, release = false) {
  const { wal, verifyAll } = ctx;
  const name = release ? 'fetch-release-keep' : 'fetch-drain-keep';
  const topic = release ? RELEASE_TOPIC : FETCH_TOPIC;
  let n = 0;
  let bytes = 0;
  let calls = 0;
  let bad = null;
  const fsyncs0 = fsyncsOf(wal);
  const files0 = countFiles(ctx.walDir);
  const t0 = performance.now();
  for (;;) {
    const batch = await wal.fetch(topic, { maxBytes: cfg.readBytes, maxEntries: MAX_FETCH_ENTRIES });
    const len = batch.length;
    if (len === 0) break;
    calls++;
    // Per entry: the offset sequence and the byte count, as the batchRead scenarios do, read
    // from the batch's table (no Entry, no Buffer view per entry).
    for (let k = 0; k < len; k++) {
      const off = batch.offset(k);
      if (off !== n && bad === null) bad = `entry #${n} has offset ${off}`;
      n++;
      if (verifyAll && bad === null && !batch.payload(k).equals(payloads[off])) bad = `entry ${off}: bytes differ from the payload`;
    }
    bytes += batch.byteLength;
    const k = (calls * 7919) % len;
    if (bad === null && !batch.payload(k).equals(payloads[batch.offset(k)])) bad = `entry ${batch.offset(k)}: bytes differ from the payload`;
    if (release) batch.release();
  }
  return drainRow(ctx, name, { n, bytes, calls, bad, t0, fsyncs0, files0, keep: true });
}

async function runIterateDrain(ctx) {
  const { wal, n: expected, verifyAll, round } = ctx;
  const name = 'iterate-drain';
  let n = 0;
  let bytes = 0;
  let bad = null;
  const t0 = performance.now();
  for await (const e of wal.iterate(ITER_TOPIC, 0)) {
    if (e.offset !== n && bad === null) bad = `entry #${n} has offset ${e.offset}`;
    if ((verifyAll || n % 2003 === 0) && bad === null && !e.data.equals(payloads[e.offset])) bad = `entry ${e.offset}: bytes differ from the payload`;
    n++;
    bytes += e.data.length;
  }
  const seconds = (performance.now() - t0) / 1000;
  if (bad !== null) problem(name, round, bad);
  if (n !== expected) problem(name, round, `iterated ${n} entries, expected ${expected}`);
  if (bytes !== ctx.bytes) problem(name, round, `iterated ${bytes} payload bytes, expected ${ctx.bytes}`);
  return throughputRow(n, bytes, seconds);
}

async function runBareRead(ctx) {
  const fd = fs.openSync(ctx.barePath, 'r');
  const buf = Buffer.allocUnsafeSlow(CHUNK_BYTES);
  try {
    let total = 0;
    let calls = 0;
    const t0 = performance.now();
    for (;;) {
      const got = fs.readSync(fd, buf, 0, CHUNK_BYTES, total);
      if (got === 0) break;
      total += got;
      calls++;
    }
    const seconds = (performance.now() - t0) / 1000;
    if (total !== ctx.bytes) problem('bare-read-4MiB', ctx.round, `read ${total} bytes, expected ${ctx.bytes}`);
    // Entries/s as if the chunks held the same records (no parsing is done).
    return throughputRow(ctx.n, total, seconds, { calls });
  } finally {
    fs.closeSync(fd);
  }
}

async function runBareReadCrc(ctx) {
  const fd = fs.openSync(ctx.barePath, 'r');
  const buf = Buffer.allocUnsafeSlow(CHUNK_BYTES);
  try {
    const n = ctx.n;
    let i = 0;
    let pos = 0;
    let acc = 0;
    let calls = 0;
    const t0 = performance.now();
    while (i < n) {
      const got = fs.readSync(fd, buf, 0, CHUNK_BYTES, pos);
      if (got === 0) break;
      calls++;
      // Every whole record in the chunk; the next read starts at the first partial one.
      let at = 0;
      for (; i < n; i++) {
        const len = payloads[i].length;
        if (at + len > got) break;
        acc ^= crc32c(buf.subarray(at, at + len));
        at += len;
      }
      pos += at;
    }
    const seconds = (performance.now() - t0) / 1000;
    if (i !== n || pos !== ctx.bytes) problem('bare-read+crc32c', ctx.round, `checksummed ${i} records / ${pos} bytes, expected ${n} / ${ctx.bytes}`);
    return throughputRow(i, pos, seconds, { calls, crcXor: acc >>> 0 });
  } finally {
    fs.closeSync(fd);
  }
}

// ---------------------------------------------------------------------------------------------
// Strict group. ctx: { wal, barePath, cursorPath, n, bytes, verifyAll, round }

async function runReadNextStrict(ctx) {
  const { wal, n: total, verifyAll, round } = ctx;
  const seen = new Uint8Array(total);
  const latMs = [];
  let got = 0;
  let bytes = 0;
  let drained = false;
  let bad = null;
  const fsyncs0 = fsyncsOf(wal);
  const files0 = countFiles(ctx.walDir);
  const t0 = performance.now();
  const end = t0 + cfg.strictSeconds * 1000;
  const consumer = async () => {
    let last = -1;
    while (!drained && performance.now() < end) {
      const s = performance.now();
      const e = await wal.readNext(TOPIC, true);
      if (e === null) {
        drained = true;
        break;
      }
      latMs.push(performance.now() - s);
      if (bad === null) {
        if (!(e.offset >= 0 && e.offset < total)) bad = `offset ${e.offset} out of range`;
        else if (seen[e.offset]++ !== 0) bad = `entry ${e.offset} delivered twice`;
        else if (e.offset <= last) bad = `a consumer got offset ${e.offset} after ${last}`;
        else if ((verifyAll || e.offset % 97 === 0) && !e.data.equals(payloads[e.offset])) bad = `entry ${e.offset}: bytes differ from the payload`;
      }
      last = e.offset;
      got++;
      bytes += e.data.length;
    }
  };
  await Promise.all(Array.from({ length: cfg.consumers }, consumer));
  const seconds = (performance.now() - t0) / 1000;
  const fsyncs = fsyncsOf(wal) - fsyncs0;
  const filesDeleted = files0 - countFiles(ctx.walDir);
  if (bad !== null) problem(STRICT_NAME, round, bad);
  if (drained && got !== total) problem(STRICT_NAME, round, `drained after ${got} entries, expected ${total}`);
  if (drained && seen.some((c) => c !== 1)) problem(STRICT_NAME, round, `drained, but not every entry was delivered exactly once`);
  return throughputRow(got, bytes, seconds, {
    fsyncs,
    entriesPerFsync: got / fsyncs,
    drained: drained ? 1 : 0,
    consumers: cfg.consumers,
    filesDeleted,
    p50Ms: percentile(latMs, 50),
    p99Ms: percentile(latMs, 99),
    maxMs: max(latMs),
  });
}

async function runFdatasyncPerRead(ctx) {
  const { n: total, verifyAll, round } = ctx;
  const fd = fs.openSync(ctx.barePath, 'r');
  const cfd = fs.openSync(ctx.cursorPath, 'r+');
  const buf = Buffer.allocUnsafeSlow(64 * 1024);
  const cursor = Buffer.alloc(8);
  const base = payloadBytes.byteOffset;
  try {
    const latMs = [];
    let i = 0;
    let bytes = 0;
    let bad = null;
    const t0 = performance.now();
    const end = t0 + cfg.strictSeconds * 1000;
    let now = t0;
    while (i < total && now < end) {
      const p = payloads[i];
      const len = p.length;
      if (fs.readSync(fd, buf, 0, len, p.byteOffset - base) !== len && bad === null) bad = `short read of record ${i}`;
      if ((verifyAll || i % 97 === 0) && bad === null && buf.compare(p, 0, len, 0, len) !== 0) bad = `record ${i}: bytes differ`;
      cursor.writeUIntLE(i + 1, 0, 6);
      fs.writeSync(cfd, cursor, 0, 8, 0);
      fs.fdatasyncSync(cfd);
      i++;
      bytes += len;
      const t = performance.now();
      latMs.push(t - now);
      now = t;
    }
    const seconds = (now - t0) / 1000;
    if (bad !== null) problem('fdatasync-per-read', round, bad);
    return throughputRow(i, bytes, seconds, { fsyncs: i, entriesPerFsync: 1, drained: i === total ? 1 : 0, p50Ms: percentile(latMs, 50), p99Ms: percentile(latMs, 99), maxMs: max(latMs) });
  } finally {
    fs.closeSync(fd);
    fs.closeSync(cfd);
  }
}

// ---------------------------------------------------------------------------------------------
// Per-round worker warm-up (untimed): the same read paths, on the other topic.

async function warmDrain(wal) {
  let n = 0;
  for await (const e of wal.iterate(WARM_TOPIC, 0)) n += e.offset >= 0 ? 1 : 0;
  for (;;) {
    const b = await wal.batchRead(WARM_TOPIC, cfg.readBytes, true);
    if (b.length === 0) break;
    n += b.length;
  }
  return n;
}

async function warmStrict(wal) {
  let n = 0;
  const consumer = async () => {
    while ((await wal.readNext(WARM_TOPIC, true)) !== null) n++;
  };
  await Promise.all(Array.from({ length: cfg.consumers }, consumer));
  return n;
}

// ---------------------------------------------------------------------------------------------
// Groups

const GROUPS = [
  {
    name: 'drain',
    warm: warmDrain,
    scenarios: [
      { name: 'batchRead-drain', run: (ctx) => runBatchReadDrain(ctx, TOPIC, 'batchRead-drain') },
      { name: 'batchRead-drain-keep', run: (ctx) => runBatchReadDrain(ctx, KEEP_TOPIC, 'batchRead-drain-keep') },
      { name: 'fetch-drain-keep', run: (ctx) => runFetchDrain(ctx) },
      { name: 'fetch-release-keep', run: (ctx) => runFetchDrain(ctx, true) },
      { name: 'iterate-drain', run: runIterateDrain },
      { name: 'bare-read-4MiB', run: runBareRead },
      ...(crc32c ? [{ name: 'bare-read+crc32c', run: runBareReadCrc }] : []),
    ],
    async setup(dir, n) {
      const walDir = path.join(dir, 'wal');
      const wal = await Walrus.open({ dir: walDir, fsync: FsyncSchedule.NoFsync, shards: 1, consistency: ReadConsistency.atLeastOnce(PERSIST_EVERY) });
      // Order matters: segments are deleted oldest first once every block in them is
      // consumed. TOPIC comes right after the (consumed) warm-up topic, so batchRead-drain
      // deletes its segments as it goes, as any consumer would. ITER_TOPIC, never consumed,
      // comes next: its entries stay for iterate-drain whatever the order of the scenarios,
      // and they keep every later segment, so draining KEEP_TOPIC (last) deletes nothing:
      // batchRead-drain-keep is the read path alone.
      await appendFirst(wal, Math.min(cfg.workerWarmup, n), WARM_TOPIC);
      await appendFirst(wal, n, TOPIC);
      await appendFirst(wal, n, ITER_TOPIC);
      await appendFirst(wal, n, KEEP_TOPIC);
      await appendFirst(wal, n, FETCH_TOPIC);
      await appendFirst(wal, n, RELEASE_TOPIC);
      await wal.flush();
      await wal.sync(); // untimed: no writeback of this data competes with the reads
      const barePath = path.join(dir, 'bare.dat');
      writeBareFile(barePath, n);
      return { wal, walDir, barePath };
    },
  },
  {
    name: 'strict',
    warm: warmStrict,
    scenarios: [
      { name: STRICT_NAME, run: runReadNextStrict },
      { name: 'fdatasync-per-read', run: runFdatasyncPerRead },
    ],
    async setup(dir, n) {
      const walDir = path.join(dir, 'wal');
      const wal = await Walrus.open({ dir: walDir, fsync: FsyncSchedule.NoFsync, shards: 1, consistency: ReadConsistency.StrictlyAtOnce });
      await appendFirst(wal, Math.min(cfg.workerWarmup, 2_000, n), WARM_TOPIC);
      await appendFirst(wal, n);
      await wal.flush();
      await wal.sync();
      const barePath = path.join(dir, 'bare.dat');
      writeBareFile(barePath, n);
      // The cursor file has its final size before the clock starts: each fdatasync then
      // carries data only, no size change (the cheapest case for the naive consumer).
      const cursorPath = path.join(dir, 'cursor');
      const cfd = fs.openSync(cursorPath, 'w');
      fs.writeSync(cfd, Buffer.alloc(8));
      fs.fsyncSync(cfd);
      fs.closeSync(cfd);
      return { wal, walDir, barePath, cursorPath };
    },
  },
];

function isSelected(name) {
  if (cfg.only && !cfg.only.has(name)) return false;
  if (cfg.skip && cfg.skip.has(name)) return false;
  return true;
}

const plan = GROUPS.map((g) => ({ ...g, scenarios: g.scenarios.filter((s) => isSelected(s.name)) })).filter((g) => g.scenarios.length > 0);
if (plan.length === 0) {
  const known = GROUPS.flatMap((g) => g.scenarios.map((s) => s.name));
  throw new Error(`no scenario selected; known: ${known.join(', ')}`);
}

/** Runs one round of a group on `n` entries; returns its rows. */
async function runGroup(group, n, round, label, verifyAll) {
  const dir = tmp.freshDir(group.name);
  let wal = null;
  const rows = [];
  try {
    progress(`[${label}] ${group.name}: writing ${fmtInt(n)} entries (not timed) ...`);
    const ctx = await group.setup(dir, n);
    wal = ctx.wal;
    Object.assign(ctx, { n, bytes: bytesOf(n), verifyAll, round });
    if (cfg.workerWarmup > 0) {
      progress(`[${label}] ${group.name}: warming the shard worker on topic '${WARM_TOPIC}' (not timed) ...`);
      await group.warm(wal);
    }
    fsyncDir(dir);
    await waitQuiet(inFlight, 1000);
    // Rotate the order from round to round so that no scenario always goes first.
    const k = round % group.scenarios.length;
    const order = [...group.scenarios.slice(k), ...group.scenarios.slice(0, k)];
    for (const s of order) {
      progress(`[${label}] ${s.name} ...`);
      const m0 = process.hrtime.bigint();
      const row = await s.run(ctx);
      markRegion(s.name, round, m0);
      row.scenario = s.name;
      row.run = round;
      rows.push(row);
      const extra = row.fsyncs !== undefined ? `, ${fmtInt(row.fsyncs)} fsyncs (${fmtNum(row.entriesPerFsync, 1)} entries/fsync)` : '';
      progress(`[${label}] ${s.name}: ${fmtInt(row.entriesPerSec)} entries/s, ${fmtNum(row.mbPerSec, 1)} MB/s${extra}`);
      await waitQuiet(inFlight, 300);
    }
    if (cfg.printStats) process.stderr.write(`\n${group.name} wal.stats(): ${JSON.stringify(wal.stats())}\n`);
    await wal.close();
    return rows;
  } finally {
    if (wal) await wal.close().catch(() => {});
    await removeAndSettle(dir);
  }
}

// ---------------------------------------------------------------------------------------------
// Main

const rows = [];
const startedAt = new Date();

async function main() {
  const io = await probeIo(tmp.freshDir('probe'));
  const lines = [
    ...machineLines('walrus-ts read benchmark', io, tmp.root),
    `  payloads: 500-1000 B random (generated in ${genSeconds.toFixed(1)} s, not measured); drain group ${fmtInt(cfg.entries)} entries (${(bytesOf(cfg.entries) / MB).toFixed(1)} MB), strict group ${fmtInt(cfg.strictEntries)} entries`,
    `  runs    : ${cfg.runs} interleaved rounds (order rotated per round), medians reported; strict budget ${cfg.strictSeconds} s${QUICK ? ' (BENCH_QUICK)' : ''}${crc32c ? '' : '; @node-rs/crc32 not loadable: bare-read+crc32c skipped'}`,
    `  walrus  : shards 1, fsync NoFsync; data written + synced before the clock starts (page cache warm); ` +
      `${cfg.workerWarmup > 0 ? `each round first drains a ${fmtInt(cfg.workerWarmup)}-entry (strict: ${fmtInt(Math.min(cfg.workerWarmup, 2_000))}) '${WARM_TOPIC}' topic untimed (fresh worker per round); ` : 'no per-round worker warm-up (cold worker); '}` +
      `drain: batchRead maxBytes ${fmtInt(cfg.readBytes)}, atLeastOnce(${fmtInt(PERSIST_EVERY)}); strict: StrictlyAtOnce, ${cfg.consumers} consumers`,
  ];
  console.log(lines.join('\n'));
  console.log('');

  if (cfg.warmup) {
    // Untimed: JIT for the loops and the addon's first calls; every byte of every read is checked.
    for (const g of plan) await runGroup(g, Math.min(g.name === 'strict' ? WARMUP_STRICT : WARMUP_ENTRIES, g.name === 'strict' ? cfg.strictEntries : cfg.entries), 0, 'warm-up', true);
  }
  for (let round = 1; round <= cfg.runs; round++) {
    for (const g of plan) {
      rows.push(...(await runGroup(g, g.name === 'strict' ? cfg.strictEntries : cfg.entries, round, `round ${round}/${cfg.runs}`, false)));
    }
  }
  progressDone();
  report();
}

function report() {
  const order = GROUPS.flatMap((g) => g.scenarios.map((s) => s.name));
  const names = [...new Set(rows.map((r) => r.scenario))].sort((x, y) => order.indexOf(x) - order.indexOf(y));
  const by = (name) => rows.filter((r) => r.scenario === name);
  const med = (name, field) => median(by(name).map((r) => r[field]));

  const tputRows = [];
  for (const n of names) {
    const rs = by(n);
    const eps = rs.map((r) => r.entriesPerSec);
    let notes = '';
    if (n === 'batchRead-drain' || n === 'batchRead-drain-keep' || n === 'fetch-drain-keep') {
      notes = `${fmtInt(med(n, 'calls'))} calls/run, ${fmtInt(med(n, 'entriesPerCall'))} entries/call; consumed segment files deleted meanwhile: ${fmtInt(med(n, 'filesDeleted'))}/run (${fmtInt(med(n, 'fsyncs'))} fsyncs)`;
    }
    else if (n === STRICT_NAME || n === 'fdatasync-per-read') {
      notes = `${fmtInt(med(n, 'fsyncs'))} fsyncs/run, ${fmtNum(med(n, 'entriesPerFsync'), 1)} entries/fsync; per read p50 ${fmtNum(med(n, 'p50Ms'), 3)} ms, p99 ${fmtNum(med(n, 'p99Ms'), 3)} ms`;
      const undrained = rs.filter((r) => !r.drained).length;
      if (undrained > 0) notes += `; budget ended ${undrained} of ${rs.length} runs before the end`;
    }
    tputRows.push([n, fmtInt(median(eps)), fmtNum(med(n, 'mbPerSec'), 1), `${fmtInt(min(eps))} .. ${fmtInt(max(eps))}`, fmtNum(med(n, 'seconds'), 3), fmtInt(med(n, 'entries')), notes]);
  }
  console.log('Throughput (median of runs; MB = 10^6 payload bytes; bare rows count the same records without parsing them)');
  console.log(table(['scenario', 'entries/s', 'MB/s', 'min .. max entries/s', 'seconds', 'entries', 'notes'], tputRows, new Set([1, 2, 3, 4, 5])));
  console.log('');

  const paired = (a, b) => {
    const out = [];
    for (let r = 1; r <= cfg.runs; r++) {
      const x = rows.find((q) => q.scenario === a && q.run === r)?.entriesPerSec;
      const y = rows.find((q) => q.scenario === b && q.run === r)?.entriesPerSec;
      if (x !== undefined && y !== undefined) out.push(x / y);
    }
    return median(out);
  };
  const ratioDefs = [
    ['batchRead-drain / batchRead-drain-keep', 'batchRead-drain', 'batchRead-drain-keep'],
    ['batchRead-drain-keep / bare-read-4MiB', 'batchRead-drain-keep', 'bare-read-4MiB'],
    ['batchRead-drain-keep / bare-read+crc32c', 'batchRead-drain-keep', 'bare-read+crc32c'],
    ['batchRead-drain / bare-read+crc32c', 'batchRead-drain', 'bare-read+crc32c'],
    ['iterate-drain / batchRead-drain-keep', 'iterate-drain', 'batchRead-drain-keep'],
    ['fetch-drain-keep / batchRead-drain-keep', 'fetch-drain-keep', 'batchRead-drain-keep'],
    ['fetch-drain-keep / bare-read+crc32c', 'fetch-drain-keep', 'bare-read+crc32c'],
    [`${STRICT_NAME} / fdatasync-per-read`, STRICT_NAME, 'fdatasync-per-read'],
  ];
  const ratioRows = [];
  for (const n of ['batchRead-drain', 'batchRead-drain-keep']) {
    if (!names.includes(n)) continue;
    const v = med(n, 'entriesPerSec');
    ratioRows.push([`${n} entries/s`, fmtInt(v), '', '>= 1,500,000', v >= 1_500_000 ? 'PASS' : 'MISS']);
  }
  for (const [label, a, b] of ratioDefs) {
    if (!names.includes(a) || !names.includes(b)) continue;
    const r = med(a, 'entriesPerSec') / med(b, 'entriesPerSec');
    const p = paired(a, b);
    ratioRows.push([label, fmtNum(r, r >= 10 ? 1 : 3), fmtNum(p, p >= 10 ? 1 : 3), '', '']);
  }
  if (names.includes(STRICT_NAME)) {
    ratioRows.push([`${STRICT_NAME} entries per fdatasync`, fmtNum(med(STRICT_NAME, 'entriesPerFsync'), 1), '', `<= ${cfg.consumers}`, '']);
  }
  if (ratioRows.length > 0) {
    console.log('Ratios (entries/s, from the medians; "paired" = median of the per-round ratios)');
    console.log(table(['ratio', 'value', 'paired', 'target', ''], ratioRows, new Set([1, 2])));
    console.log('');
  }

  if (problems.length > 0) {
    console.log(`PROBLEMS (${problems.length}): reads returned wrong data or counts`);
    for (const p of problems) console.log(`  ${p}`);
    console.log('');
    process.exitCode = 1;
  } else {
    console.log('Checks: every drain returned every entry once, in offset order, with the expected byte count; sampled payloads (all in the warm-up round) matched byte for byte.');
  }

  writeResultsCsv(resultsDir(), 'read', [
    'scenario', 'run', 'entries', 'payloadBytes', 'seconds', 'entriesPerSec', 'mbPerSec',
    'calls', 'entriesPerCall', 'fsyncs', 'entriesPerFsync', 'filesDeleted', 'consumers', 'drained', 'p50Ms', 'p99Ms', 'maxMs',
  ], rows, { quick: QUICK, startedAt });
}

await runBench(main, tmp);
