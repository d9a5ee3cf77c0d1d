import { describe, expect, it } from 'vitest';
import { Walrus, FsyncSchedule } from '../dist/index.js';
import { native } from '../dist/shared/native.js';
import { PORTABLE, collect, tempDir } from './helpers.js';

/** The mmap project (vitest.config.ts) runs these against the mmap backend, where msync is the fsync. */
const MMAP = process.env.WALRUS_TEST_BACKEND === 'mmap';
/** The portable project runs them on the portable I/O path, which has no io_uring and says 'portable'. */
const paths = MMAP ? (['mmap'] as const) : PORTABLE ? (['portable'] as const) : native.uringSupported() ? (['io_uring', 'pwritev'] as const) : (['pwritev'] as const);

function fsyncs(wal: Walrus): number {
  return wal.stats().shards.reduce((a, s) => a + s.fsyncs, 0);
}

async function waitFor(cond: () => boolean, ms: number): Promise<number> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error(`condition not met within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 2));
  }
  return Date.now() - t0;
}

describe.each(paths)('fsync schedules and group commit (%s)', (io) => {
  const open = (dir: string, fsync: FsyncSchedule, shards = 1) => Walrus.open({ dir, fsync, shards, ioUring: io === 'io_uring' });

  it('uses the requested I/O path', async () => {
    const wal = await open(tempDir(), FsyncSchedule.NoFsync);
    try {
      expect(wal.stats().io).toBe(io);
    } finally {
      await wal.close();
    }
  });

  // How many fdatasyncs the worker manages while the 256 calls are still being made depends
  // on scheduling, so a bound on the total (it was at most 16) is one a loaded machine can
  // break. What the design guarantees whatever the scheduling: once the last call has stored
  // its SyncRequest, the worker needs at most two more: the one it may be in the middle of,
  // and one covering everything published (one segment file here; the counter counts a sync
  // per file). A worker that syncs each record (or each drain of a few) needs one per record
  // it had not reached when the calls ended.
  it('group commit: once 256 concurrent appendAndSync are issued, at most two fdatasyncs answer them all', async () => {
    const wal = await open(tempDir(), FsyncSchedule.NoFsync);
    try {
      const before = fsyncs(wal);
      // appendAndSync appends and stores its SyncRequest before it returns its promise.
      const calls = Array.from({ length: 256 }, (_, i) => wal.appendAndSync('gc', `entry ${i}`));
      const issued = fsyncs(wal);
      const offsets = await Promise.all(calls);
      expect(offsets).toEqual(Array.from({ length: 256 }, (_, i) => i));
      expect(fsyncs(wal) - before).toBeGreaterThanOrEqual(1);
      expect(fsyncs(wal) - issued).toBeLessThanOrEqual(2);
    } finally {
      await wal.close();
    }
  });

  // A read is answered after the worker has written everything published before it (and
  // finished those write batches, fdatasync included if the schedule asked for one): the
  // answer of each iterate below proves that the writes of the appends before it are done,
  // so no wait is needed to see that none of them carried an fsync.
  it('NoFsync: the worker writes without fsyncing, over several rounds of work; sync() forces one', async () => {
    const wal = await open(tempDir(), FsyncSchedule.NoFsync);
    try {
      const before = fsyncs(wal);
      const written = (): number => wal.stats().shards.reduce((a, s) => a + s.recordsWritten, 0);
      const records = written();
      for (let round = 1; round <= 3; round++) {
        for (let i = 0; i < 100; i++) wal.append('n', `x${i}`);
        expect((await collect(wal.iterate('n'))).length).toBe(100 * round);
        expect(written() - records).toBeGreaterThanOrEqual(100 * round);
        expect(fsyncs(wal)).toBe(before);
      }
      await wal.sync();
      expect(fsyncs(wal)).toBeGreaterThan(before);
    } finally {
      await wal.close();
    }
  });

  it('SyncEach fsyncs after every write it issues, without being asked', async () => {
    const wal = await open(tempDir(), FsyncSchedule.SyncEach);
    try {
      const before = fsyncs(wal);
      wal.append('s', 'one');
      await waitFor(() => fsyncs(wal) > before, 2000);
      const mid = fsyncs(wal);
      wal.append('s', 'two');
      await waitFor(() => fsyncs(wal) > mid, 2000);
    } finally {
      await wal.close();
    }
  });

  it('milliseconds(n) fsyncs about n ms after an append, not before', async () => {
    const wal = await open(tempDir(), FsyncSchedule.milliseconds(150));
    try {
      // A time schedule is checked against the clock: the worker stamps its first unsynced
      // write no earlier than t0, so the fsync it owes cannot be observed before t0 + 150.
      // (No settling wait is needed first: nothing an open does counts as an fsync.)
      const before = fsyncs(wal);
      const t0 = Date.now();
      wal.append('m', 'x');
      await waitFor(() => fsyncs(wal) > before, 3000);
      const elapsed = Date.now() - t0;
      expect(elapsed).toBeGreaterThanOrEqual(140);
      // Generous upper bound: the schedule promises "about n ms"; CI machines are noisy.
      expect(elapsed).toBeLessThan(2000);
    } finally {
      await wal.close();
    }
  });

  it('sync() covers every shard', async () => {
    const wal = await open(tempDir(), FsyncSchedule.NoFsync, 3);
    try {
      for (let i = 0; i < 60; i++) wal.append(`topic-${i}`, `v${i}`);
      await wal.sync();
      const per = wal.stats().shards.map((s) => s.fsyncs);
      expect(per.filter((n) => n > 0).length).toBe(per.length);
      for (let i = 0; i < 60; i++) expect((await collect(wal.iterate(`topic-${i}`)))[0]!.data.toString()).toBe(`v${i}`);
    } finally {
      await wal.close();
    }
  });
});

describe.skipIf(MMAP)('I/O path selection (fd backend)', () => {
  it("defaults to 'auto' (io_uring for batches touching several files) where io_uring works", async () => {
    const wal = await Walrus.open({ dir: tempDir() });
    try {
      expect(wal.stats().io).toBe(PORTABLE ? 'portable' : native.uringSupported() ? 'io_uring+pwritev' : 'pwritev');
    } finally {
      await wal.close();
    }
  });

  // On the portable path there is no io_uring to disable (stats().io is 'portable' whatever ioUring says).
  it.skipIf(PORTABLE)('WALRUS_DISABLE_IO_URING=1 forces pwritev even when ioUring is true', async () => {
    const before = process.env.WALRUS_DISABLE_IO_URING;
    process.env.WALRUS_DISABLE_IO_URING = '1';
    try {
      const wal = await Walrus.open({ dir: tempDir(), ioUring: true });
      expect(wal.stats().io).toBe('pwritev');
      await wal.close();
    } finally {
      if (before === undefined) delete process.env.WALRUS_DISABLE_IO_URING;
      else process.env.WALRUS_DISABLE_IO_URING = before;
    }
  });
});
