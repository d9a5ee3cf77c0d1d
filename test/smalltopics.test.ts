/**
 * Many small topics (issue 11 item 7): a topic's first records share blocks with other small
 * topics, so 100,000 topics of one small record each cost bytes, not a block each; they all
 * read back after a reopen; and consuming them all shrinks the log. Counts and bytes only:
 * the reopen time is measured by bench/many-topics.mjs, not asserted here.
 */
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FsyncSchedule, Walrus } from '../dist/index.js';
import { native } from '../dist/shared/native.js';
import { collect, pseudoRandom, ramTempDir, tempDir } from './helpers.js';

/** Enough for the data to span several segments, so that consuming it can delete some. */
const TOPICS = 100_000;
/** 8 MiB segments: preallocation (a whole segment, plus the spare) stays small beside the data. */
const OPTS = { shards: 1, segmentBlocks: 8, fsync: FsyncSchedule.NoFsync } as const;
const SEGMENT_BYTES = 4096 + 8 * 2 ** 20;

function diskBytes(dir: string): number {
  let n = 0;
  for (const f of readdirSync(dir)) if (f.endsWith('.seg')) n += statSync(join(dir, f)).blocks * 512;
  return n;
}

function payload(i: number): Buffer {
  return Buffer.from(`entry of topic ${i} `.padEnd(100, '.'));
}

/** Runs `f` on 0..n-1 with at most `width` calls in flight. */
async function inWaves(n: number, width: number, f: (i: number) => Promise<void>): Promise<void> {
  for (let at = 0; at < n; at += width) {
    const wave: Promise<void>[] = [];
    for (let i = at; i < Math.min(n, at + width); i++) wave.push(f(i));
    await Promise.all(wave);
  }
}

describe('many small topics', () => {
  it(`${TOPICS} topics of one 100-byte record: under 1 KiB of disk each, all read back after reopen, consuming them shrinks the log`, async () => {
    const dir = ramTempDir();
    let wal = await Walrus.open({ dir, ...OPTS });
    for (let i = 0; i < TOPICS; i++) {
      expect(wal.append(`topic-${i}`, payload(i))).toBe(0);
      if (i % 5000 === 4999) await wal.drain();
    }
    await wal.close();
    const written = diskBytes(dir);
    // Walrus gave each topic a block (1 MiB here): 100,000 topics took ~100 GB. Now: under
    // 1 KiB a topic, besides the preallocated room of at most two segments (current, spare).
    expect(written).toBeLessThan(TOPICS * 1024 + 2 * SEGMENT_BYTES);
    expect(written).toBeLessThan(100 * 2 ** 20);

    wal = await Walrus.open({ dir, ...OPTS });
    try {
      expect(wal.stats().recoveredClean).toBe(true);
      expect(wal.stats().recoveredTornBytes).toBe(0);
      await inWaves(TOPICS, 2000, async (i) => {
        const e = await wal.readNext(`topic-${i}`);
        expect(e?.offset).toBe(0);
        expect(e?.data.equals(payload(i))).toBe(true);
      });
      await wal.sync();
    } finally {
      await wal.close();
    }
    const consumed = diskBytes(dir);
    console.log(`${TOPICS} small topics: ${written} bytes on disk, ${consumed} after consuming them all`);
    expect(consumed).toBeLessThan(written);

    wal = await Walrus.open({ dir, ...OPTS });
    try {
      expect(wal.stats().recoveredTornBytes).toBe(0);
      // Consumed stays consumed, and each topic goes on at its next offset.
      for (const i of [0, 1, TOPICS >> 1, TOPICS - 1]) {
        expect(await wal.readNext(`topic-${i}`)).toBeNull();
        expect(wal.append(`topic-${i}`, 'more')).toBe(1);
        expect((await wal.readNext(`topic-${i}`))?.data.toString()).toBe('more');
      }
    } finally {
      await wal.close();
    }
  }, 300_000);
});

describe('shared blocks', () => {
  it('a topic that outgrows sharing goes on in blocks of its own: every entry in order, across reopens and consumption', async () => {
    // 4 KiB slots: a topic keeps at most 1 KiB in shared blocks.
    const dir = tempDir();
    const opts = { dir, shards: 1, blockBytes: 4096, segmentBlocks: 4, fsync: FsyncSchedule.NoFsync } as const;
    const sizes = (i: number): number => (i * 37) % 300;
    let wal = await Walrus.open(opts);
    try {
      for (let i = 0; i < 40; i++) {
        wal.append('grows', pseudoRandom(i + 1, sizes(i)));
        wal.append(`small-${i}`, pseudoRandom(1000 + i, 50));
        if (i % 7 === 0) wal.batchAppend('grows-in-batches', [pseudoRandom(i, 10), pseudoRandom(i + 1, 20), pseudoRandom(i + 2, 600)]);
      }
      await wal.flush();
    } finally {
      await wal.close();
    }
    const check = async (w: Walrus, from: number): Promise<void> => {
      const got = await collect(w.iterate('grows', from));
      expect(got.map((e) => e.offset)).toEqual(Array.from({ length: 40 - from }, (_, k) => from + k));
      for (const e of got) expect(Buffer.compare(e.data, pseudoRandom(e.offset + 1, sizes(e.offset)))).toBe(0);
      const batches = await collect(w.iterate('grows-in-batches'));
      expect(batches.length).toBe(18);
      for (const e of batches) {
        const i = Math.floor(e.offset / 3) * 7;
        expect(Buffer.compare(e.data, pseudoRandom(i + (e.offset % 3), [10, 20, 600][e.offset % 3]!))).toBe(0);
      }
    };
    wal = await Walrus.open(opts);
    try {
      expect(wal.stats().recoveredClean).toBe(true);
      await check(wal, 0);
      for (let i = 0; i < 40; i++) expect((await wal.readNext(`small-${i}`))?.data.equals(pseudoRandom(1000 + i, 50))).toBe(true);
      // Consume 'grows' part way, then reopen: the rest reads back from where the cursor is.
      expect((await wal.batchRead('grows', 2000)).length).toBeGreaterThan(0);
      for (let i = 0; i < 3; i++) await wal.readNext('grows');
    } finally {
      await wal.close();
    }
    wal = await Walrus.open(opts);
    try {
      const next = await wal.readNext('grows', false);
      expect(next).not.toBeNull();
      await check(wal, 0);
      expect(wal.append('grows', 'x')).toBe(40);
    } finally {
      await wal.close();
    }
  });

  it('a log whose segments say format version 1 opens, and new blocks go into a new version 2 segment', async () => {
    const dir = tempDir();
    const opts = { dir, shards: 1, blockBytes: 4096, segmentBlocks: 4, fsync: FsyncSchedule.NoFsync } as const;
    let wal = await Walrus.open(opts);
    // One topic of large records (no shared block) and one declaration: what format 1 held.
    for (let i = 0; i < 3; i++) wal.append('big', pseudoRandom(i + 1, 2000));
    await wal.close();
    const segs = readdirSync(dir).filter((f) => f.endsWith('.seg'));
    expect(segs.length).toBe(1);
    const path = join(dir, segs[0]!);
    const bytes = readFileSync(path);
    expect(bytes.readUInt32LE(8)).toBe(2);
    bytes.writeUInt32LE(1, 8);
    bytes.writeUInt32LE(native.crc32c(bytes.subarray(0, 60)), 60);
    writeFileSync(path, bytes);
    wal = await Walrus.open(opts);
    try {
      expect(wal.stats().recoveredTornBytes).toBe(0);
      expect((await collect(wal.iterate('big'))).map((e) => e.data.length)).toEqual([2000, 2000, 2000]);
      wal.append('small', 'shared');
      await wal.flush();
    } finally {
      await wal.close();
    }
    const after = readdirSync(dir).filter((f) => f.endsWith('.seg')).sort();
    expect(after.length).toBeGreaterThan(1);
    expect(readFileSync(path).readUInt32LE(8)).toBe(1);
    expect(readFileSync(join(dir, after[after.length - 1]!)).readUInt32LE(8)).toBe(2);
    wal = await Walrus.open(opts);
    try {
      expect((await collect(wal.iterate('small'))).map((e) => e.data.toString())).toEqual(['shared']);
      expect((await collect(wal.iterate('big'))).length).toBe(3);
    } finally {
      await wal.close();
    }
  });

  it('a deletion whose unlink failed is finished by recovery, and later small records go to a live segment', async () => {
    // The first segment holds the only shared block. Consumed, it is deleted: the snapshot
    // reaches the disk, the unlink fails (injected EIO) and the shard fails. Recovery then
    // removes the file; the shared chain must not go on in the block it held.
    const dir = tempDir();
    const opts = { dir, shards: 1, blockBytes: 4096, segmentBlocks: 4, fsync: FsyncSchedule.NoFsync } as const;
    process.env.WALRUS_TEST_FAULT = 'file.unlink:1:5';
    let wal: Walrus;
    try {
      wal = await Walrus.open(opts);
    } finally {
      delete process.env.WALRUS_TEST_FAULT;
    }
    wal.append('a', 'first of a');
    wal.append('b', 'first of b');
    for (let i = 0; i < 6; i++) wal.append(i % 2 === 0 ? 'a' : 'b', pseudoRandom(i + 1, 3000));
    await wal.flush();
    const first = readdirSync(dir).filter((f) => f.endsWith('.seg')).sort()[0]!;
    // The deletion starts once the first segment is consumed (during the reads, or in the
    // next turn of the worker's loop), and unlinks once its background fdatasync finished:
    // the shard's failure arrives a few milliseconds later; a sync() then rejects with it.
    let failure: unknown;
    try {
      for (const t of ['a', 'b']) while ((await wal.batchRead(t, 1 << 20)).length > 0);
      for (let k = 0; k < 10_000; k++) {
        await wal.sync();
        await new Promise((r) => setTimeout(r, 1));
      }
    } catch (e) {
      failure = e;
    }
    expect(failure).toMatchObject({ code: 'ERR_WALRUS_IO', syscall: 'unlink' });
    await wal.close().catch(() => undefined);
    wal = await Walrus.open(opts);
    try {
      expect(readdirSync(dir)).not.toContain(first);
      expect(await wal.appendAndSync('c', 'first of c')).toBe(0);
      expect(await wal.readNext('a')).toBeNull();
    } finally {
      await wal.close();
    }
    wal = await Walrus.open(opts);
    try {
      expect((await collect(wal.iterate('c'))).map((e) => e.data.toString())).toEqual(['first of c']);
      expect(await wal.readNext('b')).toBeNull();
    } finally {
      await wal.close();
    }
  });
});
