/**
 * Regression found by the model-based test (test/model.test.ts): a record larger than a
 * segment gets a segment of its own, created after the spare; the spare then becomes the
 * current segment although it is older, and deletion, which only ever looks at the oldest
 * segment, stops at it. The consumed oversized segment stays on disk until the current one
 * fills up or the log is reopened, against "a segment file is deleted as soon as everything
 * in it is consumed" (docs/ARCHITECTURE.md).
 */
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FsyncSchedule, Walrus } from '../dist/index.js';
import { ramTempDir } from './helpers.js';

const OPTS = { shards: 1, blockBytes: 4096, segmentBlocks: 4, fsync: FsyncSchedule.NoFsync, maxRecordBytes: 1 << 20 } as const;
const BIG = 200_000;

function segments(dir: string): { name: string; bytes: number }[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.seg'))
    .sort()
    .map((name) => ({ name, bytes: statSync(join(dir, name)).size }));
}

async function waitFor(cond: () => boolean, what: () => string): Promise<void> {
  // The deadline bounds a failure only: deletion follows a checkpointing read within milliseconds.
  const deadline = Date.now() + 10_000;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`not within 10 s: ${what()}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('deletion order', () => {
  it('a consumed segment made for a record larger than a segment is deleted without a reopen', async () => {
    const dir = ramTempDir();
    const wal = await Walrus.open({ dir, ...OPTS });
    try {
      // Two full blocks: the first segment is half used, so the worker prepares the spare.
      wal.append('q', Buffer.alloc(4000, 1));
      wal.append('q', Buffer.alloc(4000, 2));
      await wal.flush();
      await waitFor(
        () => segments(dir).length === 2,
        () => `no spare segment: ${JSON.stringify(segments(dir))}`,
      );
      // Larger than a segment (4 slots of 4 KiB): a segment of its own, after the spare.
      wal.append('q', Buffer.alloc(BIG, 3));
      // The next block goes into the spare, which is now current and older than the big one.
      wal.append('q', Buffer.alloc(10, 4));
      await wal.flush();
      expect(segments(dir).some((s) => s.bytes > BIG)).toBe(true);
      let n = 0;
      for (let got = await wal.batchRead('q', 1 << 20); got.length > 0; got = await wal.batchRead('q', 1 << 20)) n += got.length;
      expect(n).toBe(4);
      await waitFor(
        () => !segments(dir).some((s) => s.bytes > BIG),
        () => `every entry is consumed, yet segments ${JSON.stringify(segments(dir))} are still on disk`,
      );
    } finally {
      await wal.close();
    }
  });
});
