// Preallocation before/after, side by side in one run (docs/BENCHMARKS.md, "Preallocation in
// steps"): two builds of walrus-ts, A and B (each a directory holding dist/ and build/), are
// measured alternately, three rounds, medians reported. Per build and round, on a fresh log:
// single-producer durable latency (appendAndSync one at a time: p50 and p99, microseconds),
// durable throughput (appendAndSync, 256 in flight, entries/s) and plain append throughput
// (NoFsync, then one sync, entries/s). 750-byte payloads.
//
//   node bench/prealloc.mjs <build A> <build B> [data dir]
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const [a, b, root = tmpdir()] = process.argv.slice(2);
if (!a || !b) {
  console.error('usage: node bench/prealloc.mjs <build A> <build B> [data dir]');
  process.exit(2);
}
const ROUNDS = 3;
const LATENCY_N = 3000;
const DURABLE_N = 60_000;
const PLAIN_N = 300_000;
const payload = Buffer.alloc(750, 7);

async function load(dir) {
  return import(pathToFileURL(join(resolve(dir), 'dist', 'index.js')).href);
}

async function withLog(mod, fsync, fn) {
  const dir = mkdtempSync(join(root, 'walrus-prealloc-'));
  const wal = await mod.Walrus.open({ dir, shards: 1, fsync });
  try {
    return await fn(wal);
  } finally {
    await wal.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function latency(mod) {
  return withLog(mod, mod.FsyncSchedule.NoFsync, async (wal) => {
    const t = [];
    for (let i = 0; i < LATENCY_N; i++) {
      const s = process.hrtime.bigint();
      await wal.appendAndSync('t', payload);
      t.push(Number(process.hrtime.bigint() - s) / 1000);
    }
    t.sort((x, y) => x - y);
    return { p50: t[Math.floor(t.length / 2)], p99: t[Math.floor(t.length * 0.99)] };
  });
}

async function durable(mod) {
  return withLog(mod, mod.FsyncSchedule.NoFsync, async (wal) => {
    const s = performance.now();
    const inflight = new Set();
    for (let i = 0; i < DURABLE_N; i++) {
      const p = wal.appendAndSync('t', payload).then(() => inflight.delete(p));
      inflight.add(p);
      if (inflight.size >= 256) await Promise.race(inflight);
    }
    await Promise.all(inflight);
    return DURABLE_N / ((performance.now() - s) / 1000);
  });
}

async function plain(mod) {
  return withLog(mod, mod.FsyncSchedule.NoFsync, async (wal) => {
    const s = performance.now();
    for (let i = 0; i < PLAIN_N; i++) {
      try {
        wal.append('t', payload);
      } catch (err) {
        if (err.code !== 'ERR_WALRUS_BACKPRESSURE') throw err;
        await wal.drain();
        i--;
      }
    }
    await wal.sync();
    return PLAIN_N / ((performance.now() - s) / 1000);
  });
}

for (const ev of ["uncaughtException", "unhandledRejection"]) process.on(ev, (e) => { console.error(ev, e?.code, e?.message, e?.stack); process.exit(1); });
const median = (xs) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];
const builds = [
  { name: 'A', mod: await load(a), runs: [] },
  { name: 'B', mod: await load(b), runs: [] },
];
for (let r = 0; r < ROUNDS; r++) {
  for (const bld of r % 2 === 0 ? builds : [...builds].reverse()) {
    const lat = await latency(bld.mod);
    bld.runs.push({ p50: lat.p50, p99: lat.p99, durable: await durable(bld.mod), plain: await plain(bld.mod) });
  }
}
console.log('build,p50_us,p99_us,durable_per_s,plain_per_s');
for (const bld of builds) {
  const m = (k) => median(bld.runs.map((x) => x[k]));
  console.log(`${bld.name},${m('p50').toFixed(1)},${m('p99').toFixed(1)},${m('durable').toFixed(0)},${m('plain').toFixed(0)}`);
}
