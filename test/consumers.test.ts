/**
 * Named consumers (issue 16): independent durable positions per topic, explicit positions
 * (position, committed, seek, commit(offset), lag), listing and deletion, deletion of consumed
 * entries at the slowest consumer, forced skips under a retention bound, limits and
 * validation, and logs written before named consumers. Kill -9 cycles: consumers-crash.test.ts.
 */
import { readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { FsyncSchedule, ReadConsistency, Walrus, WalrusError } from '../dist/index.js';
import { collect, pseudoRandom, tempDir } from './helpers.js';

/** Tiny segments: 4 slots of 4 KiB, so a few hundred entries fill several files. */
const SMALL = { shards: 1, blockBytes: 4096, segmentBlocks: 4, fsync: FsyncSchedule.NoFsync } as const;

const segments = (dir: string): number => readdirSync(dir).filter((f) => f.endsWith('.seg')).length;
const text = (e: { data: Buffer } | null | undefined): string | undefined => e?.data.toString();

async function drain(read: () => Promise<{ offset: number }[]>): Promise<number[]> {
  const out: number[] = [];
  for (let b = await read(); b.length > 0; b = await read()) out.push(...b.map((e) => e.offset));
  return out;
}

/** Deletion is done when a round of `n` position queries (each a turn of the worker's loop) deleted nothing more. */
async function quiet(dir: string, turn: () => Promise<unknown>, n = 20): Promise<void> {
  for (let round = 0; round < 50; round++) {
    const before = segments(dir);
    for (let k = 0; k < n; k++) await turn();
    if (segments(dir) === before) return;
  }
  throw new Error('segments still being deleted after 50 rounds');
}

/** 300 entries of 200 bytes in topic 'q', written to the files: several tiny segments. */
async function fillQueue(wal: Walrus): Promise<void> {
  for (let i = 0; i < 300; i++) wal.append('q', pseudoRandom(i + 1, 200));
  await wal.flush();
}

async function until(cond: () => boolean, ms: number): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error(`not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('named consumers', () => {
  it('read the same topic independently of each other and of the default consumer', async () => {
    const wal = await Walrus.open({ dir: tempDir(), shards: 2 });
    try {
      for (let i = 0; i < 50; i++) wal.append('jobs', `j${i}`);
      const runner = wal.consumer('runner');
      const audit = wal.consumer('audit', { consistency: ReadConsistency.atLeastOnce(10) });
      expect(runner.name).toBe('runner');
      expect(audit.consistency).toEqual(ReadConsistency.atLeastOnce(10));
      const a = await drain(() => runner.batchRead('jobs', 100));
      const b = await drain(async () => (await audit.fetch('jobs', { maxEntries: 7 })).toArray());
      const c: number[] = [];
      for (let e = await wal.readNext('jobs'); e; e = await wal.readNext('jobs')) c.push(e.offset);
      const all = Array.from({ length: 50 }, (_, i) => i);
      expect(a).toEqual(all);
      expect(b).toEqual(all);
      expect(c).toEqual(all);
      // A second handle of a name is the same consumer.
      expect(await wal.consumer('runner').readNext('jobs')).toBeNull();
      wal.append('jobs', 'j50');
      expect(text(await wal.consumer('runner').readNext('jobs'))).toBe('j50');
      expect(text(await audit.readNext('jobs'))).toBe('j50');
    } finally {
      await wal.close();
    }
  });

  it('keep their positions across a clean reopen: StrictlyAtOnce exactly, atLeastOnce(n) at the committed position', async () => {
    const dir = tempDir();
    let wal = await Walrus.open({ dir, shards: 1 });
    for (let i = 0; i < 20; i++) wal.append('t', `e${i}`);
    await wal.consumer('s').fetch('t', { maxEntries: 6 }); // 0..5, committed at once
    const lazy = wal.consumer('l', { consistency: ReadConsistency.atLeastOnce(100) });
    await lazy.fetch('t', { maxEntries: 4 }); // 0..3 delivered
    await lazy.fetch('t', { maxEntries: 4 }); // commits 0..3, delivers 4..7
    await wal.close();
    wal = await Walrus.open({ dir, shards: 1 });
    try {
      expect(text(await wal.consumer('s').readNext('t'))).toBe('e6');
      const l = wal.consumer('l', { consistency: ReadConsistency.atLeastOnce(100) });
      expect(await l.committed('t')).toBe(4);
      expect(text(await l.readNext('t'))).toBe('e4');
      // The default consumer never read: it starts at the first entry.
      expect(text(await wal.readNext('t'))).toBe('e0');
    } finally {
      await wal.close();
    }
  });

  it('position, committed, lag, seek and commit(offset) follow the written rules', async () => {
    const dir = tempDir();
    const wal = await Walrus.open({ dir, shards: 1 });
    try {
      const c = wal.consumer('c', { consistency: ReadConsistency.atLeastOnce(1000) });
      // A topic with no entry: everything is 0, seek and commit change nothing.
      expect(await c.position('none')).toBe(0);
      expect(await c.lag('none')).toBe(0);
      await c.seek('none', 5);
      await c.commit('none', 5);
      for (let i = 0; i < 10; i++) wal.append('t', `e${i}`);
      expect(await c.position('t')).toBe(0);
      expect(await c.lag('t')).toBe(10);
      await c.fetch('t', { maxEntries: 3 }); // delivers 0..2, commits nothing yet
      expect(await c.position('t')).toBe(3);
      expect(await c.committed('t')).toBe(0);
      expect(await c.lag('t')).toBe(10);
      await c.commit('t');
      expect(await c.committed('t')).toBe(3);
      expect(await c.lag('t')).toBe(7);
      // commit(offset) past where reads were: reads continue from there.
      await c.commit('t', 6);
      expect(await c.committed('t')).toBe(6);
      expect(text(await c.readNext('t'))).toBe('e6');
      // commit(offset) below: the committed position moves back, reads go on where they were.
      await c.commit('t', 2);
      expect(await c.committed('t')).toBe(2);
      expect(await c.position('t')).toBe(7);
      // seek: clamped to [first stored entry, end]; everything before it is consumed.
      await c.seek('t', 1_000);
      expect(await c.position('t')).toBe(10);
      expect(await c.committed('t')).toBe(10);
      expect(await c.readNext('t')).toBeNull();
      await c.seek('t', 4);
      expect(text(await c.readNext('t'))).toBe('e4');
      await c.commit('t', 1_000);
      expect(await c.committed('t')).toBe(10);
      expect(await c.lag('t')).toBe(0);
      const listed = await wal.consumers();
      expect(listed).toEqual([{ name: 'c', topics: [{ topic: 't', committed: 10, position: 10, lag: 0, skipped: 0 }] }]);
    } finally {
      await wal.close();
    }
  });

  it('seek below the first stored entry lands on it: consumed entries whose segments are gone are not delivered', async () => {
    const dir = tempDir();
    const wal = await Walrus.open({ dir, ...SMALL });
    try {
      await fillQueue(wal);
      const only = wal.consumer('only');
      await drain(() => only.batchRead('q', 1 << 20));
      await until(() => segments(dir) <= 2, 5000);
      await only.seek('q', 0);
      // The first stored entry after the seek (the seek commits it: nothing after it can be
      // deleted now; before it, retention may still have been retiring the current segment).
      const first = (await collect(wal.iterate('q')))[0]?.offset ?? 300;
      expect(first).toBeGreaterThan(0);
      expect(await only.position('q')).toBe(first);
      expect((await only.readNext('q'))?.offset ?? 300).toBe(first);
    } finally {
      await wal.close();
    }
  });

  it('deletion of consumed entries waits for the slowest consumer; a default consumer that never read the topic does not hold it', async () => {
    const dir = tempDir();
    const wal = await Walrus.open({ dir, ...SMALL });
    try {
      await fillQueue(wal);
      const before = segments(dir);
      expect(before).toBeGreaterThanOrEqual(4);
      const fast = wal.consumer('fast');
      const slow = wal.consumer('slow');
      // The slow consumer has a position before the fast one consumes anything (a consumer
      // with no position in a topic holds nothing back: it starts at the first stored entry).
      expect((await slow.fetch('q', { maxEntries: 10 })).length).toBe(10);
      expect(await drain(() => fast.batchRead('q', 1 << 20))).toHaveLength(300);
      await quiet(dir, () => slow.position('q'));
      // Everything from the slow consumer's position is still stored.
      expect((await collect(wal.iterate('q')))[0]!.offset).toBeLessThanOrEqual(10);
      expect(segments(dir)).toBeGreaterThanOrEqual(before - 1);
      // Once it has consumed everything too, the files go.
      expect((await drain(() => slow.batchRead('q', 1 << 20)))[0]).toBe(10);
      await until(() => segments(dir) <= 2, 5000);
      // Retention may still retire the current segment (everything in it is consumed): the
      // first stored entry is taken once it has stopped.
      await quiet(dir, () => slow.position('q'));
      // The default consumer never read 'q': it now starts at the first entry still stored.
      const first = (await collect(wal.iterate('q')))[0]?.offset;
      expect((await wal.readNext('q'))?.offset).toBe(first);
    } finally {
      await wal.close();
    }
  });

  it('a default consumer that has read a topic holds its entries like any consumer', async () => {
    const dir = tempDir();
    const wal = await Walrus.open({ dir, ...SMALL });
    try {
      await fillQueue(wal);
      const before = segments(dir);
      expect((await wal.readNext('q'))?.offset).toBe(0);
      await drain(() => wal.consumer('fast').batchRead('q', 1 << 20));
      await quiet(dir, () => wal.consumer('fast').position('q'));
      expect((await collect(wal.iterate('q')))[0]!.offset).toBeLessThanOrEqual(1);
      expect(segments(dir)).toBeGreaterThanOrEqual(before - 1);
    } finally {
      await wal.close();
    }
  });

  it('a retention bound deletes what a slow consumer had not read: it jumps forward and the skip is counted', async () => {
    const dir = tempDir();
    const segBytes = 4096 + 4 * 4096;
    const wal = await Walrus.open({ dir, ...SMALL, retentionBytes: 3 * segBytes });
    try {
      wal.append('log', 'first');
      const late = wal.consumer('late');
      await late.seek('log', 0); // a position at offset 0, durable
      for (let i = 1; i < 600; i++) wal.append('log', pseudoRandom(i, 200));
      await wal.flush();
      await until(() => segments(dir) <= 4, 5000);
      const kept = await collect(wal.iterate('log'));
      expect(kept[0]!.offset).toBeGreaterThan(0);
      expect((await late.readNext('log'))?.offset).toBe(kept[0]!.offset);
      const [info] = await wal.consumers();
      expect(info!.name).toBe('late');
      expect(info!.topics[0]!.skipped).toBe(kept[0]!.offset);
    } finally {
      await wal.close();
    }
  });

  it('deleteConsumer removes a consumer durably; it then holds nothing back, and the name starts afresh', async () => {
    const dir = tempDir();
    let wal = await Walrus.open({ dir, ...SMALL });
    await fillQueue(wal);
    await wal.consumer('stuck').seek('q', 0);
    await drain(() => wal.consumer('a').batchRead('q', 1 << 20));
    await quiet(dir, () => wal.consumer('a').position('q'));
    expect((await collect(wal.iterate('q')))[0]!.offset).toBe(0);
    await wal.deleteConsumer('stuck');
    await wal.deleteConsumer('never-existed');
    await until(() => segments(dir) <= 2, 5000);
    expect((await wal.consumers()).map((c) => c.name)).toEqual(['a']);
    await wal.close();
    wal = await Walrus.open({ dir, ...SMALL });
    try {
      expect((await wal.consumers()).map((c) => c.name)).toEqual(['a']);
      const again = wal.consumer('stuck');
      const first = (await collect(wal.iterate('q')))[0]?.offset ?? 300;
      expect(first).toBeGreaterThan(0);
      expect((await again.readNext('q'))?.offset ?? 300).toBe(first);
    } finally {
      await wal.close();
    }
  });

  it('subscribe, read streams and typed views read with the consumer position', async () => {
    const wal = await Walrus.open({ dir: tempDir(), shards: 1 });
    try {
      const orders = wal.typed<{ id: number }>('orders');
      for (let i = 0; i < 5; i++) orders.append({ id: i });
      const c = wal.consumer('sub');
      const it = c.subscribe('orders');
      expect((await it.next()).value.offset).toBe(0);
      await it.return?.();
      const values: number[] = [];
      for await (const e of c.typed<{ id: number }>('orders').subscribe()) {
        values.push(e.value.id);
        if (e.offset === 4) break;
      }
      expect(values).toEqual([1, 2, 3, 4]);
      const s = wal.consumer('stream').createReadStream('orders', { live: false, mode: 'values' });
      const streamed: number[] = [];
      for await (const e of s) streamed.push((e as { value: { id: number } }).value.id);
      expect(streamed).toEqual([0, 1, 2, 3, 4]);
      // None of it moved the default consumer.
      expect((await wal.readNext('orders'))?.offset).toBe(0);
    } finally {
      await wal.close();
    }
  });

  it('validates names and arguments: TypeError or ERR_WALRUS_INVALID_CONSUMER, nothing changed', async () => {
    const wal = await Walrus.open({ dir: tempDir(), shards: 1 });
    try {
      expect(() => wal.consumer(42 as never)).toThrow(TypeError);
      for (const bad of ['', 'a\0b', '\uD800', 'x'.repeat(256)]) {
        expect(() => wal.consumer(bad)).toThrow(expect.objectContaining({ code: 'ERR_WALRUS_INVALID_CONSUMER' }));
        await expect(wal.deleteConsumer(bad)).rejects.toBeInstanceOf(WalrusError);
      }
      expect(() => wal.consumer('ok', { consistency: 'strict' as never })).toThrow(TypeError);
      expect(() => wal.consumer('ok', null as never)).toThrow(TypeError);
      const c = wal.consumer('ok');
      wal.append('t', 'x');
      await expect(c.seek('t', -1)).rejects.toThrow(RangeError);
      await expect(c.commit('t', 1.5)).rejects.toThrow(RangeError);
      await expect(c.seek('t', '1' as never)).rejects.toThrow(TypeError);
      await expect(c.position('')).rejects.toMatchObject({ code: 'ERR_WALRUS_INVALID_TOPIC' });
      expect(await wal.consumers()).toEqual([]);
    } finally {
      await wal.close();
    }
    await expect(wal.consumer.bind(wal, 'x')).toThrow(expect.objectContaining({ code: 'ERR_WALRUS_CLOSED' }));
  });

  it(`10,000 consumer-topic pairs (100 consumers x 100 topics) recover exactly, through snapshots of deletions too`, async () => {
    const dir = tempDir();
    const topics = Array.from({ length: 100 }, (_, i) => `t${i}`);
    const names = Array.from({ length: 100 }, (_, i) => `c${i}`);
    let wal = await Walrus.open({ dir, ...SMALL, shards: 2 });
    for (const t of topics) for (let k = 0; k < 20; k++) wal.append(t, pseudoRandom(k + 1, 100));
    // Consumer i has consumed (i % 20) + 1 entries of every topic.
    await Promise.all(names.map(async (n, i) => {
      const c = wal.consumer(n);
      for (const t of topics) await c.seek(t, (i % 20) + 1);
    }));
    const expected = (i: number): number => (i % 20) + 1;
    const check = async (w: Walrus): Promise<void> => {
      const listed = await w.consumers();
      expect(listed.map((c) => c.name).sort()).toEqual([...names].sort());
      for (const c of listed) {
        const i = Number(c.name.slice(1));
        expect(c.topics).toHaveLength(100);
        for (const t of c.topics) expect(t.committed).toBe(expected(i));
      }
    };
    await check(wal);
    // More appends and consumption by the default consumer: segments are deleted and their
    // meta blocks restated by snapshots, each followed by a record of every named consumer.
    for (let r = 0; r < 3; r++) {
      for (const t of topics) for (let k = 0; k < 10; k++) wal.append(t, pseudoRandom(k + 1, 100));
      for (const t of topics) await drain(() => wal.batchRead(t, 1 << 20));
    }
    await check(wal);
    await wal.close();
    wal = await Walrus.open({ dir, ...SMALL, shards: 2 });
    try {
      await check(wal);
      expect(wal.stats().recoveredTornBytes).toBe(0);
    } finally {
      await wal.close();
    }
  }, 120_000);

  it('a log written before named consumers (no record of theirs) opens and gains consumers; the default cursor is untouched', async () => {
    const dir = tempDir();
    let wal = await Walrus.open({ dir, shards: 1 });
    for (let i = 0; i < 10; i++) wal.append('t', `e${i}`);
    await wal.fetch('t', { maxEntries: 3 });
    await wal.close();
    wal = await Walrus.open({ dir, shards: 1 });
    try {
      expect(await wal.consumers()).toEqual([]);
      expect(text(await wal.consumer('new').readNext('t'))).toBe('e0');
      expect(text(await wal.readNext('t'))).toBe('e3');
    } finally {
      await wal.close();
    }
  });
});
