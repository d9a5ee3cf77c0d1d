/**
 * Many small topics (issue 11 item 7): a topic's first records share blocks with other small
 * topics, so 100,000 topics of one small record each cost bytes, not a block each; they all
 * read back after a reopen; and consuming them all shrinks the log. Counts and bytes only:
 * the reopen time is measured by bench/topics.mjs, not asserted here.
 */
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FsyncSchedule, Walrus } from '../dist/index.js';
import { ramTempDir } from './helpers.js';

const TOPICS = Number(process.env.WALRUS_SMALLTOPICS ?? 100_000);
/** 8 MiB segments: preallocation (a whole segment, plus the spare) stays small beside the data. */
const OPTS = { shards: 1, segmentBlocks: 8, fsync: FsyncSchedule.NoFsync } as const;

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
    // Walrus gave each topic a block (1 MiB here): 100,000 topics took ~100 GB.
    expect(written).toBeLessThan(TOPICS * 1024);
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
