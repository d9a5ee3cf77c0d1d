// Many topics: the time to reopen a log of N topics (one small record each), with what the
// log costs in disk, descriptors and memory. The bounds on those are asserted by
// test/scale.test.ts; times are measured here, never asserted (issue 11's target for 100,000
// topics: reopen under 2 s).
//
//   npm run bench:many-topics                          # build, then 100,000 topics, 3 reopens
//   node bench/many-topics.mjs --topics=20000          # against the current dist/
//   node bench/many-topics.mjs --block-bytes=4096      # the shape of issue 11's report
//
// One log is written (untimed apart from its own row), closed, then reopened BENCH_RUNS times;
// each reopen is timed to the resolution of Walrus.open, then to the first read answered, and
// the last reopen also consumes every topic (readNext, 64 in flight) and waits until the
// consumed segments are deleted.
//
// Knobs (flag or environment):
//   --topics / BENCH_TOPICS            topics (default 100000)
//   --record-bytes / BENCH_RECORD_BYTES  payload of each topic's record (default 100)
//   --shards / BENCH_SHARDS            shards (default 2)
//   --backend / BENCH_BACKEND          fd or mmap (default fd)
//   --block-bytes / BENCH_BLOCK_BYTES  blockBytes (default: the library's)
//   --runs / BENCH_RUNS                reopens (default 3)
//   --max-disk-mib / BENCH_MAX_DISK_MIB  stop appending once the log takes more (default 4096):
//                                      a log that costs a block per topic would otherwise fill the disk
//   --dir / BENCH_DIR                  parent of the temporary directory (default os.tmpdir())
//
// Output: a table on stdout, one CSV row per step in bench/results/many-topics-*.csv.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Walrus, FsyncSchedule } from '../dist/index.js';
import { numArg, rawArg } from './lib/config.mjs';
import { appendRetry } from './lib/walrus.mjs';
import { fmtInt, fmtNum, machineLines, progress, progressDone, resultsDir, runBench, table, writeResultsCsv } from './lib/report.mjs';

const MiB = 1024 * 1024;
const cfg = {
  topics: Math.floor(numArg('topics', 'BENCH_TOPICS', 100_000)),
  recordBytes: Math.floor(numArg('record-bytes', 'BENCH_RECORD_BYTES', 100, 0)),
  shards: Math.floor(numArg('shards', 'BENCH_SHARDS', 2)),
  backend: rawArg('backend', 'BENCH_BACKEND') ?? 'fd',
  blockBytes: rawArg('block-bytes', 'BENCH_BLOCK_BYTES') === undefined ? undefined : Math.floor(numArg('block-bytes', 'BENCH_BLOCK_BYTES', 0)),
  runs: Math.floor(numArg('runs', 'BENCH_RUNS', 3)),
  maxDisk: numArg('max-disk-mib', 'BENCH_MAX_DISK_MIB', 4096) * MiB,
};
const parent = rawArg('dir', 'BENCH_DIR') ?? os.tmpdir();
const root = fs.mkdtempSync(path.join(parent, 'walrus-many-topics-'));
const tmp = { cleanup: () => fs.rmSync(root, { recursive: true, force: true }) };
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => (tmp.cleanup(), process.exit(130)));

const nameOf = (i) => `topic-${i}`;
const dataOf = (i) => Buffer.alloc(cfg.recordBytes, i & 0xff);

function diskBytes(dir) {
  let total = 0;
  for (const f of fs.readdirSync(dir)) {
    try {
      total += fs.statSync(path.join(dir, f)).blocks * 512;
    } catch (e) {
      if (e.code !== 'ENOENT') throw e;
    }
  }
  return total;
}

const openFds = () => fs.readdirSync('/proc/self/fd').length;

async function main() {
  const opts = { dir: root, shards: cfg.shards, backend: cfg.backend, fsync: FsyncSchedule.NoFsync, ...(cfg.blockBytes ? { blockBytes: cfg.blockBytes } : {}) };
  const fds0 = openFds();
  const rss0 = process.memoryUsage().rss;
  const rows = [];
  const row = (step, seconds, extra = {}) => {
    rows.push({ step, seconds, diskMiB: diskBytes(root) / MiB, fds: openFds() - fds0, rssMiB: (process.memoryUsage().rss - rss0) / MiB, ...extra });
  };

  let wal = await Walrus.open(opts);
  console.log(machineLines(`many topics: ${fmtInt(cfg.topics)} topics x ${cfg.recordBytes} B, ${cfg.shards} shards, backend ${cfg.backend}, blockBytes ${cfg.blockBytes ?? 'default'}`, wal.stats().io, root).join('\n'));
  let t0 = performance.now();
  let written = 0;
  for (; written < cfg.topics; written++) {
    await appendRetry(wal, nameOf(written), dataOf(written));
    if (written % 5000 === 4999) {
      await wal.flush();
      progress(`append: ${fmtInt(written + 1)} topics, ${fmtNum(diskBytes(root) / MiB, 1)} MiB`);
      if (diskBytes(root) > cfg.maxDisk) {
        written++;
        break;
      }
    }
  }
  await wal.sync();
  progressDone();
  row('append + sync', (performance.now() - t0) / 1000, { topics: written });
  if (written < cfg.topics) console.log(`stopped after ${fmtInt(written)} topics: the log took more than ${cfg.maxDisk / MiB} MiB`);
  await wal.close();

  for (let run = 1; run <= cfg.runs; run++) {
    t0 = performance.now();
    wal = await Walrus.open(opts);
    const opened = (performance.now() - t0) / 1000;
    const first = await wal.readNext(nameOf(written - 1), false);
    if (first?.offset !== 0) throw new Error('the last topic did not read back after reopen');
    row(`reopen ${run}`, opened, { topics: written, firstReadSeconds: (performance.now() - t0) / 1000 });
    if (run === cfg.runs) await consumeAll(wal, written, row);
    await wal.close();
  }
  console.log(
    table(
      ['step', 'seconds', 'first read s', 'disk MiB', '+fds', '+RSS MiB'],
      rows.map((r) => [r.step, fmtNum(r.seconds), r.firstReadSeconds === undefined ? '' : fmtNum(r.firstReadSeconds), fmtNum(r.diskMiB, 1), String(r.fds), fmtNum(r.rssMiB, 1)]),
      new Set([1, 2, 3, 4, 5]),
    ),
  );
  writeResultsCsv(resultsDir(), 'many-topics', ['step', 'topics', 'seconds', 'firstReadSeconds', 'diskMiB', 'fds', 'rssMiB'], rows, { quick: false, startedAt: new Date() });
}

/** Consumes every topic (64 reads in flight), then waits (at most 60 s) for the log to stop shrinking. */
async function consumeAll(wal, n, row) {
  const t0 = performance.now();
  let next = 0;
  const lane = async () => {
    while (next < n) {
      const i = next++;
      if ((await wal.readNext(nameOf(i)))?.offset !== 0) throw new Error(`topic ${i} did not read back`);
    }
  };
  await Promise.all(Array.from({ length: 64 }, lane));
  row('consume every topic', (performance.now() - t0) / 1000, { topics: n });
  const t1 = performance.now();
  let last = diskBytes(root);
  for (let quiet = 0; quiet < 10 && performance.now() - t1 < 60_000; ) {
    await new Promise((r) => setTimeout(r, 100));
    const now = diskBytes(root);
    quiet = now < last ? 0 : quiet + 1;
    last = now;
  }
  row('deletions (until 1 s without shrinking)', (performance.now() - t1) / 1000, { topics: n });
}

await runBench(main, tmp);
