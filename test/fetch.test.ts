/**
 * wal.fetch and TypedTopic.fetch: the bulk read. The same read as batchRead (cursor,
 * consistency, checkpoint), returned as a RecordBatch that builds nothing per entry until
 * asked. The crash test of a fetching consumer is in test/crash.test.ts.
 */
import { copyFileSync, closeSync, openSync, readFileSync, readdirSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Walrus, FsyncSchedule, MAX_FETCH_ENTRIES, ReadConsistency, RecordBatch, TypedRecordBatch, WalrusError } from '../dist/index.js';
import type { Entry } from '../dist/index.js';
import { SEMANTIC_BACKENDS, pseudoRandom, tempDir } from './helpers.js';

/** Every accessor of `b` agrees with the others and with `expected` (offset -> payload). */
function checkBatch(b: RecordBatch, topic: string, first: number, n: number, expected: (offset: number) => Buffer): void {
  expect(b).toBeInstanceOf(RecordBatch);
  expect(b.topic).toBe(topic);
  expect(b.length).toBe(n);
  expect(b.firstOffset).toBe(n === 0 ? -1 : first);
  let bytes = 0;
  for (let i = 0; i < n; i++) {
    expect(b.offset(i)).toBe(first + i);
    expect(Buffer.compare(b.payload(i), expected(first + i))).toBe(0);
    bytes += b.payload(i).length;
  }
  expect(b.byteLength).toBe(bytes);
  const iterated: Entry[] = [...b];
  expect(iterated.map((e) => e.offset)).toEqual(Array.from({ length: n }, (_, i) => first + i));
  expect(iterated.every((e, i) => e.topic === topic && Buffer.compare(e.data, b.payload(i)) === 0)).toBe(true);
  expect([...b.payloads()].map((p) => p.toString('hex'))).toEqual(iterated.map((e) => e.data.toString('hex')));
  // (Buffers compared with Buffer.compare: toEqual walks them byte by byte, slowly.)
  const same = (a: Entry | undefined, e: Entry): boolean => a !== undefined && a.topic === e.topic && a.offset === e.offset && Buffer.compare(a.data, e.data) === 0;
  if (n > 0) {
    expect(same(b.at(0), iterated[0]!)).toBe(true);
    expect(same(b.at(-1), iterated[n - 1]!)).toBe(true);
    expect(same(b.at(-n), iterated[0]!)).toBe(true);
  }
  expect(b.at(n)).toBeUndefined();
  expect(b.at(-n - 1)).toBeUndefined();
}

const text = (offset: number): Buffer => Buffer.from(`m${offset}`);

describe.each(SEMANTIC_BACKENDS)('fetch (%s backend)', (backend) => {
  it('peeks without moving the cursor and checkpoints with it; the accessors agree with batchRead', async () => {
    const wal = await Walrus.open({ backend, dir: tempDir(), shards: 1 });
    try {
      for (let i = 0; i < 10; i++) wal.append('q', text(i));
      const peeked = await wal.fetch('q', { checkpoint: false });
      checkBatch(peeked, 'q', 0, 10, text);
      checkBatch(await wal.fetch('q', { checkpoint: false, maxEntries: 4 }), 'q', 0, 4, text);
      const viaBatchRead = await wal.batchRead('q', 1 << 20, false);
      expect([...peeked]).toEqual(viaBatchRead);
      checkBatch(await wal.fetch('q', { maxEntries: 4 }), 'q', 0, 4, text);
      checkBatch(await wal.fetch('q', { checkpoint: false }), 'q', 4, 6, text);
      checkBatch(await wal.fetch('q'), 'q', 4, 6, text);
      checkBatch(await wal.fetch('q'), 'q', 0, 0, text);
      wal.append('q', text(10));
      checkBatch(await wal.fetch('q'), 'q', 10, 1, text);
    } finally {
      await wal.close();
    }
  });

  it('counts payload bytes like batchRead, returns at least one entry, an empty batch when none', async () => {
    const wal = await Walrus.open({ backend, dir: tempDir(), shards: 1, fsync: FsyncSchedule.NoFsync });
    try {
      const sizes = [5000, 10, 10, 10, 0, 0, 7];
      const payload = (off: number): Buffer => Buffer.alloc(sizes[off]!, off + 1);
      sizes.forEach((_, i) => wal.append('b', payload(i)));
      // The first entry alone exceeds maxBytes: it is returned anyway, alone.
      checkBatch(await wal.fetch('b', { maxBytes: 100 }), 'b', 0, 1, payload);
      // 10 + 10 <= 25 < 30: two entries, as batchRead counts them.
      checkBatch(await wal.fetch('b', { maxBytes: 25, checkpoint: false }), 'b', 1, 2, payload);
      expect((await wal.batchRead('b', 25, false)).map((e) => e.offset)).toEqual([1, 2]);
      checkBatch(await wal.fetch('b', { maxBytes: 0, checkpoint: false }), 'b', 1, 1, payload);
      // Empty payloads count nothing: 10 + 10 + 10 + 0 + 0 <= 30 < 37.
      checkBatch(await wal.fetch('b', { maxBytes: 30, checkpoint: false }), 'b', 1, 5, payload);
      checkBatch(await wal.fetch('b'), 'b', 1, 6, payload);
      const empty = await wal.fetch('b');
      checkBatch(empty, 'b', 0, 0, payload);
      expect(empty.byteLength).toBe(0);
      // The default maxBytes is 1 MiB: 1,024 entries of 1 KiB fill it exactly.
      const kib = (off: number): Buffer => Buffer.alloc(1024, off % 251);
      for (let i = 0; i < 1500; i++) wal.append('kib', kib(i));
      const full = await wal.fetch('kib');
      checkBatch(full, 'kib', 0, 1024, kib);
      expect(full.byteLength).toBe(1 << 20);
      checkBatch(await wal.fetch('kib'), 'kib', 1024, 476, kib);
    } finally {
      await wal.close();
    }
  });

  it('maxEntries: any count up to 65,536 (the default), past batchRead\'s 2,000', async () => {
    const wal = await Walrus.open({ backend, dir: tempDir(), shards: 1, fsync: FsyncSchedule.NoFsync });
    try {
      expect(MAX_FETCH_ENTRIES).toBe(65_536);
      const total = MAX_FETCH_ENTRIES + 4464;
      const one = Array.from({ length: 2000 }, () => 'x');
      for (let n = 0; n < total; n += 2000) wal.batchAppend('many', one.slice(0, Math.min(2000, total - n)));
      const x = (): Buffer => Buffer.from('x');
      checkBatch(await wal.fetch('many', { maxEntries: 3, checkpoint: false }), 'many', 0, 3, x);
      checkBatch(await wal.fetch('many', { maxEntries: 5000, checkpoint: false }), 'many', 0, 5000, x);
      expect((await wal.batchRead('many', 1 << 30, false)).length).toBe(2000);
      const first = await wal.fetch('many');
      expect(first.length).toBe(MAX_FETCH_ENTRIES);
      expect(first.byteLength).toBe(MAX_FETCH_ENTRIES);
      expect(first.offset(MAX_FETCH_ENTRIES - 1)).toBe(MAX_FETCH_ENTRIES - 1);
      checkBatch(await wal.fetch('many', { maxEntries: MAX_FETCH_ENTRIES }), 'many', MAX_FETCH_ENTRIES, 4464, x);
      expect((await wal.fetch('many')).length).toBe(0);
    } finally {
      await wal.close();
    }
  });

  it('an unknown topic gives an empty batch and is not created; an empty batch answers every accessor', async () => {
    const wal = await Walrus.open({ backend, dir: tempDir(), shards: 2 });
    try {
      const b = await wal.fetch('never-appended');
      checkBatch(b, 'never-appended', 0, 0, text);
      expect(wal.topics()).toEqual([]);
      expect(() => b.offset(0)).toThrow(expect.objectContaining({ name: 'RangeError', code: 'ERR_OUT_OF_RANGE' }));
      expect(() => b.payload(0)).toThrow(/the batch is empty/);
      expect([...b.payloads()]).toEqual([]);
      expect(b.at(0)).toBeUndefined();
      expect(b.at(-1)).toBeUndefined();
      // A topic whose entries were all consumed: empty too, as peek and as checkpoint.
      wal.append('drained', 'a');
      expect((await wal.fetch('drained')).length).toBe(1);
      checkBatch(await wal.fetch('drained', { checkpoint: false }), 'drained', 0, 0, text);
      checkBatch(await wal.fetch('drained'), 'drained', 0, 0, text);
    } finally {
      await wal.close();
    }
  });

  it('validates its arguments and the indexes of a batch; rejects once closed', async () => {
    const wal = await Walrus.open({ backend, dir: tempDir(), shards: 1 });
    const type = { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' };
    const range = { name: 'RangeError', code: 'ERR_OUT_OF_RANGE' };
    await expect(wal.fetch(5 as never)).rejects.toMatchObject({ ...type, message: expect.stringContaining('"topic"') });
    await expect(wal.fetch('')).rejects.toMatchObject({ code: 'ERR_WALRUS_INVALID_TOPIC' });
    await expect(wal.fetch('a\0b')).rejects.toMatchObject({ code: 'ERR_WALRUS_INVALID_TOPIC' });
    await expect(wal.fetch('t', null as never)).rejects.toMatchObject({ ...type, message: expect.stringContaining('"options"') });
    await expect(wal.fetch('t', 5 as never)).rejects.toMatchObject({ ...type, message: expect.stringContaining('"options"') });
    await expect(wal.fetch('t', { maxBytes: '5' as never })).rejects.toMatchObject({ ...type, message: expect.stringContaining('"options.maxBytes"') });
    for (const maxBytes of [-1, 1.5, Number.NaN, 2 ** 53]) {
      await expect(wal.fetch('t', { maxBytes })).rejects.toMatchObject({ ...range, message: expect.stringContaining('"options.maxBytes"') });
    }
    await expect(wal.fetch('t', { maxEntries: '5' as never })).rejects.toMatchObject({ ...type, message: expect.stringContaining('"options.maxEntries"') });
    for (const maxEntries of [0, -1, 1.5, Number.NaN, MAX_FETCH_ENTRIES + 1, Infinity]) {
      await expect(wal.fetch('t', { maxEntries })).rejects.toMatchObject({ ...range, message: expect.stringContaining('"options.maxEntries"') });
    }
    await expect(wal.fetch('t', { maxEntries: 0 })).rejects.toThrow(/an integer from 1 to 65536/);
    await expect(wal.fetch('t', { checkpoint: 'yes' as never })).rejects.toMatchObject({ ...type, message: expect.stringContaining('"options.checkpoint"') });
    // Undefined options take their defaults.
    expect((await wal.fetch('t', { maxBytes: undefined, maxEntries: undefined, checkpoint: undefined })).length).toBe(0);
    for (let i = 0; i < 3; i++) wal.append('t', text(i));
    const b = await wal.fetch('t', { checkpoint: false });
    for (const i of [-1, 3, 1.5, Number.NaN, 2 ** 32]) {
      expect(() => b.offset(i)).toThrow(expect.objectContaining({ ...range, message: expect.stringContaining('"index"') }));
      expect(() => b.payload(i)).toThrow(expect.objectContaining(range));
    }
    expect(() => b.offset(3)).toThrow(/an integer from 0 to 2/);
    expect(() => b.offset('1' as never)).toThrow(expect.objectContaining(type));
    expect(() => b.payload(undefined as never)).toThrow(expect.objectContaining(type));
    expect(() => b.at('1' as never)).toThrow(expect.objectContaining(type));
    expect(() => b.at(0.5)).toThrow(expect.objectContaining(range));
    await wal.close();
    await expect(wal.fetch('t')).rejects.toMatchObject({ code: 'ERR_WALRUS_CLOSED' });
    await expect(wal.fetch('unknown')).rejects.toMatchObject({ code: 'ERR_WALRUS_CLOSED' });
    // A batch read before close stays readable: it holds its own buffers.
    expect(b.payload(2).toString()).toBe('m2');
  });

  it('takes turns on the cursor with readNext and batchRead: no entry twice, none skipped', async () => {
    const wal = await Walrus.open({ backend, dir: tempDir(), shards: 2, fsync: FsyncSchedule.NoFsync });
    try {
      const payload = (off: number): Buffer => pseudoRandom(off + 1, 1 + ((off * 37) % 300));
      let appended = 0;
      let next = 0;
      let seed = 12345;
      const rand = (n: number): number => {
        seed = (seed * 1103515245 + 12345) % 2 ** 31;
        return seed % n;
      };
      const got: number[] = [];
      for (let round = 0; round < 400; round++) {
        // Appends keep arriving between the reads.
        for (let k = rand(12); k > 0; k--) wal.append('mix', payload(appended++));
        const kind = rand(6);
        const maxBytes = rand(2) === 0 ? rand(600) : 1 << 20;
        if (kind === 0) {
          const e = await wal.readNext('mix');
          // The next entry, or null once every entry appended so far was read.
          expect(e?.offset ?? appended).toBe(next);
          if (e !== null) {
            got.push(e.offset);
            expect(Buffer.compare(e.data, payload(e.offset))).toBe(0);
          }
        } else if (kind === 1) {
          for (const e of await wal.batchRead('mix', maxBytes)) {
            got.push(e.offset);
            expect(Buffer.compare(e.data, payload(e.offset))).toBe(0);
          }
        } else if (kind === 2) {
          // A peek of either kind reads where the next checkpointing read starts.
          const b = await wal.fetch('mix', { maxBytes, checkpoint: false });
          expect(b.firstOffset).toBe(next < appended ? next : -1);
          const p = await wal.batchRead('mix', maxBytes, false);
          expect(p.map((e) => e.offset)).toEqual(Array.from({ length: b.length }, (_, i) => b.offset(i)));
        } else {
          const b = await wal.fetch('mix', { maxBytes, maxEntries: 1 + rand(50) });
          if (b.length > 0) expect(b.firstOffset).toBe(next);
          for (let i = 0; i < b.length; i++) {
            got.push(b.offset(i));
            expect(Buffer.compare(b.payload(i), payload(b.offset(i)))).toBe(0);
          }
        }
        next = got.length;
      }
      for (let b = await wal.fetch('mix'); b.length > 0; b = await wal.fetch('mix')) for (let i = 0; i < b.length; i++) got.push(b.offset(i));
      // Every entry once, in order.
      expect(got).toEqual(Array.from({ length: appended }, (_, i) => i));
      expect(appended).toBeGreaterThan(1000);
    } finally {
      await wal.close();
    }
  });

  it('payloads are views of the read buffers (no copies) and stay valid after later reads', async () => {
    const wal = await Walrus.open({ backend, dir: tempDir(), shards: 1, blockBytes: 4096, segmentBlocks: 4, fsync: FsyncSchedule.NoFsync });
    try {
      const payload = (off: number): Buffer => pseudoRandom(off + 7, 100);
      for (let i = 0; i < 500; i++) wal.append('v', payload(i));
      const b = await wal.fetch('v', { maxEntries: 20 });
      const views = [...b.payloads()];
      const entries = [...b];
      // Every accessor shows the same memory: a byte written through one is seen by the others.
      expect(b.payload(3).buffer).toBe(views[3]!.buffer);
      expect(b.payload(3).byteOffset).toBe(views[3]!.byteOffset);
      const saved = views[3]![0]!;
      views[3]![0] = saved ^ 0xff;
      expect(b.payload(3)[0]).toBe(saved ^ 0xff);
      expect(entries[3]!.data[0]).toBe(saved ^ 0xff);
      expect(b.at(3)!.data[0]).toBe(saved ^ 0xff);
      views[3]![0] = saved;
      // Later reads of every kind, with appends between them, consume the rest (and so let the
      // worker delete consumed segments): the views keep their bytes.
      for (let r = await wal.fetch('v', { maxBytes: 1000 }); r.length > 0; r = await wal.fetch('v', { maxBytes: 1000 })) {
        wal.append('w', pseudoRandom(r.firstOffset, 3000));
        await wal.readNext('w');
      }
      await wal.batchRead('w', 1 << 30);
      for (let i = 0; i < 20; i++) {
        expect(Buffer.compare(views[i]!, payload(i))).toBe(0);
        expect(Buffer.compare(entries[i]!.data, payload(i))).toBe(0);
        expect(Buffer.compare(b.payload(i), payload(i))).toBe(0);
      }
    } finally {
      await wal.close();
    }
  });

  it('release(): the batch and every view of it become empty, and later reads fill its buffers again with the right bytes', async () => {
    // 256 KiB blocks: a read's chunks are mostly larger than the pool's smallest buffer (64 KiB).
    const wal = await Walrus.open({ backend, dir: tempDir(), shards: 1, blockBytes: 256 * 1024, fsync: FsyncSchedule.NoFsync });
    try {
      const payload = (off: number): Buffer => pseudoRandom(off + 11, 300 + ((off * 37) % 700));
      const n = 6000;
      for (let i = 0; i < n; i++) wal.append('r', payload(i));
      const first = await wal.fetch('r', { maxBytes: 256 * 1024 });
      const view = first.payload(0);
      const entry = first.at(1)!;
      const kept = Buffer.from(first.payload(2));
      expect(first.firstOffset).toBe(0);
      expect(first.length).toBeGreaterThan(100);
      let next = first.length;
      first.release();
      expect([first.length, first.firstOffset, first.byteLength]).toEqual([0, -1, 0]);
      expect([...first]).toEqual([]);
      expect(() => first.payload(0)).toThrow(RangeError);
      // The views did not keep the memory: it moved to the worker (0 bytes here, not another read's).
      expect([view.length, entry.data.length]).toEqual([0, 0]);
      expect(Buffer.compare(kept, payload(2))).toBe(0);
      first.release(); // a second call does nothing
      // Every later batch, read into recycled buffers, holds exactly its entries.
      for (;;) {
        const b = await wal.fetch('r', { maxBytes: 256 * 1024 });
        if (b.length === 0) break;
        expect(b.firstOffset).toBe(next);
        for (let k = 0; k < b.length; k++) expect(Buffer.compare(b.payload(k), payload(next + k))).toBe(0);
        next += b.length;
        b.release();
      }
      expect(next).toBe(n);
      // A batch of a typed topic releases the same way.
      const t = wal.typed<{ i: number }>('typed');
      t.batchAppend(Array.from({ length: 50 }, (_, i) => ({ i })));
      const tb = await t.fetch();
      const v = tb.value(3);
      tb.release();
      expect([tb.length, tb.records.length]).toEqual([0, 0]);
      expect(v).toEqual({ i: 3 });
    } finally {
      await wal.close();
    }
  });

  it('spans several blocks and segment files in one batch (4 KiB blocks, 4 per segment)', async () => {
    const dir = tempDir();
    const wal = await Walrus.open({ backend, dir, shards: 1, blockBytes: 4096, segmentBlocks: 4, fsync: FsyncSchedule.NoFsync });
    try {
      const payload = (off: number): Buffer => pseudoRandom(off + 100, 200 + (off % 50));
      for (let i = 0; i < 400; i++) wal.append('s', payload(i));
      await wal.flush();
      // About 90 KiB of records: over 20 blocks, 5 or more segment files.
      if (backend !== 'memory') expect(readdirSync(dir).filter((f) => f.endsWith('.seg')).length).toBeGreaterThanOrEqual(5);
      checkBatch(await wal.fetch('s', { checkpoint: false }), 's', 0, 400, payload);
      checkBatch(await wal.fetch('s', { maxEntries: 150 }), 's', 0, 150, payload);
      checkBatch(await wal.fetch('s'), 's', 150, 250, payload);
    } finally {
      await wal.close();
    }
  });

  it('entries larger than the ring (they travel beside it) come back whole, alone past maxBytes', async () => {
    const wal = await Walrus.open({ backend, dir: tempDir(), shards: 1, ringBytes: 64 * 1024, fsync: FsyncSchedule.NoFsync });
    try {
      const sizes = [10, 200_000, 20, 100_000, 300_000, 30];
      const payload = (off: number): Buffer => pseudoRandom(off + 1000, sizes[off]!);
      sizes.forEach((_, i) => wal.append('big', payload(i)));
      checkBatch(await wal.fetch('big', { maxBytes: 100_000 }), 'big', 0, 1, payload);
      checkBatch(await wal.fetch('big', { maxBytes: 1 }), 'big', 1, 1, payload);
      checkBatch(await wal.fetch('big', { maxBytes: 100_020 }), 'big', 2, 2, payload);
      checkBatch(await wal.fetch('big'), 'big', 4, 2, payload);
    } finally {
      await wal.close();
    }
  });

  it('a typed topic fetches a TypedRecordBatch that decodes each value when asked', async () => {
    const wal = await Walrus.open({ backend, dir: tempDir(), shards: 1 });
    try {
      const t = wal.typed<{ id: number; at: Date; tags: Set<string> }>('typed');
      const value = (id: number) => ({ id, at: new Date(1_700_000_000_000 + id), tags: new Set([`t${id % 3}`]) });
      t.batchAppend(Array.from({ length: 100 }, (_, i) => value(i)));
      const peek = await t.fetch({ maxEntries: 30, checkpoint: false });
      expect(peek).toBeInstanceOf(TypedRecordBatch);
      expect([peek.topic, peek.length, peek.firstOffset]).toEqual(['typed', 30, 0]);
      expect(peek.records).toBeInstanceOf(RecordBatch);
      expect(peek.byteLength).toBe(peek.records.byteLength);
      expect(peek.records.payload(0)[0]).toBe(0xc1);
      expect(peek.value(7)).toEqual(value(7));
      expect(peek.offset(7)).toBe(7);
      expect(peek.at(-1)).toEqual({ topic: 'typed', offset: 29, value: value(29) });
      expect(peek.at(30)).toBeUndefined();
      expect([...peek.values()]).toEqual(Array.from({ length: 30 }, (_, i) => value(i)));
      expect([...peek]).toEqual(await t.batchRead(1 << 20, false).then((all) => all.slice(0, 30)));
      expect(() => peek.value(30)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
      // Checkpointing: the cursor moves as with the byte API.
      expect((await t.fetch({ maxEntries: 60 })).length).toBe(60);
      // One entry that is not a typed record fails only its own decode.
      wal.append('typed', 'not msgpack');
      t.append(value(101));
      const rest = await t.fetch();
      expect([rest.firstOffset, rest.length]).toEqual([60, 42]);
      expect(rest.value(39)).toEqual(value(99));
      expect(() => rest.value(40)).toThrow(expect.objectContaining({ code: 'ERR_WALRUS_DECODE', topic: 'typed', offset: 100 }));
      expect(() => rest.at(-2)).toThrow(WalrusError);
      expect(rest.value(41)).toEqual(value(101));
      expect(rest.records.payload(40).toString()).toBe('not msgpack');
      expect((await t.fetch()).length).toBe(0);
      await expect(t.fetch({ maxEntries: 0 })).rejects.toMatchObject({ code: 'ERR_OUT_OF_RANGE' });
      const none = await wal.typed('nothing').fetch();
      expect([none.length, none.firstOffset, [...none]]).toEqual([0, -1, []]);
    } finally {
      await wal.close();
    }
  });
});

/**
 * The read-ahead counters of a one-shard log, once the worker has made the read-aheads of the
 * replies received so far: it makes them before it takes its next message, so the answer to
 * one more request (here a consumers() request) comes after them.
 */
async function aheadOf(wal: Walrus): Promise<{ made: number; served: number; dropped: number; failed: number; heldBytes: number }> {
  await wal.consumers();
  return wal.stats().shards[0]!.readAhead;
}

/** Payloads of 200 bytes that name their offset (so a wrong entry is seen at once). */
const sized = (offset: number): Buffer => Buffer.concat([Buffer.from(`e${String(offset).padStart(5, '0')}|`), pseudoRandom(offset + 1, 193)]);

// Read-ahead (issue 15): once a read is answered the worker reads the reader's next read; a
// request sent after a reply always finds it made (the worker makes it before it takes its
// next message), so the counts below are exact.
describe.each(SEMANTIC_BACKENDS)('read-ahead (%s backend)', (backend) => {
  it('a fetch loop is answered from read-aheads, with exactly the entries a read returns', async () => {
    const wal = await Walrus.open({ backend, dir: tempDir(), shards: 1, blockBytes: 4096, segmentBlocks: 64, fsync: FsyncSchedule.NoFsync });
    try {
      for (let i = 0; i < 1000; i++) wal.append('q', sized(i));
      for (let k = 0; k < 10; k++) checkBatch(await wal.fetch('q', { maxEntries: 100 }), 'q', k * 100, 100, sized);
      checkBatch(await wal.fetch('q', { maxEntries: 100 }), 'q', 0, 0, sized);
      // The first read is read now; the nine after it come from read-aheads; the last one
      // reached the end, so nothing more was read ahead.
      expect(await aheadOf(wal)).toEqual({ made: 9, served: 9, dropped: 0, failed: 0, heldBytes: 0 });
      // A read-ahead that reached the end is not used once the topic grew: a read now returns more.
      for (let i = 1000; i < 1150; i++) wal.append('q', sized(i));
      checkBatch(await wal.fetch('q', { maxEntries: 100 }), 'q', 1000, 100, sized);
      for (let i = 1150; i < 1250; i++) wal.append('q', sized(i));
      checkBatch(await wal.fetch('q', { maxEntries: 100 }), 'q', 1100, 100, sized);
      expect(await aheadOf(wal)).toMatchObject({ made: 11, served: 9, dropped: 1 });
      // Smaller limits take a prefix of a read-ahead; larger ones read again.
      checkBatch(await wal.fetch('q', { maxEntries: 20 }), 'q', 1200, 20, sized); // read-ahead [1200, 1250) made for 100 entries
      checkBatch(await wal.fetch('q', { maxEntries: 10 }), 'q', 1220, 10, sized); // from [1220, 1240), made for 20
      checkBatch(await wal.fetch('q', { maxEntries: 30 }), 'q', 1230, 20, sized); // made for 10: read again
      expect(await aheadOf(wal)).toMatchObject({ made: 13, served: 11, dropped: 2, heldBytes: 0 });
      // Byte limits: a read-ahead that stopped at its byte limit serves the same or a smaller one.
      for (let i = 1250; i < 1400; i++) wal.append('q', sized(i));
      checkBatch(await wal.fetch('q', { maxBytes: 200 * 30 }), 'q', 1250, 30, sized);
      checkBatch(await wal.fetch('q', { maxBytes: 200 * 30 }), 'q', 1280, 30, sized);
      checkBatch(await wal.fetch('q', { maxBytes: 200 * 30 - 1 }), 'q', 1310, 29, sized);
      checkBatch(await wal.fetch('q', { maxBytes: 200 * 40 }), 'q', 1339, 40, sized);
      expect(await aheadOf(wal)).toMatchObject({ made: 17, served: 13, dropped: 3 });
    } finally {
      await wal.close();
    }
  });

  it('peek and checkpoint: a peek reads ahead what the checkpointing read then returns; a peek never moves the cursor', async () => {
    const wal = await Walrus.open({ backend, dir: tempDir(), shards: 1 });
    try {
      for (let i = 0; i < 300; i++) wal.append('q', sized(i));
      for (let k = 0; k < 3; k++) {
        checkBatch(await wal.fetch('q', { maxEntries: 100, checkpoint: false }), 'q', k * 100, 100, sized);
        checkBatch(await wal.fetch('q', { maxEntries: 100, checkpoint: false }), 'q', k * 100, 100, sized);
        checkBatch(await wal.fetch('q', { maxEntries: 100 }), 'q', k * 100, 100, sized);
      }
      // Each peek's read-ahead is the same entries again; the checkpointing read takes the
      // second peek's. The last checkpointing read reached the end: nothing read ahead.
      expect(await aheadOf(wal)).toEqual({ made: 8, served: 8, dropped: 0, failed: 0, heldBytes: 0 });
      expect(await wal.readNext('q', false)).toBeNull();
      // readNext peeks (one entry) and batchRead take turns on the same reader.
      for (let i = 300; i < 310; i++) wal.append('q', sized(i));
      expect((await wal.readNext('q', false))!.offset).toBe(300);
      expect((await wal.readNext('q', false))!.offset).toBe(300);
      expect((await wal.readNext('q'))!.offset).toBe(300);
      expect((await wal.batchRead('q', 1 << 20)).map((e) => e.offset)).toEqual([301, 302, 303, 304, 305, 306, 307, 308, 309]);
    } finally {
      await wal.close();
    }
  });

  it('a read-ahead belongs to one consumer and is dropped when its position moves (seek, commit past it, deleteConsumer)', async () => {
    const wal = await Walrus.open({ backend, dir: tempDir(), shards: 1, consistency: ReadConsistency.atLeastOnce(1000) });
    try {
      for (let i = 0; i < 1000; i++) wal.append('q', sized(i));
      const a = wal.consumer('a');
      const b = wal.consumer('b');
      checkBatch(await a.fetch('q', { maxEntries: 100 }), 'q', 0, 100, sized); // a's read-ahead: [100, 200)
      checkBatch(await b.fetch('q', { maxEntries: 100 }), 'q', 0, 100, sized); // b's own reads, b's read-ahead
      checkBatch(await wal.fetch('q', { maxEntries: 100 }), 'q', 0, 100, sized); // the default consumer's
      expect(await aheadOf(wal)).toMatchObject({ made: 3, served: 0, dropped: 0 });
      await a.seek('q', 500);
      checkBatch(await a.fetch('q', { maxEntries: 100 }), 'q', 500, 100, sized);
      await b.commit('q', 700);
      checkBatch(await b.fetch('q', { maxEntries: 100 }), 'q', 700, 100, sized);
      // A commit behind the reads does not move them: the read-ahead stays and is used.
      await wal.commit('q');
      checkBatch(await wal.fetch('q', { maxEntries: 100 }), 'q', 100, 100, sized);
      expect(await aheadOf(wal)).toMatchObject({ made: 6, served: 1, dropped: 2 });
      await wal.deleteConsumer('a');
      expect(await aheadOf(wal)).toMatchObject({ dropped: 3 });
      // The position a new consumer of that name starts from, not the old one's read-ahead.
      checkBatch(await wal.consumer('a').fetch('q', { maxEntries: 100 }), 'q', 0, 100, sized);
    } finally {
      await wal.close();
    }
  });

  it('memory is bounded: reads of more than 4 MiB are not read ahead, a read-ahead over 8 MiB is dropped, a shard keeps 16 MiB', async () => {
    const wal = await Walrus.open({ backend, dir: tempDir(), shards: 1, fsync: FsyncSchedule.NoFsync });
    try {
      const mib = (n: number, seed: number): Buffer => pseudoRandom(seed, n << 20);
      for (let i = 0; i < 4; i++) wal.append('big', mib(9, i + 1));
      // One entry of 9 MiB per read: read ahead, then dropped for the per-reader bound.
      expect((await wal.fetch('big', { maxBytes: 1 })).length).toBe(1);
      expect(await aheadOf(wal)).toMatchObject({ made: 1, served: 0, dropped: 1, heldBytes: 0 });
      // maxBytes over 4 MiB: nothing read ahead.
      expect((await wal.fetch('big', { maxBytes: (4 << 20) + 1 })).length).toBe(1);
      expect(await aheadOf(wal)).toMatchObject({ made: 1 });
      // Five readers of 3.5 MiB read-aheads: the shard keeps four, the oldest goes.
      for (let t = 0; t < 5; t++) for (let i = 0; i < 16; i++) wal.append(`t${t}`, pseudoRandom(t * 100 + i + 1, 512 << 10));
      let most = 0;
      for (let t = 0; t < 5; t++) {
        expect((await wal.fetch(`t${t}`, { maxBytes: 7 << 19 })).length).toBe(7);
        most = Math.max(most, (await aheadOf(wal)).heldBytes);
        expect((await aheadOf(wal)).heldBytes).toBeLessThanOrEqual(16 << 20);
      }
      expect(most).toBeGreaterThan(12 << 20);
      expect(await aheadOf(wal)).toMatchObject({ made: 6, dropped: 2 });
      // t0's read-ahead went first; t4's is used.
      expect((await wal.fetch('t4', { maxBytes: 7 << 19 })).firstOffset).toBe(7);
      expect((await wal.fetch('t0', { maxBytes: 7 << 19 })).firstOffset).toBe(7);
      expect(await aheadOf(wal)).toMatchObject({ served: 1 });
    } finally {
      await wal.close();
    }
  });

  it('readAhead: false reads every request when it comes', async () => {
    const wal = await Walrus.open({ backend, dir: tempDir(), shards: 1, readAhead: false });
    try {
      for (let i = 0; i < 300; i++) wal.append('q', sized(i));
      for (let k = 0; k < 3; k++) checkBatch(await wal.fetch('q', { maxEntries: 100 }), 'q', k * 100, 100, sized);
      expect(await aheadOf(wal)).toEqual({ made: 0, served: 0, dropped: 0, failed: 0, heldBytes: 0 });
    } finally {
      await wal.close();
    }
  });
});

/**
 * What a kill -9 leaves of an open log: a copy of its segment files (the page cache survives
 * a process crash), reopened. Returns where the next checkpointing read of each topic starts
 * there (the end when there is nothing to read).
 */
async function cursorsAfterCrash(dir: string, topics: string[], end: number, opts: Record<string, unknown>): Promise<number[]> {
  const snap = tempDir();
  for (const f of readdirSync(dir)) if (f.endsWith('.seg')) copyFileSync(join(dir, f), join(snap, f));
  const wal = await Walrus.open({ dir: snap, ...opts });
  try {
    const out: number[] = [];
    for (const t of topics) out.push((await wal.readNext(t, false))?.offset ?? end);
    return out;
  } finally {
    await wal.close();
  }
}

// Cursor durability is about files: the disk backend of the vitest project.
/**
 * Flips the first payload byte of the entry whose payload is `marker`, in place, in the
 * segment file of `dir` that holds it (the file the open instance reads); returns the file
 * and the position of the record (its header precedes its payload).
 */
function damagePayload(dir: string, marker: Buffer): { file: string; record: number } {
  const file = readdirSync(dir)
    .filter((f) => f.endsWith('.seg'))
    .map((f) => join(dir, f))
    .find((f) => readFileSync(f).includes(marker))!;
  const at = readFileSync(file).indexOf(marker);
  const fd = openSync(file, 'r+');
  writeSync(fd, Buffer.from('R'), 0, 1, at);
  closeSync(fd);
  return { file, record: at - 32 };
}

describe('fetch and crashes: the cursor rules of batchRead', () => {
  const job = (off: number): Buffer => Buffer.from(`j${String(off).padStart(4, '0')}`); // 5 bytes
  type Step = readonly ['read', number] | readonly ['peek', number] | readonly ['commit'];
  // maxBytes in entries of 5 bytes; 100 entries in all.
  const steps: Step[] = [['read', 4], ['read', 0], ['peek', 10], ['read', 10], ['commit'], ['read', 2], ['read', 64], ['read', 1000], ['read', 1000], ['commit']];

  it.each([
    ['StrictlyAtOnce', ReadConsistency.StrictlyAtOnce, [4, 5, 5, 15, 15, 17, 81, 100, 100, 100]],
    // A checkpointing read commits what the reads before it returned; a cursor record once
    // the committed cursor is 3 or more past the last one (at most 3 - 1 + the last read again).
    ['atLeastOnce(3)', ReadConsistency.atLeastOnce(3), [0, 4, 4, 4, 15, 15, 15, 81, 100, 100]],
  ])('%s: after each read, a crash leaves the cursor where batchRead leaves it', async (_name, consistency, expected) => {
    const dir = tempDir();
    const opts = { shards: 1, fsync: FsyncSchedule.NoFsync, consistency, blockBytes: 4096, segmentBlocks: 64 };
    const wal = await Walrus.open({ dir, ...opts });
    try {
      // 'f' is read with fetch, 'b' with batchRead: the same steps, the same results.
      for (let i = 0; i < 100; i++) for (const t of ['f', 'b']) wal.append(t, job(i));
      const seen: number[] = [];
      for (const step of steps) {
        if (step[0] === 'commit') {
          await wal.commit('f');
          await wal.commit('b');
        } else {
          const checkpoint = step[0] === 'read';
          const f = await wal.fetch('f', { maxBytes: step[1] * 5, checkpoint });
          const b = await wal.batchRead('b', step[1] * 5, checkpoint);
          expect(Array.from({ length: f.length }, (_, i) => f.offset(i))).toEqual(b.map((e) => e.offset));
          expect([...f.payloads()].map(String)).toEqual(b.map((e) => e.data.toString()));
        }
        const [cf, cb] = await cursorsAfterCrash(dir, ['f', 'b'], 100, opts);
        expect(cf).toBe(cb);
        seen.push(cf!);
      }
      expect(seen).toEqual(expected);
      // With read-aheads answering reads (a read-ahead never moves a cursor).
      expect((await aheadOf(wal)).served).toBeGreaterThan(4);
    } finally {
      await wal.close();
    }
  });

  it('atLeastOnce(5): close() persists the committed cursor; the last fetch is delivered again', async () => {
    const dir = tempDir();
    const opts = { shards: 2, consistency: ReadConsistency.atLeastOnce(5) };
    let wal = await Walrus.open({ dir, ...opts });
    for (let i = 0; i < 10; i++) wal.append('t', job(i));
    expect((await wal.fetch('t', { maxEntries: 3 })).length).toBe(3);
    expect((await wal.fetch('t', { maxEntries: 4 })).firstOffset).toBe(3);
    await wal.close();
    wal = await Walrus.open({ dir, ...opts });
    try {
      const again = await wal.fetch('t');
      expect([again.firstOffset, again.length]).toEqual([3, 7]);
      await wal.commit('t');
    } finally {
      await wal.close();
    }
    wal = await Walrus.open({ dir, ...opts });
    try {
      expect((await wal.fetch('t')).length).toBe(0);
    } finally {
      await wal.close();
    }
  });

  it('consumed segment files are deleted after fetches consume them', async () => {
    const dir = tempDir();
    const wal = await Walrus.open({ dir, shards: 1, blockBytes: 4096, segmentBlocks: 4, fsync: FsyncSchedule.NoFsync });
    const segments = (): number => readdirSync(dir).filter((f) => f.endsWith('.seg')).length;
    try {
      for (let i = 0; i < 300; i++) wal.append('q', pseudoRandom(i + 1, 200));
      await wal.flush();
      const before = segments();
      expect(before).toBeGreaterThanOrEqual(4);
      let n = 0;
      for (let b = await wal.fetch('q', { maxBytes: 8192 }); b.length > 0; b = await wal.fetch('q', { maxBytes: 8192 })) {
        checkBatch(b, 'q', n, b.length, (off) => pseudoRandom(off + 1, 200));
        n += b.length;
      }
      expect(n).toBe(300);
      expect((await aheadOf(wal)).served).toBeGreaterThan(0);
      // Only the segment being written and the spare stay (deletion runs in the worker's loop).
      for (let waited = 0; segments() > 2 && waited < 5000; waited += 20) await new Promise((r) => setTimeout(r, 20));
      expect(segments()).toBeLessThanOrEqual(2);
    } finally {
      await wal.close();
    }
  });

  /** Polls (the worker deletes segments in its own loop) until a peek of a consumer with no position starts past `offset`. */
  async function deletedBefore(wal: Walrus, offset: number): Promise<number> {
    const watcher = wal.consumer('watcher'); // peeks only: no position, reads start at the first stored entry
    for (let waited = 0; waited < 10_000; waited += 10) {
      const first = (await watcher.fetch('q', { maxEntries: 1, checkpoint: false })).firstOffset;
      if (first > offset) return first;
      await new Promise((r) => setTimeout(r, 10));
    }
    throw new Error(`entries before ${offset} were not deleted`);
  }

  it('consumed segments are deleted while a read-ahead holds chunks of them: the reader gets the entries still stored', async () => {
    const dir = tempDir();
    const wal = await Walrus.open({ dir, shards: 1, blockBytes: 4096, segmentBlocks: 4, fsync: FsyncSchedule.NoFsync });
    try {
      for (let i = 0; i < 400; i++) wal.append('q', sized(i));
      const w = wal.consumer('w');
      await w.seek('q', 0); // w holds the entries; the default consumer, which only peeks, holds none
      checkBatch(await wal.fetch('q', { maxEntries: 10, checkpoint: false }), 'q', 0, 10, sized); // read-ahead: [0, 10) again
      let read = 0;
      while (read < 300) {
        const b = await w.fetch('q', { maxEntries: 20 });
        checkBatch(b, 'q', read, 20, sized);
        read += 20;
      }
      const start = await deletedBefore(wal, 10);
      // The default consumer's read-ahead of deleted entries went with them; its peek now
      // starts at the first stored entry, read from the files that remain.
      const ahead = await aheadOf(wal);
      expect(ahead.failed).toBe(0);
      const peek = await wal.fetch('q', { maxEntries: 10, checkpoint: false });
      checkBatch(peek, 'q', start, 10, sized);
      // w's read-ahead ([300, 320)) was never in a deleted file and is used.
      checkBatch(await w.fetch('q', { maxEntries: 20 }), 'q', 300, 20, sized);
      expect((await aheadOf(wal)).served).toBe(ahead.served + 1);
    } finally {
      await wal.close();
    }
  });

  it('a retention bound deletes entries a read-ahead holds: the next read starts at the first entry still stored', async () => {
    const dir = tempDir();
    const wal = await Walrus.open({ dir, shards: 1, blockBytes: 4096, segmentBlocks: 4, fsync: FsyncSchedule.NoFsync, retentionBytes: 64 * 1024 });
    try {
      for (let i = 0; i < 100; i++) wal.append('q', sized(i));
      checkBatch(await wal.fetch('q', { maxEntries: 10 }), 'q', 0, 10, sized); // read-ahead: [10, 20)
      for (let i = 100; i < 1000; i++) wal.append('q', sized(i));
      const start = await deletedBefore(wal, 20);
      const b = await wal.fetch('q', { maxEntries: 10 });
      expect(b.firstOffset).toBeGreaterThanOrEqual(start);
      checkBatch(b, 'q', b.firstOffset, 10, sized);
      const ahead = await aheadOf(wal);
      expect([ahead.served, ahead.failed]).toEqual([0, 0]);
    } finally {
      await wal.close();
    }
  });

  it('damage in a read-ahead: the reads before it succeed, the read that reaches it rejects with ERR_WALRUS_CORRUPT', async () => {
    const dir = tempDir();
    const wal = await Walrus.open({ dir, shards: 1, blockBytes: 4096, segmentBlocks: 64 });
    try {
      const payload = (off: number): Buffer => Buffer.from(`record-${String(off).padStart(3, '0')}|${'.'.repeat(40)}`);
      for (let i = 0; i < 100; i++) wal.append('c', payload(i));
      await wal.flush();
      const damage = (off: number) => damagePayload(dir, payload(off));
      const { file, record } = damage(35);
      for (let k = 0; k < 3; k++) checkBatch(await wal.fetch('c', { maxEntries: 10 }), 'c', k * 10, 10, payload);
      // [10, 20) and [20, 30) came from read-aheads; the one of [30, 40) met the damage.
      expect(await aheadOf(wal)).toMatchObject({ made: 2, served: 2, failed: 1 });
      await expect(wal.fetch('c', { maxEntries: 10 })).rejects.toMatchObject({ code: 'ERR_WALRUS_CORRUPT', file, offset: record });
      // The entries before the damaged one are still read, and the cursor never passes it.
      checkBatch(await wal.fetch('c', { maxEntries: 5 }), 'c', 30, 5, payload);
      await expect(wal.fetch('c', { maxEntries: 5 })).rejects.toMatchObject({ code: 'ERR_WALRUS_CORRUPT', file, offset: record });
      await expect(wal.readNext('c')).rejects.toMatchObject({ code: 'ERR_WALRUS_CORRUPT', offset: record });
      expect(await aheadOf(wal)).toMatchObject({ served: 2, failed: 2 });
      // Bytes returned are the bytes checked: damage after a read-ahead was made does not
      // reach the entries it holds (checked when read), only later reads of the files.
      const reader = wal.consumer('late');
      await reader.seek('c', 50);
      checkBatch(await reader.fetch('c', { maxEntries: 10 }), 'c', 50, 10, payload); // read-ahead: [60, 70)
      expect(await aheadOf(wal)).toMatchObject({ made: 3, failed: 2 }); // made by now (the worker makes it after the reply)
      const late = damage(65);
      checkBatch(await reader.fetch('c', { maxEntries: 10 }), 'c', 60, 10, payload);
      expect(await aheadOf(wal)).toMatchObject({ served: 3 });
      const replay = wal.iterate('c', 60);
      await expect((async () => { for await (const _ of replay); })()).rejects.toMatchObject({ code: 'ERR_WALRUS_CORRUPT', offset: late.record });
    } finally {
      await wal.close();
    }
  });

  it('a record damaged after open makes fetch reject with ERR_WALRUS_CORRUPT at that record; the cursor stays before it', async () => {
    const dir = tempDir();
    const wal = await Walrus.open({ dir, shards: 1, blockBytes: 4096, segmentBlocks: 64 });
    try {
      const payload = (off: number): Buffer => Buffer.from(`record-${String(off).padStart(3, '0')}|${'.'.repeat(40)}`);
      for (let i = 0; i < 50; i++) wal.append('c', payload(i));
      await wal.flush();
      // Flip one payload byte of entry 20 in place, in the file the open instance reads.
      const { file, record } = damagePayload(dir, payload(20));
      checkBatch(await wal.fetch('c', { maxEntries: 20 }), 'c', 0, 20, payload);
      for (const read of [() => wal.fetch('c'), () => wal.fetch('c', { checkpoint: false }), () => wal.fetch('c', { maxEntries: 1 })]) {
        const err = (await read().catch((e: unknown) => e)) as WalrusError;
        expect(err).toBeInstanceOf(WalrusError);
        expect(err).toMatchObject({ code: 'ERR_WALRUS_CORRUPT', file, offset: record });
        expect(err.message).toContain(file);
      }
      // The damaged record was never passed: byte reads meet it too.
      await expect(wal.readNext('c')).rejects.toMatchObject({ code: 'ERR_WALRUS_CORRUPT', offset: record });
    } finally {
      await wal.close();
    }
  });
});
