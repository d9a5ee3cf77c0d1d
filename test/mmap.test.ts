/**
 * The mmap backend's own parts: the addon's mapped IoContext (copies into mappings, msync,
 * the bounds it enforces, the fault seam over msync and mmap, fallocate before mapping) and
 * the worker's mapping life cycle (mapped on creation, unmapped on deletion and close). The
 * conformance, crash and corruption tests run against this backend through the 'mmap'
 * project of vitest.config.ts.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Walrus, FsyncSchedule } from '../dist/index.js';
import { native } from '../dist/shared/native.js';
import { mmapRefusal } from '../dist/workers/segments.js';
import { pseudoRandom, tempDir } from './helpers.js';

const EIO = 5;
const ENOSPC = 28;
const EBADF = 9;
const { O_RDWR, O_CREAT, O_CLOEXEC } = native.constants;

/** A mapped context over a 64 KiB ring of known bytes, and a file of `size` bytes to map. */
function setup(size: number) {
  const dir = tempDir('walrus-mmap-');
  const file = join(dir, 'f');
  const fd = native.open(file, O_RDWR | O_CREAT | O_CLOEXEC, 0o600);
  if (size > 0) native.ftruncate(fd, size);
  const ring = new SharedArrayBuffer(1 << 16);
  const bytes = new Uint8Array(ring);
  bytes.set(pseudoRandom(7, bytes.length));
  const context = new native.IoContext(ring, false, 1, true);
  /** Writes ring bytes [from, from + length) at `position`, then msyncs when `sync`. */
  const write = (position: number, from: number, length: number, sync: boolean, target = fd) =>
    context.writeBatch(new Float64Array([target, position, 0, 1]), 1, new Float64Array([-1, from, length]), [], new Int32Array([target]), sync ? 1 : 0);
  const done = () => {
    context.close();
    native.close(fd);
  };
  return { file, fd, bytes, context, write, done };
}

function failure(f: () => void): { code?: string; errno?: number; syscall?: string } | null {
  try {
    f();
    return null;
  } catch (e) {
    return e as { code?: string; errno?: number; syscall?: string };
  }
}

describe('the mapped IoContext (addon)', () => {
  it('copies writes into the mapping, visible through the file and through readMapped', () => {
    const s = setup(0);
    try {
      expect(s.context.mapped).toBe(true);
      expect(s.context.uring).toBe(false);
      // map() fallocates first: a file shorter than the mapping is extended, so no byte of
      // the mapping lies past the end of the file (the SIGBUS guard).
      s.context.map(s.fd, 1 << 20);
      expect(native.fstatSize(s.fd)).toBe(1 << 20);
      s.write(4096, 100, 3000, false);
      s.write(500_000, 0, 1 << 16, true);
      const viaFile = readFileSync(s.file);
      expect(Buffer.compare(viaFile.subarray(4096, 7096), s.bytes.subarray(100, 3100))).toBe(0);
      expect(Buffer.compare(viaFile.subarray(500_000, 500_000 + (1 << 16)), s.bytes)).toBe(0);
      expect(viaFile.subarray(0, 4096).every((b) => b === 0)).toBe(true);
      const back = new Uint8Array(3000);
      expect(s.context.readMapped(s.fd, back, 4096)).toBe(3000);
      expect(Buffer.compare(back, s.bytes.subarray(100, 3100))).toBe(0);
      // A read that runs past the end of the mapping stops there.
      expect(s.context.readMapped(s.fd, new Uint8Array(100), (1 << 20) - 40)).toBe(40);
      expect(s.context.readMapped(s.fd, new Uint8Array(100), 1 << 20)).toBe(0);
    } finally {
      s.done();
    }
  });

  it('refuses a write or sync outside every mapping with a RangeError, before copying anything', () => {
    const s = setup(0);
    try {
      s.context.map(s.fd, 8192);
      const err = failure(() => s.write(8192 - 100, 0, 101, false));
      expect(err).toBeInstanceOf(RangeError);
      expect(String(err)).toContain('past the end');
      expect(failure(() => s.write(0, 0, 10, false, 999))).toBeInstanceOf(RangeError);
      // Two ops: the first in bounds, the second not. Nothing of the batch is copied.
      const ops = new Float64Array([s.fd, 0, 0, 1, s.fd, 8000, 1, 1]);
      const iovs = new Float64Array([-1, 0, 1000, -1, 0, 1000]);
      expect(failure(() => s.context.writeBatch(ops, 2, iovs, [], new Int32Array(0), 0))).toBeInstanceOf(RangeError);
      expect(readFileSync(s.file).subarray(0, 1000).every((b) => b === 0)).toBe(true);
      expect(failure(() => s.write(0, 0, 10, true, 999))).toBeInstanceOf(RangeError);
    } finally {
      s.done();
    }
  });

  it('routes msync and mmap through the fault seam; write plans never fire (there is no write call)', () => {
    const s = setup(0);
    try {
      s.context.injectFault('write', 1, EIO, false);
      s.context.map(s.fd, 1 << 16);
      expect(failure(() => s.write(0, 0, 1000, true))).toBeNull();
      s.context.injectFault('fsync', 2, ENOSPC, false);
      expect(failure(() => s.write(1000, 0, 1000, true))).toBeNull();
      expect(failure(() => s.write(2000, 0, 1000, false))).toBeNull(); // copies are not counted
      expect(failure(() => s.write(3000, 0, 1000, true))).toMatchObject({ code: 'ENOSPC', errno: ENOSPC, syscall: 'msync' });
      s.context.unmap(s.fd);
      s.context.injectFault('map', 1, EIO, false);
      expect(failure(() => s.context.map(s.fd, 1 << 16))).toMatchObject({ code: 'EIO', errno: EIO, syscall: 'mmap' });
      // Nothing was mapped by the failed call: a write finds no mapping.
      expect(failure(() => s.write(0, 0, 10, false))).toBeInstanceOf(RangeError);
      s.context.map(s.fd, 1 << 16); // one fault per plan
      expect(failure(() => s.write(0, 0, 10, true))).toBeNull();
    } finally {
      s.done();
    }
  });

  it('validates its use: mapped with io_uring, map on a plain context, double map, unmap of nothing', () => {
    const ring = new SharedArrayBuffer(4096);
    expect(() => new native.IoContext(ring, true, 8, true)).toThrow(TypeError);
    expect(() => new native.IoContext(ring, false, 8, 'yes' as unknown as boolean)).toThrow(TypeError);
    const plain = new native.IoContext(ring, false, 8);
    try {
      expect(plain.mapped).toBe(false);
      expect(() => plain.map(0, 4096)).toThrow(/mapped = true/);
    } finally {
      plain.close();
    }
    const s = setup(4096);
    try {
      expect(() => s.context.map(s.fd, 0)).toThrow(RangeError);
      s.context.map(s.fd, 4096);
      expect(failure(() => s.context.map(s.fd, 4096))).toMatchObject({ code: 'EINVAL', syscall: 'mmap' });
      s.context.unmap(s.fd);
      expect(failure(() => s.context.unmap(s.fd))).toMatchObject({ code: 'EBADF', errno: EBADF, syscall: 'munmap' });
      expect(failure(() => s.context.readMapped(s.fd, new Uint8Array(1), 0))).toMatchObject({ code: 'EBADF' });
      s.context.map(s.fd, 4096);
      s.context.close(); // releases the mapping: later calls find a closed context
      expect(failure(() => s.context.map(s.fd, 4096))).toMatchObject({ code: 'EBADF' });
    } finally {
      native.close(s.fd);
    }
  });
});

describe('file systems the mmap backend refuses', () => {
  it('refuses copy-on-write file systems (SIGBUS risk on a full disk), accepts ext4, xfs and tmpfs', () => {
    expect(mmapRefusal(0x9123683e)).toMatch(/btrfs.*SIGBUS.*backend 'fd'/);
    expect(mmapRefusal(0x2fc12fc1)).toMatch(/zfs/);
    expect(mmapRefusal(0xca451a4e)).toMatch(/bcachefs/);
    for (const type of [0xef53, 0x58465342, 0x01021994]) expect(mmapRefusal(type)).toBeNull();
  });
});

/** The segment files of `dir` mapped in this process (worker threads share its maps). */
function mappedSegments(dir: string): string[] {
  const out = new Set<string>();
  for (const line of readFileSync('/proc/self/maps', 'utf8').split('\n')) {
    const at = line.indexOf(dir);
    if (at >= 0 && line.includes('.seg')) out.add(line.slice(at));
  }
  return [...out].sort();
}

describe('segment mappings of the mmap backend', () => {
  it('maps every segment while open, unmaps a consumed segment when it is deleted, and all at close', async () => {
    const dir = tempDir('walrus-mmap-');
    const wal = await Walrus.open({ dir, backend: 'mmap', shards: 1, blockBytes: 4096, segmentBlocks: 4, fsync: FsyncSchedule.NoFsync });
    try {
      expect(wal.stats().io).toBe('mmap');
      for (let i = 0; i < 120; i++) wal.append('t', pseudoRandom(i + 1, 700));
      await wal.sync();
      const files = readdirSync(dir).filter((f) => f.endsWith('.seg')).sort();
      expect(files.length).toBeGreaterThanOrEqual(4);
      expect(mappedSegments(dir)).toEqual(files.map((f) => join(dir, f)));
      // Consuming everything deletes the full segments; their mappings go with them.
      while ((await wal.batchRead('t', 1 << 20)).length > 0);
      const t0 = Date.now();
      while (readdirSync(dir).filter((f) => f.endsWith('.seg')).length >= files.length && Date.now() - t0 < 10_000) {
        await new Promise((r) => setTimeout(r, 10));
      }
      const left = readdirSync(dir).filter((f) => f.endsWith('.seg')).sort();
      expect(left.length).toBeLessThan(files.length);
      expect(mappedSegments(dir)).toEqual(left.map((f) => join(dir, f)));
    } finally {
      await wal.close();
    }
    expect(mappedSegments(dir)).toEqual([]);
  });

  it('a failed mmap of an existing segment fails the open with ERR_WALRUS_IO, maps nothing, and changes nothing', async () => {
    const dir = tempDir('walrus-mmap-');
    const opts = { dir, backend: 'mmap', shards: 1, blockBytes: 4096, segmentBlocks: 4 } as const;
    const wal = await Walrus.open(opts);
    const written = Array.from({ length: 40 }, (_, i) => pseudoRandom(i + 1, 500));
    for (const p of written) wal.append('t', p);
    await wal.close();
    const saved = process.env.WALRUS_TEST_FAULT;
    process.env.WALRUS_TEST_FAULT = 'map:2:5';
    let err: unknown;
    try {
      err = await Walrus.open(opts).then(
        (w) => w.close().then(() => null),
        (e: unknown) => e,
      );
    } finally {
      if (saved === undefined) delete process.env.WALRUS_TEST_FAULT;
      else process.env.WALRUS_TEST_FAULT = saved;
    }
    expect(err).toMatchObject({ code: 'ERR_WALRUS_IO', errno: EIO, errnoCode: 'EIO', syscall: 'mmap' });
    // The first segment's mapping, made before the failure, was released with the files.
    expect(mappedSegments(dir)).toEqual([]);
    const again = await Walrus.open(opts);
    try {
      const got = [];
      for await (const e of again.iterate('t')) got.push(e.data);
      expect(got.length).toBe(written.length);
      got.forEach((d, k) => expect(Buffer.compare(d, written[k]!)).toBe(0));
    } finally {
      await again.close();
    }
  });
});
