import { spawn } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Packr } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import { Walrus, FsyncSchedule, WalrusError } from '../dist/index.js';
import { valueFor } from './fixtures/typed-value.mjs';
import { SEMANTIC_BACKENDS, collect, tempDir } from './helpers.js';

const CHILD = fileURLToPath(new URL('./fixtures/typed-child.mjs', import.meta.url));

describe.each(SEMANTIC_BACKENDS)('typed records (%s backend)', (backend) => {
  it('round-trips objects, Dates, Maps, Sets, typed arrays, Buffers and bigint through every read', async () => {
    const wal = await Walrus.open({ backend, dir: tempDir(), shards: 2 });
    try {
      const values: unknown[] = [
        { id: 1, name: 'order', nested: { deep: [1, 'two', null, true] } },
        new Date('2026-01-02T03:04:05.678Z'),
        new Map<unknown, unknown>([['a', 1], [2, { b: [3] }]]),
        new Set(['x', 'y', 3]),
        new Uint8Array([0, 1, 255]),
        new Float64Array([1.5, -0, Number.MAX_VALUE]),
        new Int32Array([-1, 2 ** 31 - 1]),
        Buffer.from('bytes'),
        12345678901234567890n,
        -(2n ** 200n),
        'plain string',
        42.5,
        null,
        [{ at: new Date(0), tags: new Set([1]) }],
      ];
      const t = wal.typed('values');
      expect(t.topic).toBe('values');
      values.forEach((v, i) => expect(t.append(v)).toBe(i));
      const iterated = await collect(t.iterate());
      expect(iterated.map((e) => e.offset)).toEqual(values.map((_, i) => i));
      expect(iterated.map((e) => e.value)).toEqual(values);
      expect(iterated.every((e) => e.topic === 'values')).toBe(true);
      // Typed arrays come back as the same class, not as a plain Uint8Array.
      expect(iterated[5]!.value).toBeInstanceOf(Float64Array);
      expect(iterated[6]!.value).toBeInstanceOf(Int32Array);
      expect(typeof iterated[8]!.value).toBe('bigint');
      const peek = await t.readNext(false);
      expect(peek?.value).toEqual(values[0]);
      const first = await t.readNext();
      expect(first?.offset).toBe(0);
      const batch = await t.batchRead(1 << 20);
      expect(batch.map((e) => e.value)).toEqual(values.slice(1));
      expect(await t.readNext()).toBeNull();
      expect(t.batchAppend([{ k: 1 }, { k: 2 }])).toBe(values.length);
      expect(await t.appendAndSync({ k: 3 })).toBe(values.length + 2);
      const sub = t.subscribe();
      expect((await sub.next()).value).toEqual({ topic: 'values', offset: values.length, value: { k: 1 } });
      await sub.return?.();
      // The byte API sees the same entries; decode() turns them into typed ones.
      const raw = await wal.readNext('values');
      expect(t.decode(raw!).value).toEqual({ k: 2 });
    } finally {
      await wal.close();
    }
  });

  it('stores a repeated shape as a structure id plus values, far smaller than plain msgpack maps', async () => {
    const wal = await Walrus.open({ backend, dir: tempDir(), shards: 1 });
    try {
      const make = (i: number) => ({ customerIdentifier: i, orderDescription: `o${i}`, createdTimestamp: i * 1000, warehouseLocation: 'A1' });
      const t = wal.typed<ReturnType<typeof make>>('shapes');
      for (let i = 0; i < 200; i++) t.append(make(i));
      const typedBytes = (await collect(wal.iterate('shapes'))).reduce((n, e) => n + e.data.length, 0);
      const plain = new Packr({ useRecords: false });
      let plainBytes = 0;
      for (let i = 0; i < 200; i++) plainBytes += plain.pack(make(i)).length;
      // The keys alone are 68 bytes per record in a plain map.
      expect(typedBytes).toBeLessThan(plainBytes / 2);
      expect((await collect(t.iterate())).map((e) => e.value)).toEqual(Array.from({ length: 200 }, (_, i) => make(i)));
    } finally {
      await wal.close();
    }
  });

  it('a record that is not a typed record fails with ERR_WALRUS_DECODE naming topic and offset', async () => {
    const wal = await Walrus.open({ backend, dir: tempDir(), shards: 1 });
    try {
      const t = wal.typed('mixed');
      t.append({ ok: true });
      wal.append('mixed', 'hello, not msgpack');
      wal.append('mixed', '');
      wal.append('mixed', Buffer.from([0xc1, 0x40, 0x01, 0x02])); // the tag, then an unknown structure id
      const failures: WalrusError[] = [];
      for (let k = 0; k < 4; k++) {
        try {
          failures.push((await t.readNext()) as never);
        } catch (err) {
          failures.push(err as WalrusError);
        }
      }
      expect((failures[0] as unknown as { value: unknown }).value).toEqual({ ok: true });
      for (const [i, err] of failures.slice(1).entries()) {
        expect(err).toBeInstanceOf(WalrusError);
        expect(err.code).toBe('ERR_WALRUS_DECODE');
        expect(err.topic).toBe('mixed');
        expect(err.offset).toBe(i + 1);
        expect(err.message).toContain(`entry ${i + 1} of topic "mixed"`);
      }
      // The checkpointing reads moved past them: the consumer is not stuck.
      expect(await t.readNext()).toBeNull();
      await expect(collect(t.iterate(1))).rejects.toMatchObject({ code: 'ERR_WALRUS_DECODE', offset: 1 });
    } finally {
      await wal.close();
    }
  });

  it('validates and refuses after close', async () => {
    const wal = await Walrus.open({ backend, dir: tempDir(), shards: 1 });
    const t = wal.typed('v');
    expect(() => wal.typed('')).toThrow(expect.objectContaining({ code: 'ERR_WALRUS_INVALID_TOPIC' }));
    expect(() => wal.typed(1 as never)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    expect(() => t.batchAppend('x' as never)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    expect(() => t.batchAppend(Array.from({ length: 2001 }, () => 1))).toThrow(expect.objectContaining({ code: 'ERR_WALRUS_BATCH_LIMIT' }));
    await wal.close();
    expect(() => t.append({ brandNewShape: 1 })).toThrow(expect.objectContaining({ code: 'ERR_WALRUS_CLOSED' }));
    await expect(t.appendAndSync(1)).rejects.toMatchObject({ code: 'ERR_WALRUS_CLOSED' });
    expect(() => wal.typed('v')).toThrow(expect.objectContaining({ code: 'ERR_WALRUS_CLOSED' }));
  });
});

describe('typed record structures across reopen and crashes (fd backend)', () => {
  it('are saved beside the log and reused after reopen: old shapes decode, new shapes get new ids', async () => {
    const dir = tempDir();
    let wal = await Walrus.open({ dir, shards: 1 });
    wal.typed('a').append({ shapeOne: 1, common: 'x' });
    wal.typed('b').append({ shapeTwo: 2 });
    await wal.close();
    const saved = readFileSync(join(dir, 'structures.msgpack'));
    expect(saved.subarray(0, 8).toString('latin1')).toBe('WALRUSST');
    wal = await Walrus.open({ dir, shards: 1 });
    try {
      const a = wal.typed('a');
      a.append({ shapeThree: 3 });
      a.append({ shapeOne: 4, common: 'y' });
      // A shape seen before the reopen costs no new structure: the record is id + values.
      const raw = await collect(wal.iterate('a'));
      expect(raw[2]!.data.length).toBeLessThan(raw[0]!.data.length + 1 + 2);
      expect((await collect(a.iterate())).map((e) => e.value)).toEqual([{ shapeOne: 1, common: 'x' }, { shapeThree: 3 }, { shapeOne: 4, common: 'y' }]);
      expect((await collect(wal.typed('b').iterate())).map((e) => e.value)).toEqual([{ shapeTwo: 2 }]);
    } finally {
      await wal.close();
    }
  });

  it('negative control: records whose structures are lost fail to decode (what the crash test would catch)', async () => {
    const dir = tempDir();
    let wal = await Walrus.open({ dir, shards: 1 });
    for (let i = 0; i < 20; i++) wal.typed('a').append(valueFor(i * 7));
    await wal.close();
    rmSync(join(dir, 'structures.msgpack'));
    wal = await Walrus.open({ dir, shards: 1 });
    try {
      await expect(collect(wal.typed('a').iterate())).rejects.toMatchObject({ code: 'ERR_WALRUS_DECODE', offset: 0 });
    } finally {
      await wal.close();
    }
  });

  it('a damaged structures file is ERR_WALRUS_CORRUPT, not a silent misdecode', async () => {
    const dir = tempDir();
    let wal = await Walrus.open({ dir, shards: 1 });
    wal.typed('a').append({ some: 1, shape: 2 });
    await wal.close();
    const file = join(dir, 'structures.msgpack');
    const bytes = readFileSync(file);
    bytes[bytes.length - 1] ^= 0x20;
    writeFileSync(file, bytes);
    wal = await Walrus.open({ dir, shards: 1 });
    try {
      expect(() => wal.typed('a')).toThrow(expect.objectContaining({ code: 'ERR_WALRUS_CORRUPT', file }));
    } finally {
      await wal.close();
    }
  });

  it('kill -9 while appending new shapes: every recovered record decodes to what was appended', async () => {
    const dir = tempDir();
    let lastAcked = -1;
    let recovered = 0;
    for (let cycle = 0; cycle < 4; cycle++) {
      const acked = await new Promise<number>((resolve, reject) => {
        const child = spawn(process.execPath, [CHILD, dir], { stdio: ['ignore', 'pipe', 'pipe'] });
        let out = '';
        let err = '';
        // Killed once this cycle's child has made about 80 more records durable than the last cycle recovered (a count, not
        // a delay: under load a delay let the children write too little to reach new shapes).
        const target = recovered + 80 + cycle * 35;
        let killed = false;
        child.stdout.on('data', (d: Buffer) => {
          out += d.toString();
          if (killed) return;
          const last = out.lastIndexOf('\nA ', out.length - 2);
          if (last >= 0 && Number(out.slice(last + 3, out.indexOf('\n', last + 1))) >= target) {
            killed = true;
            child.kill('SIGKILL');
          }
        });
        child.stderr.on('data', (d: Buffer) => (err += d.toString()));
        child.on('exit', (code, signal) => {
          if (signal !== 'SIGKILL') return reject(new Error(`child exited with ${code}/${signal}: ${err}`));
          const acks = out.split('\n').filter((l) => l.startsWith('A ')).map((l) => Number(l.slice(2)));
          resolve(acks.length > 0 ? Math.max(...acks) : -1);
        });
      });
      lastAcked = Math.max(lastAcked, acked);
      const wal = await Walrus.open({ dir, shards: 1, fsync: FsyncSchedule.NoFsync });
      try {
        const got = await collect(wal.typed('typed').iterate());
        got.forEach((e, i) => {
          expect(e.offset).toBe(i);
          expect(e.value).toEqual(valueFor(i));
        });
        expect(got.length).toBeGreaterThan(lastAcked);
        recovered = got.length;
      } finally {
        await wal.close();
      }
    }
    // The children got far enough to create more than the 32 shared shapes (every 7 offsets).
    expect(recovered).toBeGreaterThan(32 * 7);
  }, 60_000);
});
