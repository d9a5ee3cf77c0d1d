import { copyFileSync, linkSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Walrus, FsyncSchedule } from '../dist/index.js';
import { collect, pseudoRandom, tempDir } from './helpers.js';

/** Tiny segments: 4 slots of 4 KiB, so a few hundred entries fill several files. */
const SMALL = { shards: 1, blockBytes: 4096, segmentBlocks: 4, fsync: FsyncSchedule.NoFsync } as const;

function segments(dir: string): string[] {
  return readdirSync(dir).filter((f) => f.endsWith('.seg')).sort();
}

function bytesOnDisk(dir: string): number {
  return segments(dir).reduce((a, f) => a + statSync(join(dir, f)).blocks * 512, 0);
}

async function waitFor(cond: () => boolean, ms: number): Promise<number> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error(`not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
  return Date.now() - t0;
}

describe('deletion of consumed segments', () => {
  it('a fully consumed segment file disappears within seconds and its space is reclaimed', async () => {
    const dir = tempDir();
    const wal = await Walrus.open({ dir, ...SMALL });
    try {
      for (let i = 0; i < 300; i++) wal.append('q', pseudoRandom(i + 1, 200));
      await wal.flush();
      const before = segments(dir).length;
      const spaceBefore = bytesOnDisk(dir);
      expect(before).toBeGreaterThanOrEqual(4);
      let n = 0;
      for (let e = await wal.batchRead('q', 1 << 20); e.length > 0; e = await wal.batchRead('q', 1 << 20)) n += e.length;
      expect(n).toBe(300);
      // Everything is consumed; only the segment still being written (and the spare) stay.
      const took = await waitFor(() => segments(dir).length <= 2, 5000);
      expect(took).toBeLessThan(5000);
      expect(bytesOnDisk(dir)).toBeLessThan(spaceBefore);
      // Appending and consuming go on.
      wal.append('q', 'after');
      expect((await wal.readNext('q'))?.data.toString()).toBe('after');
      // iterate starts at the first entry still stored.
      const rest = await collect(wal.iterate('q'));
      expect(rest.length).toBeLessThan(301);
      expect(rest[rest.length - 1]!.data.toString()).toBe('after');
      for (const e of rest.slice(0, -1)) expect(Buffer.compare(e.data, pseudoRandom(e.offset + 1, 200))).toBe(0);
    } finally {
      await wal.close();
    }
    const again = await Walrus.open({ dir, ...SMALL });
    try {
      expect(again.stats().recoveredTornBytes).toBe(0);
      expect(await again.readNext('q')).toBeNull();
      expect(again.append('q', 'x')).toBe(301);
      expect((await again.readNext('q'))?.offset).toBe(301);
    } finally {
      await again.close();
    }
  });

  it('keeps a segment while any of its blocks is unconsumed, and every later one with it', async () => {
    const dir = tempDir();
    const wal = await Walrus.open({ dir, ...SMALL });
    try {
      for (let i = 0; i < 200; i++) {
        wal.append('fast', pseudoRandom(i, 150));
        wal.append('slow', pseudoRandom(i + 1000, 150));
      }
      await wal.flush();
      const before = segments(dir);
      while ((await wal.batchRead('fast', 1 << 20)).length > 0);
      await new Promise((r) => setTimeout(r, 200));
      // None deleted (the spare may have been created meanwhile: the worker makes it when idle
      // once the current segment is half full, which the flush above does not wait for).
      expect(segments(dir)).toEqual(expect.arrayContaining(before));
      const slow = await collect(wal.iterate('slow'));
      expect(slow.length).toBe(200);
      while ((await wal.batchRead('slow', 1 << 20)).length > 0);
      await waitFor(() => segments(dir).length <= 2, 5000);
    } finally {
      await wal.close();
    }
  });

  it('a deletion cut short after its trim records (the file still there) is finished by recovery', async () => {
    const dir = tempDir();
    const saved = tempDir();
    const wal = await Walrus.open({ dir, ...SMALL });
    for (let i = 0; i < 300; i++) wal.append('q', pseudoRandom(i + 1, 200));
    await wal.flush();
    const first = segments(dir)[0]!;
    // A hard link keeps the file's final content once the worker unlinks it: exactly what
    // a crash between the durable trim records and the unlink leaves behind.
    linkSync(join(dir, first), join(saved, first));
    while ((await wal.batchRead('q', 1 << 20)).length > 0);
    await waitFor(() => !segments(dir).includes(first), 5000);
    wal.append('q', 'tail');
    await wal.close();
    // Put the deleted file back: as if the unlink had not happened before a crash.
    copyFileSync(join(saved, first), join(dir, first));
    const again = await Walrus.open({ dir, ...SMALL });
    try {
      expect(segments(dir)).not.toContain(first);
      expect(again.stats().recoveredTornBytes).toBe(0);
      // Iterate before consuming: once 'tail' is consumed its segment may go too (it is not
      // the current one when a spare segment was made after it).
      const all = await collect(again.iterate('q'));
      expect(all[all.length - 1]!.offset).toBe(300);
      expect((await again.readNext('q'))?.data.toString()).toBe('tail');
    } finally {
      await again.close();
    }
  });
});

describe('retention bounds for topics nobody consumes', () => {
  it('retentionBytes deletes the oldest segments and moves cursors behind them forward', async () => {
    const dir = tempDir();
    const segBytes = 4096 + 4 * 4096;
    const wal = await Walrus.open({ dir, ...SMALL, retentionBytes: 3 * segBytes });
    try {
      for (let i = 0; i < 600; i++) wal.append('log', pseudoRandom(i, 200));
      await wal.flush();
      await waitFor(() => segments(dir).length <= 4, 5000);
      const kept = await collect(wal.iterate('log'));
      expect(kept.length).toBeGreaterThan(0);
      expect(kept.length).toBeLessThan(600);
      expect(kept[kept.length - 1]!.offset).toBe(599);
      // The cursor was behind the deleted data: it now starts at the first entry kept.
      expect((await wal.readNext('log'))?.offset).toBe(kept[0]!.offset);
    } finally {
      await wal.close();
    }
    const again = await Walrus.open({ dir, ...SMALL });
    try {
      expect(again.append('log', 'next')).toBe(600);
    } finally {
      await again.close();
    }
  });

  it('retentionMs deletes segments that stopped taking blocks longer ago than that', async () => {
    const dir = tempDir();
    const wal = await Walrus.open({ dir, ...SMALL, retentionMs: 300 });
    try {
      for (let i = 0; i < 300; i++) wal.append('log', pseudoRandom(i, 200));
      await wal.flush();
      const before = segments(dir).length;
      expect(before).toBeGreaterThanOrEqual(4);
      const took = await waitFor(() => segments(dir).length <= 2, 5000);
      expect(took).toBeGreaterThanOrEqual(200);
      expect((await collect(wal.iterate('log')))[0]!.offset).toBeGreaterThan(0);
    } finally {
      await wal.close();
    }
  });

  it('validates the bounds', async () => {
    await expect(Walrus.open({ dir: tempDir(), retentionBytes: 0 })).rejects.toMatchObject({ code: 'ERR_OUT_OF_RANGE' });
    await expect(Walrus.open({ dir: tempDir(), retentionMs: -1 })).rejects.toMatchObject({ code: 'ERR_OUT_OF_RANGE' });
  });
});
