/**
 * Regression found by the model-based test (test/model.test.ts): a record larger than a
 * segment gets a segment of its own, created after the spare; the spare then becomes the
 * current segment although it is older, and deletion, which only ever looks at the oldest
 * segment, stops at it. The consumed oversized segment stays on disk until the current one
 * fills up or the log is reopened, against "a segment file is deleted as soon as everything
 * in it is consumed" (docs/ARCHITECTURE.md).
 *
 * The same happens to the snapshot of the topic table that deleting a segment writes: with
 * more topics than one segment's worth of snapshot, every snapshot gets an oversized segment
 * of its own, and after everything is consumed each close/open cycle leaves one more of them
 * on disk, for good (found by the model-based test's many-topics runs: 5,000 topics, one
 * segment more per cycle). With 2,000 topics, as below, the engine before issue 11's fixes
 * fails earlier, at the third cycle's open, with ERR_WALRUS_CORRUPT ("the meta topic
 * recovers N entries but N+2 had been made durable"): issue 11's first report, in a shape
 * that needs neither 20,000 topics nor idle time.
 */
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FsyncSchedule, Walrus } from '../dist/index.js';
import { ramTempDir } from './helpers.js';

const OPTS = { shards: 1, blockBytes: 4096, segmentBlocks: 4, fsync: FsyncSchedule.NoFsync, maxRecordBytes: 1 << 20 } as const;
const BIG = 200_000;

/** Segment files and sizes (one deleted between the listing and its stat is left out). */
function segments(dir: string): { name: string; bytes: number }[] {
  const out: { name: string; bytes: number }[] = [];
  for (const name of readdirSync(dir).filter((f) => f.endsWith('.seg')).sort()) {
    try {
      out.push({ name, bytes: statSync(join(dir, name)).size });
    } catch (e) {
      if ((e as { code?: string }).code !== 'ENOENT') throw e;
    }
  }
  return out;
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

  it('close/open cycles of a consumed log whose topic table is larger than a segment neither damage nor grow it', async () => {
    const dir = ramTempDir();
    const TOPICS = 2000;
    let wal = await Walrus.open({ dir, ...OPTS });
    try {
      for (let i = 0; i < TOPICS; i++) wal.append(`topic ${i}`, Buffer.alloc(16, i & 0xff));
      for (let i = 0; i < TOPICS; i++) expect((await wal.readNext(`topic ${i}`))?.offset).toBe(0);
      for (let cycle = 1; cycle <= 6; cycle++) {
        await wal.close();
        // Issue 11's first report (the meta topic damaged across such cycles, ERR_WALRUS_CORRUPT
        // here) shows up in this shape too: say at which cycle.
        wal = await Walrus.open({ dir, ...OPTS }).catch((e: Error) => {
          throw new Error(`open after ${cycle} close/open cycles: ${e.message}`, { cause: e });
        });
        expect(wal.topics().length).toBe(TOPICS);
        // Everything is consumed: what stays is the segment being written, the spare and at
        // most one holding the latest snapshot of the topic table.
        await waitFor(
          () => segments(dir).length <= 3,
          () => `after ${cycle} close/open cycles of a consumed log: segments ${JSON.stringify(segments(dir))}`,
        );
      }
    } finally {
      await wal.close();
    }
  }, 120_000);
});
