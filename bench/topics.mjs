// Many small topics: disk, reopen time, fds and memory of a log that holds one small record in
// each of N topics, and what consuming them all does to it.
//
//   node bench/topics.mjs                    # N = 10000 and 100000, default options
//   BENCH_TOPICS=100000 node bench/topics.mjs
//   BENCH_DIR=/dev/shm node bench/topics.mjs # where the logs go (default: os.tmpdir())
//   BENCH_OPTIONS='{"blockBytes":4096}' node bench/topics.mjs
//
// For each N: append one 100-byte record to each of N topics, sync, close (untimed); reopen
// (timed: Walrus.open of the cleanly closed log), count the disk (allocated blocks of every
// file, as `du` does), the process's fds and RSS; consume every topic with readNext; close and
// count the disk again; reopen once more (timed). Prints one JSON line per N.
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FsyncSchedule, ReadConsistency, Walrus } from '../dist/index.js';

const counts = (process.env.BENCH_TOPICS ?? '10000,100000').split(',').map(Number);
const parent = process.env.BENCH_DIR ?? tmpdir();
const extra = JSON.parse(process.env.BENCH_OPTIONS ?? '{}');

function diskBytes(dir) {
  let n = 0;
  let files = 0;
  for (const name of readdirSync(dir)) {
    const st = statSync(join(dir, name));
    if (st.isFile()) {
      n += st.blocks * 512;
      files++;
    }
  }
  return { bytes: n, files };
}

function fds() {
  try {
    return readdirSync('/proc/self/fd').length;
  } catch {
    return -1;
  }
}

const mib = (b) => Math.round((b / 2 ** 20) * 10) / 10;

async function run(n) {
  const dir = mkdtempSync(join(parent, 'walrus-topics-'));
  const opts = { dir, fsync: FsyncSchedule.NoFsync, consistency: ReadConsistency.atLeastOnce(1000), ...extra };
  const payload = Buffer.alloc(100, 0x61);
  try {
    let wal = await Walrus.open(opts);
    let t0 = performance.now();
    for (let i = 0; i < n; i++) {
      wal.append(`topic-${i}`, payload);
      if (i % 1000 === 999) await wal.drain();
    }
    await wal.sync();
    const appendMs = performance.now() - t0;
    await wal.close();
    const written = diskBytes(dir);

    // CPU time of every thread of the process too: on a shared machine the wall time of a
    // reopen says as much about the neighbours as about walrus-ts.
    let cpu0 = process.cpuUsage();
    t0 = performance.now();
    wal = await Walrus.open(opts);
    const reopenMs = performance.now() - t0;
    const reopenCpu = process.cpuUsage(cpu0);
    const openFds = fds();
    const rss = process.memoryUsage().rss;

    t0 = performance.now();
    let read = 0;
    for (let i = 0; i < n; i++) {
      const e = await wal.readNext(`topic-${i}`);
      if (e === null || e.data.length !== 100) throw new Error(`topic-${i}: entry missing`);
      read++;
    }
    await wal.sync();
    const consumeMs = performance.now() - t0;
    const consumedFds = fds();
    await wal.close();
    const consumed = diskBytes(dir);

    cpu0 = process.cpuUsage();
    t0 = performance.now();
    wal = await Walrus.open(opts);
    const reopen2Ms = performance.now() - t0;
    const reopen2Cpu = process.cpuUsage(cpu0);
    await wal.close();

    return {
      topics: n,
      options: extra,
      appendMs: Math.round(appendMs),
      diskMiB: mib(written.bytes),
      files: written.files,
      diskPerTopicBytes: Math.round(written.bytes / n),
      reopenMs: Math.round(reopenMs),
      reopenCpuMs: { user: Math.round(reopenCpu.user / 1000), sys: Math.round(reopenCpu.system / 1000) },
      fdsAfterOpen: openFds,
      rssMiB: mib(rss),
      consumeMs: Math.round(consumeMs),
      read,
      fdsAfterConsume: consumedFds,
      diskAfterConsumeMiB: mib(consumed.bytes),
      filesAfterConsume: consumed.files,
      reopenAfterConsumeMs: Math.round(reopen2Ms),
      reopenAfterConsumeCpuMs: { user: Math.round(reopen2Cpu.user / 1000), sys: Math.round(reopen2Cpu.system / 1000) },
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

for (const n of counts) console.log(JSON.stringify(await run(n)));
