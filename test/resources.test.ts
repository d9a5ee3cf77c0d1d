/**
 * Resources a log holds whatever its size: descriptors (at most MAX_OPEN_SEGMENTS segment
 * files per shard, so a log of hundreds of segments opens, writes, recovers and reads under a
 * low `ulimit -n` and leaves the application its own descriptors), and disk (an empty log
 * costs the first allocation step of one segment per shard, not whole segments; a segment
 * file shorter than its geometry is normal, and recovery still tells one cut short from one
 * that was truncated). Mapped bytes of the mmap backend: test/mmap.test.ts.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, statSync, truncateSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FsyncSchedule, Walrus } from '../dist/index.js';
import { MAX_OPEN_SEGMENTS } from '../dist/workers/store/files.js';
import { FIRST_ALLOCATION_STEP, allocationBoundary, segmentBytes, slotPosition } from '../dist/shared/format/segment.js';
import { pseudoRandom, tempDir } from './helpers.js';

const MIB = 1 << 20;
const CHILD = resolve('test/fixtures/fd-limit-child.mjs');
const DIST = resolve('dist');

/** Bytes the file system allocated to the segment files of `dir`, by shard. */
function allocatedByShard(dir: string): Map<number, number> {
  const out = new Map<number, number>();
  for (const f of readdirSync(dir)) {
    const m = /^s(\d+)-\d+\.seg$/.exec(f);
    if (!m) continue;
    const shard = Number(m[1]);
    out.set(shard, (out.get(shard) ?? 0) + statSync(join(dir, f)).blocks * 512);
  }
  return out;
}

/** Waits (bounded) until every shard of `dir` has created its first segment (idle work after open). */
async function segmentsOfEveryShard(dir: string, shards: number): Promise<void> {
  const t0 = Date.now();
  while (allocatedByShard(dir).size < shards) {
    if (Date.now() - t0 > 20_000) throw new Error(`only ${allocatedByShard(dir).size} of ${shards} shards created a segment`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * The descriptor limit of the child. Node itself holds 17-18 descriptors before the log opens
 * on Node 20 and 25 on Node 24 (whose libuv keeps io_uring instances per event loop, two more
 * for each worker thread): 64 left the application 14 of its 16 files on Node 24. The log's own
 * share is asserted directly (segment descriptors per shard), and the log has far more segment
 * files than this limit.
 */
const FD_LIMIT = 96;

describe('descriptors', () => {
  it.each(['fd', 'mmap'] as const)(
    '%s: a log of many segments writes, recovers and reads under ulimit -n 96, holding at most 8 segment descriptors per shard',
    (backend) => {
      const dir = tempDir('walrus-fds-');
      const out = execFileSync('/bin/sh', ['-c', `ulimit -n ${FD_LIMIT} && exec "$0" "$@"`, process.execPath, CHILD, dir, DIST, backend], {
        encoding: 'utf8',
        env: { ...process.env, WALRUS_TEST_FAULT: '' },
        timeout: 120_000,
      });
      const report = JSON.parse(out.trim().split('\n').at(-1)!) as Record<string, number>;
      // Far more segments than the limit allows descriptors (the old engine kept one open per
      // segment and failed with EMFILE).
      expect(report.segments).toBeGreaterThan(FD_LIMIT);
      expect(report.maxSegmentFds).toBeGreaterThan(0);
      expect(report.maxSegmentFds).toBeLessThanOrEqual(2 * MAX_OPEN_SEGMENTS);
      expect(report.reopenedSegmentFds).toBeLessThanOrEqual(2 * MAX_OPEN_SEGMENTS);
      expect(report.appOpened).toBe(16);
      expect(report.read).toBe(40 * 60);
      expect(report.wrong).toBe(0);
    },
    180_000,
  );
});

describe('disk footprint', () => {
  it('an empty log allocates one first step per shard (about 1 MiB), not a whole segment', async () => {
    const dir = tempDir('walrus-disk-');
    const wal = await Walrus.open({ dir, shards: 4 });
    try {
      await segmentsOfEveryShard(dir, 4);
      const byShard = allocatedByShard(dir);
      for (const [, bytes] of byShard) {
        expect(bytes).toBeGreaterThan(0);
        // The header page and the first step; a file system may round up to its own extents.
        expect(bytes).toBeLessThanOrEqual(4096 + FIRST_ALLOCATION_STEP + 64 * 1024);
      }
    } finally {
      await wal.close();
    }
  });

  it('many shards cost about 1 MiB each on disk, not a segment each (32 shards: not 2 GiB); more than 64 are refused', async () => {
    const dir = tempDir('walrus-disk-');
    await expect(Walrus.open({ dir, shards: 65 })).rejects.toThrow(RangeError);
    const wal = await Walrus.open({ dir, shards: 32, ringBytes: 64 * 1024 });
    try {
      await segmentsOfEveryShard(dir, 32);
      const total = [...allocatedByShard(dir).values()].reduce((a, b) => a + b, 0);
      expect(total).toBeLessThanOrEqual(32 * (4096 + FIRST_ALLOCATION_STEP + 64 * 1024));
    } finally {
      await wal.close();
    }
  }, 120_000);

  it('the fd backend sizes a new segment whole at creation but allocates its space in steps (a sparse tail)', async () => {
    const dir = tempDir('walrus-disk-');
    const wal = await Walrus.open({ dir, shards: 1, backend: 'fd' });
    try {
      await segmentsOfEveryShard(dir, 1);
      const segs = readdirSync(dir).filter((f) => f.endsWith('.seg'));
      for (const f of segs) expect(statSync(join(dir, f)).size).toBe(segmentBytes(64, MIB));
      expect(allocatedByShard(dir).get(0)!).toBeLessThanOrEqual(segs.length * (4096 + FIRST_ALLOCATION_STEP + 64 * 1024));
    } finally {
      await wal.close();
    }
  });

  it('a log with data allocates in steps ahead of its blocks, not whole segments', async () => {
    const dir = tempDir('walrus-disk-');
    const wal = await Walrus.open({ dir, shards: 1, fsync: FsyncSchedule.NoFsync });
    try {
      // 3 MiB of records into default 64 MiB segments.
      for (let i = 0; i < 48; i++) wal.append('t', pseudoRandom(i + 1, 64 * 1024));
      await wal.sync();
    } finally {
      await wal.close();
    }
    const total = allocatedByShard(dir).get(0)!;
    expect(total).toBeGreaterThan(3 * MIB);
    // The blocks in use, one step ahead (up to 15 MiB of boundaries), and the spare's first step.
    expect(total).toBeLessThanOrEqual(16 * MIB + 4096 + FIRST_ALLOCATION_STEP);
  });
});

describe('segment files shorter than their geometry', () => {
  /**
   * A one-segment log whose last block ends 4 MiB into the data; returns the segment's path.
   * Written by the mmap backend, which grows a file in durable steps (the fd backend sizes it
   * whole at creation; a file shorter than its geometry comes from the mmap backend or an
   * earlier build). Reopened by the fd backend: recovery is the same for both.
   */
  async function logWithBlocksTo4MiB(dir: string): Promise<{ path: string; records: Buffer[] }> {
    const wal = await Walrus.open({ dir, shards: 1, backend: 'mmap' });
    // Slot 0 holds the meta topic's block; three 600 KiB records take a 1 MiB slot each.
    const records = [1, 2, 3].map((k) => pseudoRandom(k, 600 * 1024));
    try {
      for (const r of records) wal.append('t', r);
      await wal.sync();
    } finally {
      await wal.close();
    }
    const segs = readdirSync(dir).filter((f) => f.endsWith('.seg')).sort();
    return { path: join(dir, segs[0]!), records };
  }

  it('a file that reaches the allocation boundary past its last block recovers whole', async () => {
    const dir = tempDir('walrus-short-');
    const { path, records } = await logWithBlocksTo4MiB(dir);
    const full = segmentBytes(64, MIB);
    const need = allocationBoundary(slotPosition(4, MIB), full);
    expect(need).toBe(4096 + 7 * MIB);
    expect(statSync(path).size).toBeGreaterThanOrEqual(need);
    expect(statSync(path).size).toBeLessThan(full);
    truncateSync(path, need); // only unused slots go: what a crash before the next step leaves
    const wal = await Walrus.open({ dir, shards: 1 });
    try {
      const got = [];
      for await (const e of wal.iterate('t')) got.push(e.data);
      expect(got.length).toBe(3);
      got.forEach((d, k) => expect(Buffer.compare(d, records[k]!)).toBe(0));
    } finally {
      await wal.close();
    }
  });

  it.each([
    ['below the boundary past its last block', 4096 + 7 * MIB - 4096],
    ['inside its last block', 4096 + 4 * MIB - 100],
    ['below the first step', 4096 + 1000],
  ])('a file cut %s is ERR_WALRUS_CORRUPT at its size', async (_what, cut) => {
    const dir = tempDir('walrus-short-');
    const { path } = await logWithBlocksTo4MiB(dir);
    truncateSync(path, cut);
    await expect(Walrus.open({ dir, shards: 1 })).rejects.toMatchObject({ code: 'ERR_WALRUS_CORRUPT', file: path, offset: cut });
  });
});
