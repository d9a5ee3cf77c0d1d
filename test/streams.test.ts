import { Readable, Transform, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, expect, it } from 'vitest';
import { Walrus, FsyncSchedule, type Entry, type TypedEntry } from '../dist/index.js';
import { createWriteStream } from '../dist/main/streams.js';
import { SEMANTIC_BACKENDS, collect, pseudoRandom, readersCaughtUp, tempDir } from './helpers.js';

const texts = async (wal: Walrus, topic: string): Promise<string[]> => (await collect(wal.iterate(topic))).map((e) => e.data.toString());

describe.each(SEMANTIC_BACKENDS)('Node streams (%s backend)', (backend) => {
  it('pipeline(readStream, transform, writeStream) moves every entry once, in order, and consumes the source', async () => {
    const wal = await Walrus.open({ backend, dir: tempDir(), shards: 2 });
    try {
      const n = 2500;
      for (let i = 0; i < n; i++) wal.append('in', `entry ${i}`);
      const upper = new Transform({
        objectMode: true,
        transform(e: Entry, _enc, cb) {
          cb(null, e.data.toString().toUpperCase());
        },
      });
      await pipeline(wal.createReadStream('in', { live: false, highWaterMark: 100 }), upper, wal.createWriteStream('out', { sync: true }));
      expect(await texts(wal, 'out')).toEqual(Array.from({ length: n }, (_, i) => `ENTRY ${i}`));
      // The source was consumed through its cursor.
      expect(await wal.readNext('in')).toBeNull();
    } finally {
      await wal.close();
    }
  });

  it("mode 'values' streams typed records both ways", async () => {
    const wal = await Walrus.open({ backend, dir: tempDir(), shards: 1 });
    try {
      const values = Array.from({ length: 50 }, (_, i) => ({ i, at: new Date(i), tags: new Set([i % 3]) }));
      await pipeline(Readable.from(values), wal.createWriteStream('typed', { mode: 'values' }));
      const got = await collect(wal.createReadStream('typed', { mode: 'values', live: false }) as AsyncIterable<TypedEntry<unknown>>);
      expect(got.map((e) => e.value)).toEqual(values);
      expect(got.map((e) => e.offset)).toEqual(values.map((_, i) => i));
    } finally {
      await wal.close();
    }
  });

  it('a live read stream delivers later appends and ends when the instance closes', async () => {
    const wal = await Walrus.open({ backend, dir: tempDir(), shards: 1 });
    const stream = wal.createReadStream('live');
    const seen: string[] = [];
    const ended = new Promise<void>((resolve, reject) => {
      stream.on('data', (e: Entry) => seen.push(e.data.toString()));
      stream.on('end', resolve);
      stream.on('error', reject);
    });
    const delivered = (n: number): Promise<void> =>
      new Promise((resolve) => {
        const check = (): void => {
          if (seen.length < n) return;
          stream.off('data', check);
          resolve();
        };
        stream.on('data', check);
        check();
      });
    wal.append('live', 'a');
    // (A stream that ended instead of waiting fails the last check, not a timeout.)
    await Promise.race([delivered(1), ended]);
    // Caught up and waiting: 'b' and 'c' come after the stream found nothing more.
    await readersCaughtUp(wal, 'live');
    wal.batchAppend('live', ['b', 'c']);
    await Promise.race([delivered(3), ended]);
    await wal.close();
    await ended;
    // Nothing more, nothing twice: the stream has ended.
    expect(seen).toEqual(['a', 'b', 'c']);
  });

  it('honours backpressure with a tiny ring: write() returns false, drain follows, nothing lost or duplicated', async () => {
    const wal = await Walrus.open({ backend, dir: tempDir(), shards: 1, ringBytes: 4096, backpressureMs: 0, fsync: FsyncSchedule.SyncEach });
    try {
      const ws = wal.createWriteStream('bp', { highWaterMark: 4 }) as Writable & { backpressureWaits: number };
      const n = 3000;
      let refused = 0;
      for (let i = 0; i < n; i++) {
        // 600-byte entries: a few fill the ring.
        if (!ws.write(pseudoRandom(i + 1, 600))) {
          refused++;
          await new Promise((r) => ws.once('drain', r));
        }
      }
      await new Promise<void>((resolve, reject) => ws.end((err?: Error | null) => (err ? reject(err) : resolve())));
      expect(refused).toBeGreaterThan(0);
      const got = await collect(wal.iterate('bp'));
      expect(got.length).toBe(n);
      got.forEach((e, i) => expect(Buffer.compare(e.data, pseudoRandom(i + 1, 600))).toBe(0));
      // Whether the engine's ERR_WALRUS_BACKPRESSURE was met here depends on the worker's
      // speed; it never surfaced. The retry path itself is tested deterministically below.
      if (process.env.WALRUS_TEST_VERBOSE === '1') console.log(`${backend}: ${refused} refused writes, ${ws.backpressureWaits} engine backpressure waits`);
    } finally {
      await wal.close();
    }
  });

  it('destroying a read stream mid-way stops it; a new stream continues after what was taken', async () => {
    const wal = await Walrus.open({ backend, dir: tempDir(), shards: 1 });
    try {
      for (let i = 0; i < 100; i++) wal.append('d', `m${i}`);
      const hwm = 4;
      const delivered: number[] = [];
      for await (const e of wal.createReadStream('d', { highWaterMark: hwm }) as AsyncIterable<Entry>) {
        delivered.push(e.offset);
        if (delivered.length === 10) break; // destroys the stream
      }
      expect(delivered).toEqual(Array.from({ length: 10 }, (_, i) => i));
      const rest = (await collect(wal.createReadStream('d', { live: false }) as AsyncIterable<Entry>)).map((e) => e.offset);
      // Nothing delivered comes again; at most the buffer (hwm) taken but not read is skipped.
      expect(rest[0]).toBeGreaterThanOrEqual(10);
      expect(rest[0]).toBeLessThanOrEqual(10 + hwm);
      expect(rest).toEqual(Array.from({ length: 100 - rest[0]! }, (_, i) => rest[0]! + i));
      // Destroyed while waiting for appends: it stops at once, with no pending read left.
      const waiting = wal.createReadStream('d');
      waiting.resume();
      await readersCaughtUp(wal, 'd');
      const closed = new Promise((r) => waiting.once('close', r));
      waiting.destroy();
      await closed;
      wal.append('d', 'after');
      // A read the stream left waiting would wake on this append and take the entry before
      // the readNext below: let what the append woke run first.
      await new Promise((r) => setImmediate(r));
      expect((await wal.readNext('d'))?.data.toString()).toBe('after');
    } finally {
      await wal.close();
    }
  });

  it('an aborted signal destroys the stream with an AbortError', async () => {
    const wal = await Walrus.open({ backend, dir: tempDir(), shards: 1 });
    try {
      const ac = new AbortController();
      const rs = wal.createReadStream('a', { signal: ac.signal });
      const all = collect(rs as AsyncIterable<Entry>);
      await readersCaughtUp(wal, 'a');
      ac.abort();
      await expect(all).rejects.toMatchObject({ name: 'AbortError' });
    } finally {
      await wal.close();
    }
  });

  it('errors propagate: a closed instance errors the write stream and rejects the pipeline; bad chunks are TypeErrors', async () => {
    const wal = await Walrus.open({ backend, dir: tempDir(), shards: 1 });
    const ws = wal.createWriteStream('e');
    const bad = wal.createWriteStream('e');
    const badError = new Promise((r) => bad.once('error', r));
    bad.write(42);
    expect(await badError).toMatchObject({ code: 'ERR_INVALID_ARG_TYPE' });
    await wal.close();
    await expect(pipeline(Readable.from(['x', 'y']), ws)).rejects.toMatchObject({ code: 'ERR_WALRUS_CLOSED' });
    expect(() => wal.createWriteStream('e')).toThrow(expect.objectContaining({ code: 'ERR_WALRUS_CLOSED' }));
    expect(() => wal.createReadStream('e')).toThrow(expect.objectContaining({ code: 'ERR_WALRUS_CLOSED' }));
  });

  it('validates options', async () => {
    const wal = await Walrus.open({ backend, dir: tempDir(), shards: 1 });
    try {
      expect(() => wal.createWriteStream('t', { mode: 'json' as never })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE' }));
      expect(() => wal.createWriteStream('t', { sync: 1 as never })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
      expect(() => wal.createReadStream('t', { highWaterMark: 0 })).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
      expect(() => wal.createReadStream('t', { live: 'no' as never })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
      expect(() => wal.createReadStream('')).toThrow(expect.objectContaining({ code: 'ERR_WALRUS_INVALID_TOPIC' }));
    } finally {
      await wal.close();
    }
  });
});

describe('write stream and the engine backpressure', () => {
  it('waits for drain() on ERR_WALRUS_BACKPRESSURE and appends each chunk exactly once', async () => {
    const appended: unknown[][] = [];
    let refusals = 2;
    let drains = 0;
    const wal = {
      drain: async () => void drains++,
      sync: async () => {},
    };
    const ws = createWriteStream(wal as never, 't', () => null as never, {}) as Writable & { backpressureWaits: number };
    // Reach the private append through the bytes path: a fake wal.batchAppend.
    (wal as unknown as { batchAppend: (t: string, c: unknown[]) => number }).batchAppend = (_t, chunks) => {
      if (refusals-- > 0) throw Object.assign(new Error('ring full'), { code: 'ERR_WALRUS_BACKPRESSURE' });
      appended.push(chunks);
      return 0;
    };
    await pipeline(Readable.from(['a', 'b', 'c'], { objectMode: true }), ws);
    expect(appended.flat()).toEqual(['a', 'b', 'c']);
    expect(drains).toBe(2);
    expect(ws.backpressureWaits).toBe(2);
  });
});
