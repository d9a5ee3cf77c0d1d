/**
 * Scale: 100,000 topics with one small record each, on the default block and segment sizes.
 * Bounds are counts and bytes, never time (reopen time is in bench/many-topics.mjs):
 * - disk (allocated blocks of the namespace directory) under 100 MiB (issue 11's target);
 * - open descriptors of the process: what the instance adds stays within FD_BOUND, which
 *   does not grow with the topic count (at most 64 per shard plus 16);
 * - resident memory: what each instance adds stays within RSS_BOUND (about 3.3 KiB per topic,
 *   see the constant); the instances after the first run in fresh processes
 *   (fixtures/scale-child.mjs), so each is measured from a process that held no other;
 * - consuming every topic gives most of the disk back (at most half of it is left);
 * - a clean reopen keeps every entry and every cursor.
 * On /dev/shm without fsync: durability is not the point here, and a RAM disk keeps the
 * test to seconds.
 *
 * Opt-in (`npm run test:scale`, WALRUS_TEST_SCALE=1: fd and mmap). Measured 2026-12-03, 2
 * shards, the worst step of an instance (consuming every topic, then the deletions), against
 * 320: Node 22 +285 to +296 MiB in the whole test (2 runs, fd and mmap), and +248 to +311 over
 * 6 runs of the consume phase alone (fixtures/scale-child.mjs from a copy of the appended log);
 * Node 26 +294 to +296 (1 run), +287 to +295 over 5 runs of the consume phase; Node 20 +218 to
 * +268 (5). Before the changes below, same consume phase: Node 22 +335 to +356 (3), Node 26
 * +315 to +324 (3), Node 20 +217 to +277 (8). Node 24 is over the bound, +320 to +341 (5; +324
 * to +336 before): its main thread's young generation grows to about 100 MiB while the reads
 * are in flight (about 30 on Node 22), which the worker-side changes do not touch. The test
 * takes about 20 s for both backends, so time is not what keeps it out of `npm test`: the
 * margin on Node 22 (9 MiB at the worst run seen, about 25 in most) and Node 24 do.
 * Where the growth is (Node 22, after consuming): the main thread's V8 heap (it peaks near 100
 * MiB while 64 reads are in flight, and freed pages stay pooled), each shard worker's V8 heap
 * (about 50 MiB, 20 of them live), and the worker threads' malloc arenas (about 20 MiB each
 * once recovery is done, a few more after consuming; glibc keeps what was freed). A worker
 * never returns to its event loop, so V8 never shrinks its heap when idle: what keeps it small
 * is garbage that is never promoted. Disk (62 MiB, 14 MiB once consumed) and descriptors (+13
 * to +17) are well inside their bounds on every version measured. What brought it this far: retention
 * retires a consumed current segment by the slots it frees, meta records included; the shard
 * workers' young generation is capped at 8 MiB; a topic's numbers live in a Float64Array row,
 * not in fields V8 boxes (workers/store/topic.ts: each worker's live heap after consuming fell
 * from 33.5 to 20.2 MiB); and a deletion encodes its snapshot of every topic straight from the
 * topics (meta.ts encodeSnapshot) and builds its set of touched topics once (about 45 MB of
 * arrays and sets per worker before, 12 to 15 MB of it alive long enough to be promoted).
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { FsyncSchedule, Walrus } from '../dist/index.js';
import { pseudoRandom, ramTempDir } from './helpers.js';

const MiB = 1024 * 1024;
const TOPICS = 100_000;
const SHARDS = 2;
const RECORD_BYTES = 100;
const DISK_BOUND = 100 * MiB;
/**
 * Proposed bound: a shard may keep up to 64 descriptors (segments, io_uring, its thread's
 * event loop), plus 16 for the instance (lock file, anything shared). An idle open of 2
 * shards adds 13 today; the engine before issue 11 held one per segment file (1,600 after
 * 100,000 topics on 4 KiB blocks, 3,200 while consuming them).
 */
const FD_BOUND = 64 * SHARDS + 16;
/**
 * Bound: 320 MiB for 100,000 topics, about 3.3 KiB per topic (a topic's state in the main
 * thread and in its shard: name, offsets, cursor, shared-record positions) over the two
 * worker isolates' ~25 MiB. The first proposal, 256 MiB, was written before the engine could
 * get this far; the first runs that did measured +240 MiB after the appends and +269 to
 * +282 MiB after a reopen in the same process (the closed instance's garbage not yet
 * collected), so the bound is set from those with ~15% headroom. Before issue 11's fixes, on
 * 4 KiB blocks: +370 MiB after the appends, +390 MiB after a reopen, +680 MiB while
 * consuming (a block per topic).
 */
const RSS_BOUND = 320 * MiB;

const nameOf = (i: number) => `topic-${i}-\u00FC\u{1F4E6}`;
const dataOf = (i: number) => pseudoRandom(i + 1, RECORD_BYTES);

/** Allocated bytes of the files in `dir` (a segment being deleted while listed counts 0). */
function diskBytes(dir: string): number {
  let total = 0;
  for (const f of readdirSync(dir)) {
    try {
      total += statSync(join(dir, f)).blocks * 512;
    } catch (e) {
      if ((e as { code?: string }).code !== 'ENOENT') throw e;
    }
  }
  return total;
}

const openFds = () => readdirSync('/proc/self/fd').length;

/**
 * A full collection before each RSS reading, so that the bound is on what the log keeps, not
 * on garbage the test's own reads left (100,000 readNext results) that V8 has not yet
 * collected. The flag makes `gc` available to contexts created after it is set.
 */
setFlagsFromString('--expose-gc');
const collectGarbage = runInNewContext('gc') as () => void;

interface Row {
  step: string;
  disk: number;
  fds: number;
  rss: number;
}

/** Disk, descriptors and RSS of the instance, checked against the bounds at each step. */
class Meter {
  readonly rows: string[] = [];
  private readonly fds0 = openFds();
  private readonly rss0 = (collectGarbage(), process.memoryUsage().rss);
  constructor(private readonly dir: string) {}


  check(step: string): number {
    collectGarbage();
    return this.bound({ step, disk: diskBytes(this.dir), fds: openFds() - this.fds0, rss: process.memoryUsage().rss - this.rss0 });
  }

  /** Checks a measurement (this process's, or a child's: fixtures/scale-child.mjs) against the bounds. */
  bound({ step, disk, fds, rss }: Row): number {
    this.rows.push(`${step}: disk ${(disk / MiB).toFixed(1)} MiB, +${fds} fds, +${(rss / MiB).toFixed(1)} MiB RSS`);
    expect(disk, `disk ${step}`).toBeLessThan(DISK_BOUND);
    expect(fds, `descriptors ${step}`).toBeLessThanOrEqual(FD_BOUND);
    expect(rss, `RSS growth ${step}`).toBeLessThanOrEqual(RSS_BOUND);
    return disk;
  }
}

async function appendWithRoom(wal: Walrus, topic: string, data: Buffer): Promise<number> {
  for (;;) {
    try {
      return wal.append(topic, data);
    } catch (e) {
      if ((e as { code?: string }).code !== 'ERR_WALRUS_BACKPRESSURE') throw e;
      await wal.drain();
    }
  }
}

/** Where the appends stop to measure: 100, 200, 400, ... then every 12,500 topics. */
function checkpoints(n: number): number[] {
  const out: number[] = [];
  for (let k = 100; k < 12_500; k *= 2) out.push(k);
  for (let k = 12_500; k <= n; k += 12_500) out.push(k);
  if (out[out.length - 1] !== n) out.push(n);
  return out;
}

const CHILD = resolve('test/fixtures/scale-child.mjs');
const DIST = resolve('dist');

/** Runs one instance's phase in a fresh process and checks each of its measurements. */
function instance(dir: string, backend: string, phase: 'consume' | 'reread', meter: Meter): { rows: Row[]; full: number } {
  const out = execFileSync(process.execPath, ['--expose-gc', CHILD, dir, DIST, backend, phase, String(TOPICS), String(RECORD_BYTES)], {
    encoding: 'utf8',
    timeout: 240_000,
    maxBuffer: 16 << 20,
  });
  const r = JSON.parse(out.trim().split('\n').at(-1)!) as { rows: Row[]; full: number; error: string | null };
  for (const row of r.rows) meter.bound(row);
  expect(r.error).toBeNull();
  return r;
}

const BACKENDS = ['fd', 'mmap'] as const;

describe.runIf(process.env.WALRUS_TEST_SCALE === '1').each(BACKENDS)('scale (%s)', (backend) => {
  it(`${TOPICS} topics with one ${RECORD_BYTES}-byte record each: disk, descriptors and memory bounded; consuming them shrinks the log; reopen keeps everything`, async () => {
    const dir = ramTempDir('walrus-scale-');
    const opts = { dir, backend, shards: SHARDS, fsync: FsyncSchedule.NoFsync };
    const meter = new Meter(dir);
    let wal = await Walrus.open(opts);
    try {
      // Disk, descriptors and memory only grow while appending: a bound passed on the way
      // fails the test there, before a log that costs a block per topic fills the RAM disk.
      let n = 0;
      for (const stop of checkpoints(TOPICS)) {
        for (; n < stop; n++) expect(await appendWithRoom(wal, nameOf(n), dataOf(n))).toBe(0);
        await wal.sync();
        meter.check(`after ${n} topics`);
      }
      expect(wal.topics().length).toBe(TOPICS);
      await wal.close();

      // The later instances each run in a fresh process (fixtures/scale-child.mjs), measured
      // from its start: memory this process's closed instance freed may stay resident for the
      // next one to reuse (Node 26 kept about 95 MiB of it, Node 20 returned it), so a second
      // instance measured here counted the runtime's caching or hid the log's own cost.
      const consumed = instance(dir, backend, 'consume', meter);
      expect(consumed.full).toBeGreaterThan(0);
      const second = instance(dir, backend, 'reread', meter);
      expect(second.rows[0]!.disk).toBeLessThanOrEqual(consumed.full / 2);
    } finally {
      await wal.close().catch(() => {});
      console.log(`scale (${TOPICS} topics, ${SHARDS} shards, ${backend}):\n  ${meter.rows.join('\n  ')}`);
    }
  }, 300_000);
});
