// Producer threads (issue 14): 1, 2, 4, 8 worker threads append through Walrus.attach to one
// log, each to its own topic ("own") or all to one topic ("shared"), without fsync (each
// thread flush()es at its end) and durable (each thread sync()s after every 64 appends),
// against the same records written from the same threads with node:fs (one writeSync per
// record into a file per thread; durable: an fdatasync after every 64), side by side, medians
// of several rounds. Reports entries/s in all and per thread.
//
//   npm run bench:threads
//   node bench/threads.mjs --threads=1,2,4 --entries=50000 --runs=3
//
// Knobs (flag or environment):
//   --threads / BENCH_THREADS      thread counts (default 1,2,4,8)
//   --entries / BENCH_ENTRIES      appends per thread without fsync (default 100000);
//                                  durable runs do a tenth
//   --runs / BENCH_RUNS            rounds, medians reported (default 3)
//   --dir / BENCH_DIR              parent of the temporary directory (default os.tmpdir())
// Output: a table on stdout, bench/results/threads-<time>.csv and .svg/.png.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Worker, isMainThread, workerData, parentPort } from 'node:worker_threads';
import { FsyncSchedule, Walrus } from '../dist/index.js';
import { makePayloads } from './lib/payloads.mjs';
import { listArg, numArg, rawArg } from './lib/config.mjs';
import { median } from './lib/stats.mjs';
import { fmtInt, fmtNum, machineLines, progress, progressDone, resultsDir, runBench, stamp, table, writeResultsCsv } from './lib/report.mjs';
import { loadCharting, writeChart } from './lib/charts.mjs';
import { ensurePeers } from './setup.mjs';

const DURABLE_EVERY = 64;

/** A thread's run: wait for the start signal, write `count` records, report its own time. */
async function threadMain() {
  const { system, handle, topic, file, count, durable, go, seed } = workerData;
  const { payloads } = makePayloads(Math.min(count, 8192), { seed });
  const signal = new Int32Array(go);
  let write;
  let finish;
  if (system === 'walrus') {
    const p = Walrus.attach(handle);
    write = async (i) => {
      p.append(topic, payloads[i % payloads.length]);
      if (durable && i % DURABLE_EVERY === DURABLE_EVERY - 1) await p.sync();
    };
    finish = async () => {
      await (durable ? p.sync() : p.flush());
      await p.close();
    };
  } else {
    const fd = fs.openSync(file, 'w');
    write = async (i) => {
      fs.writeSync(fd, payloads[i % payloads.length]);
      if (durable && i % DURABLE_EVERY === DURABLE_EVERY - 1) fs.fdatasyncSync(fd);
    };
    finish = async () => {
      if (durable) fs.fdatasyncSync(fd);
      fs.closeSync(fd);
    };
  }
  Atomics.add(signal, 1, 1);
  Atomics.notify(signal, 1);
  Atomics.wait(signal, 0, 0);
  const t0 = performance.now();
  for (let i = 0; i < count; i++) await write(i);
  await finish();
  parentPort.postMessage({ ms: performance.now() - t0 });
}

/** One run of `threads` threads of `system`; returns entries/s over the whole run (start signal to the last thread's end). */
async function run(root, system, threads, layout, durable, count) {
  const dir = fs.mkdtempSync(path.join(root, `${system}-`));
  const wal = system === 'walrus' ? await Walrus.open({ dir, fsync: FsyncSchedule.NoFsync }) : null;
  const handle = wal?.producerHandle();
  const go = new SharedArrayBuffer(8);
  const signal = new Int32Array(go);
  const workers = Array.from({ length: threads }, (_, i) =>
    new Worker(new URL(import.meta.url), {
      workerData: { system, handle, topic: layout === 'shared' ? 'shared' : `own-${i}`, file: path.join(dir, `thread-${i}.log`), count, durable, go, seed: 0x5eed + i },
    }),
  );
  const done = workers.map((w) => new Promise((resolve, reject) => (w.once('message', resolve), w.once('error', reject))));
  while (Atomics.load(signal, 1) < threads) await new Promise((r) => setTimeout(r, 5));
  const t0 = performance.now();
  Atomics.store(signal, 0, 1);
  Atomics.notify(signal, 0);
  await Promise.all(done);
  const seconds = (performance.now() - t0) / 1000;
  await wal?.close();
  fs.rmSync(dir, { recursive: true, force: true });
  return (threads * count) / seconds;
}

async function main() {
  const threadCounts = [...(listArg('threads', 'BENCH_THREADS') ?? ['1', '2', '4', '8'])].map(Number);
  const entries = Math.floor(numArg('entries', 'BENCH_ENTRIES', 100_000));
  const runs = Math.floor(numArg('runs', 'BENCH_RUNS', 3));
  const root = fs.mkdtempSync(path.join(rawArg('dir', 'BENCH_DIR') ?? os.tmpdir(), 'walrus-threads-'));
  const startedAt = new Date();
  try {
    await measure(root, threadCounts, entries, runs, startedAt);
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
}

async function measure(root, threadCounts, entries, runs, startedAt) {
  for (const line of machineLines('Producer threads: Walrus.attach against node:fs writeSync from the same threads', 'auto', root)) console.log(line);
  const rows = [];
  for (const durable of [false, true]) {
    const count = durable ? Math.max(DURABLE_EVERY, Math.floor(entries / 10)) : entries;
    for (const layout of ['own', 'shared']) {
      for (const threads of threadCounts) {
        const w = [];
        const b = [];
        for (let r = 0; r < runs; r++) {
          progress(`${durable ? 'durable' : 'no fsync'}, ${layout}, ${threads} thread(s), round ${r + 1}/${runs} ...`);
          // Side by side, alternating which goes first.
          if (r % 2 === 0) {
            w.push(await run(root, 'walrus', threads, layout, durable, count));
            b.push(await run(root, 'node:fs', threads, layout, durable, count));
          } else {
            b.push(await run(root, 'node:fs', threads, layout, durable, count));
            w.push(await run(root, 'walrus', threads, layout, durable, count));
          }
        }
        const walrus = median(w);
        const bare = median(b);
        rows.push({ fsync: durable ? 'durable' : 'none', layout, threads, entriesPerThread: count, walrus, walrusPerThread: walrus / threads, bare, barePerThread: bare / threads, ratio: walrus / bare, walrusRuns: w.map(Math.round).join(' '), bareRuns: b.map(Math.round).join(' ') });
      }
    }
  }
  progressDone();
  console.log(
    table(
      ['fsync', 'topics', 'threads', 'walrus entries/s', 'per thread', 'node:fs entries/s', 'per thread', 'walrus/node:fs'],
      rows.map((r) => [r.fsync, r.layout, String(r.threads), fmtInt(r.walrus), fmtInt(r.walrusPerThread), fmtInt(r.bare), fmtInt(r.barePerThread), `${fmtNum(r.ratio)}x`]),
      new Set([2, 3, 4, 5, 6, 7]),
    ),
  );
  const one = rows.find((r) => r.fsync === 'none' && r.layout === 'own' && r.threads === 1);
  if (one) console.log(`One producer thread, no fsync: ${fmtNum(1e9 / one.walrus, 0)} ns per append (wall), node:fs ${fmtNum(1e9 / one.bare, 0)} ns per writeSync.`);
  const dir = resultsDir();
  writeResultsCsv(dir, 'threads', Object.keys(rows[0]), rows, { quick: false, startedAt });
  const charting = await loadCharting();
  if (charting.error) {
    console.log(`chart skipped: ${charting.error}`);
  } else {
    const values = rows.flatMap((r) => [
      { panel: `${r.fsync === 'none' ? 'no fsync' : 'durable'}, ${r.layout} topic${r.layout === 'own' ? 's' : ''}`, threads: r.threads, system: 'walrus-ts', entriesPerSec: r.walrus },
      { panel: `${r.fsync === 'none' ? 'no fsync' : 'durable'}, ${r.layout} topic${r.layout === 'own' ? 's' : ''}`, threads: r.threads, system: 'node:fs writeSync', entriesPerSec: r.bare },
    ]);
    const spec = {
      title: `Producer threads (nproc ${os.availableParallelism()}), medians of ${runs}`,
      data: { values },
      facet: { field: 'panel', type: 'nominal', title: null },
      columns: 2,
      spec: {
        width: 260,
        height: 180,
        mark: { type: 'line', point: true },
        encoding: {
          x: { field: 'threads', type: 'ordinal', title: 'threads' },
          y: { field: 'entriesPerSec', type: 'quantitative', title: 'entries/s (all threads)' },
          color: { field: 'system', type: 'nominal', title: null },
        },
      },
      resolve: { scale: { y: 'independent' } },
    };
    const out = await writeChart(charting, spec, path.join(dir, `threads-${stamp(startedAt)}`));
    console.log(`chart: ${out.map((p) => path.relative(process.cwd(), p)).join(', ')}`);
  }
}

if (isMainThread) {
  ensurePeers(); // the chart renderer lives in the bench package
  await runBench(main, { cleanup: () => {} });
} else await threadMain();
