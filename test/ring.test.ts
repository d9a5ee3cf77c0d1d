import { describe, expect, it } from 'vitest';
import { Walrus, FsyncSchedule } from '../dist/index.js';
import { SEMANTIC_BACKENDS, collect, pseudoRandom, tempDir } from './helpers.js';

/** Multibyte text whose UTF-8 length is not a multiple of 8, so records end mid-word. */
function text(i: number): string {
  return `${i}:` + 'ä€🦭'.repeat(1 + (i % 29));
}

describe.each(SEMANTIC_BACKENDS)('shard ring (%s backend)', (backend) => {
  it('wraps around a tiny ring many times with multibyte strings crossing its end', async () => {
    const dir = tempDir();
    const wal = await Walrus.open({ backend, dir, shards: 1, ringBytes: 4096, blockBytes: 4096, segmentBlocks: 8, backpressureMs: 5000 });
    try {
      const n = 3000; // ~ 100 bytes each: the 4 KiB ring wraps ~75 times
      for (let i = 0; i < n; i++) expect(wal.append(`topic-${i % 3}`, text(i))).toBe(Math.floor(i / 3));
      for (let k = 0; k < 3; k++) {
        const got = await collect(wal.iterate(`topic-${k}`));
        expect(got.length).toBe(n / 3);
        got.forEach((e, j) => expect(e.data.toString('utf8')).toBe(text(j * 3 + k)));
      }
    } finally {
      await wal.close();
    }
  });

  it('takes records larger than the ring (they travel beside it) in order with small ones', async () => {
    const dir = tempDir();
    const wal = await Walrus.open({ backend, dir, shards: 1, ringBytes: 4096, blockBytes: 8192, segmentBlocks: 4, maxRecordBytes: 1 << 20 });
    const sizes = [10, 5000, 3, 70_000, 1 << 20, 0, 4096, 1000, 200_000];
    try {
      sizes.forEach((s, i) => expect(wal.append('big', pseudoRandom(i + 1, s))).toBe(i));
      // A batch larger than the ring goes beside it as a whole, still atomic.
      expect(wal.batchAppend('big', [pseudoRandom(100, 3000), pseudoRandom(101, 9000), 'tail'])).toBe(sizes.length);
      const got = await collect(wal.iterate('big'));
      expect(got.length).toBe(sizes.length + 3);
      sizes.forEach((s, i) => expect(Buffer.compare(got[i]!.data, pseudoRandom(i + 1, s))).toBe(0));
      expect(got[sizes.length + 2]!.data.toString()).toBe('tail');
    } finally {
      await wal.close();
    }
    if (backend === 'memory') return; // nothing to reopen: a memory log ends with close()
    const again = await Walrus.open({ backend, dir, shards: 1, ringBytes: 4096, maxRecordBytes: 1 << 20 });
    try {
      const got = await collect(again.iterate('big'));
      expect(got.length).toBe(sizes.length + 3);
      expect(Buffer.compare(got[4]!.data, pseudoRandom(5, 1 << 20))).toBe(0);
    } finally {
      await again.close();
    }
  });

  it('applies backpressure with nothing written, and drain() resolves when there is room', async () => {
    const dir = tempDir();
    const wal = await Walrus.open({ backend, dir, shards: 1, ringBytes: 4096, backpressureMs: 0, fsync: FsyncSchedule.SyncEach });
    let accepted = 0;
    let refused = 0;
    try {
      for (let i = 0; i < 2000; i++) {
        try {
          expect(wal.append('bp', pseudoRandom(i, 900))).toBe(accepted);
          accepted++;
        } catch (e) {
          expect((e as { code?: string }).code).toBe('ERR_WALRUS_BACKPRESSURE');
          refused++;
          await wal.drain();
        }
      }
      expect(refused).toBeGreaterThan(0);
      const got = await collect(wal.iterate('bp'));
      expect(got.length).toBe(accepted);
    } finally {
      await wal.close();
    }
  });
});
