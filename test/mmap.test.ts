/**
 * The mmap backend's own parts: the addon's mapped IoContext (copies into windows, msync,
 * the bounds it enforces, the fault seam over msync and mmap, fallocate before mapping) and
 * the worker's mappings (windows only, bounded whatever the size of the log; none left
 * after deletion and close). The
 * conformance, crash and corruption tests run against this backend through the 'mmap'
 * project of vitest.config.ts.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Walrus, FsyncSchedule } from '../dist/index.js';
import { native } from '../dist/shared/native.js';
import { mmapRefusal } from '../dist/workers/store/segments.js';
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
      // map() registers the file and maps nothing; a write maps the window it falls in, after
      // fallocating it: a file shorter than the window is extended, so no byte of a mapping
      // lies past the end of the file (the SIGBUS guard).
      s.context.map(s.fd, 1 << 20);
      expect(s.context.mappedBytes).toBe(0);
      expect(native.fstatSize(s.fd)).toBe(0);
      s.write(4096, 100, 3000, false);
      expect(native.fstatSize(s.fd)).toBe(1 << 20);
      expect(s.context.mappedBytes).toBe(1 << 20);
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

  it('maps at most 8 windows of 2 MiB whatever it writes; a file whose window was unmapped dirty is fdatasynced', () => {
    const s = setup(0);
    const dir = tempDir('walrus-mmap-');
    const others = [0, 1].map((k) => native.open(join(dir, `g${k}`), O_RDWR | O_CREAT | O_CLOEXEC, 0o600));
    try {
      const files = [s.fd, ...others];
      for (const fd of files) s.context.map(fd, 32 << 20);
      let most = 0;
      // 3 files x 32 MiB written in 64 KiB pieces: 48 windows' worth, never more than 8 live.
      for (let pos = 0; pos < 32 << 20; pos += 1 << 16) {
        for (const fd of files) s.write(pos, 0, 1 << 16, false, fd);
        most = Math.max(most, s.context.mappedBytes);
      }
      expect(most).toBe(8 * (2 << 20));
      for (const fd of files) {
        const back = new Uint8Array(1 << 16);
        for (const pos of [0, 17 << 20, (32 << 20) - (1 << 16)]) {
          expect(s.context.readMapped(fd, back, pos)).toBe(1 << 16);
          expect(Buffer.compare(back, s.bytes)).toBe(0);
        }
      }
      // The first file's early windows were unmapped while dirty: its sync is an fdatasync
      // (seen through the fault seam), which covers the pages of every window it had.
      s.context.injectFault!('fsync', 1, EIO, false);
      expect(failure(() => s.context.writeBatch(new Float64Array(0), 0, new Float64Array(0), [], new Int32Array([s.fd]), 1))).toMatchObject({
        code: 'EIO',
        syscall: 'fdatasync',
      });
    } finally {
      for (const fd of others) native.close(fd);
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
      s.context.injectFault!('write', 1, EIO, false);
      s.context.map(s.fd, 1 << 16);
      expect(failure(() => s.write(0, 0, 1000, true))).toBeNull();
      s.context.injectFault!('fsync', 2, ENOSPC, false);
      expect(failure(() => s.write(1000, 0, 1000, true))).toBeNull();
      expect(failure(() => s.write(2000, 0, 1000, false))).toBeNull(); // copies are not counted
      expect(failure(() => s.write(3000, 0, 1000, true))).toMatchObject({ code: 'ENOSPC', errno: ENOSPC, syscall: 'msync' });
      s.context.unmap(s.fd);
      expect(s.context.mappedBytes).toBe(0);
      s.context.injectFault!('map', 1, EIO, false);
      // map() maps nothing: the window a write needs is mapped by that write, which fails.
      s.context.map(s.fd, 1 << 16);
      expect(failure(() => s.write(0, 0, 10, false))).toMatchObject({ code: 'EIO', errno: EIO, syscall: 'mmap' });
      expect(s.context.mappedBytes).toBe(0);
      expect(failure(() => s.write(0, 0, 10, true))).toBeNull(); // one fault per plan
      expect(s.context.mappedBytes).toBe(1 << 16);
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

/** The mappings of segment files of `dir` in this process (worker threads share its maps). */
function segmentMappings(dir: string): { file: string; bytes: number }[] {
  const out: { file: string; bytes: number }[] = [];
  for (const line of readFileSync('/proc/self/maps', 'utf8').split('\n')) {
    const at = line.indexOf(dir);
    if (at < 0 || !line.includes('.seg')) continue;
    const [from, to] = line.split(' ')[0]!.split('-').map((x) => Number.parseInt(x, 16));
    out.push({ file: line.slice(at), bytes: to! - from! });
  }
  return out;
}

function mappedSegments(dir: string): string[] {
  return [...new Set(segmentMappings(dir).map((m) => m.file))].sort();
}

const MIB = 1 << 20;

describe('segment mappings of the mmap backend', () => {
  it('maps only windows: at most 16 MiB per shard while a much larger log is written and read', async () => {
    const dir = tempDir('walrus-mmap-');
    // 8 MiB segments, 64 MiB written (8x the bound on mapped bytes, 4x the mapped bytes of
    // the old whole-segment mappings at the point they would have been measured).
    const wal = await Walrus.open({ dir, backend: 'mmap', shards: 1, segmentBlocks: 8, fsync: FsyncSchedule.NoFsync });
    let most = 0;
    let samples = 0;
    try {
      const payload = pseudoRandom(3, 64 * 1024);
      for (let i = 0; i < 1024; i++) {
        for (;;) {
          try {
            wal.append(`t${i % 3}`, payload);
            break;
          } catch (err) {
            if ((err as { code?: string }).code !== 'ERR_WALRUS_BACKPRESSURE') throw err;
            await wal.drain();
          }
        }
        if (i % 64 === 63) {
          await wal.sync();
          const maps = segmentMappings(dir);
          most = Math.max(most, maps.reduce((n, m) => n + m.bytes, 0));
          expect(maps.length).toBeLessThanOrEqual(8);
          samples++;
        }
      }
      const segs = readdirSync(dir).filter((f) => f.endsWith('.seg'));
      expect(segs.length).toBeGreaterThanOrEqual(8);
      // Reading everything back maps nothing more.
      let read = 0;
      for (let k = 0; k < 3; k++) for await (const e of wal.iterate(`t${k}`)) read += e.data.length === payload.length ? 1 : 0;
      expect(read).toBe(1024);
      most = Math.max(most, segmentMappings(dir).reduce((n, m) => n + m.bytes, 0));
    } finally {
      await wal.close();
    }
    expect(samples).toBe(16);
    expect(most).toBeGreaterThan(0);
    expect(most).toBeLessThanOrEqual(16 * MIB);
    expect(mappedSegments(dir)).toEqual([]);
  }, 120_000);

  it('unmaps a consumed segment when it is deleted, and everything at close', async () => {
    const dir = tempDir('walrus-mmap-');
    const wal = await Walrus.open({ dir, backend: 'mmap', shards: 1, blockBytes: 4096, segmentBlocks: 4, fsync: FsyncSchedule.NoFsync });
    try {
      expect(wal.stats().io).toBe('mmap');
      for (let i = 0; i < 120; i++) wal.append('t', pseudoRandom(i + 1, 700));
      await wal.sync();
      const files = readdirSync(dir).filter((f) => f.endsWith('.seg')).sort();
      expect(files.length).toBeGreaterThanOrEqual(4);
      // Windows of the segments written last (at most 8), never of a file that is not a segment.
      const mapped = mappedSegments(dir);
      expect(mapped.length).toBeGreaterThan(0);
      expect(mapped.length).toBeLessThanOrEqual(8);
      for (const m of mapped) expect(files.map((f) => join(dir, f))).toContain(m);
      // Consuming everything deletes the full segments; their mappings go with them.
      while ((await wal.batchRead('t', 1 << 20)).length > 0);
      const t0 = Date.now();
      while (readdirSync(dir).filter((f) => f.endsWith('.seg')).length >= files.length && Date.now() - t0 < 10_000) {
        await new Promise((r) => setTimeout(r, 10));
      }
      const left = readdirSync(dir).filter((f) => f.endsWith('.seg')).sort();
      expect(left.length).toBeLessThan(files.length);
      for (const m of mappedSegments(dir)) expect(left.map((f) => join(dir, f))).toContain(m);
    } finally {
      await wal.close();
    }
    expect(mappedSegments(dir)).toEqual([]);
  });

  it('a failed mmap of a window fails the shard with ERR_WALRUS_IO, leaves nothing mapped, and changes nothing durable', async () => {
    const dir = tempDir('walrus-mmap-');
    const opts = { dir, backend: 'mmap', shards: 1, blockBytes: 4096, segmentBlocks: 4 } as const;
    const wal = await Walrus.open(opts);
    const written = Array.from({ length: 40 }, (_, i) => pseudoRandom(i + 1, 500));
    for (const p of written) wal.append('t', p);
    await wal.close();
    const saved = process.env.WALRUS_TEST_FAULT;
    process.env.WALRUS_TEST_FAULT = 'map:1:5';
    let err: unknown;
    try {
      const w = await Walrus.open(opts);
      err = await w.appendAndSync('t', 'more').then(
        () => null,
        (e: unknown) => e,
      );
      await w.close().catch(() => {});
    } finally {
      if (saved === undefined) delete process.env.WALRUS_TEST_FAULT;
      else process.env.WALRUS_TEST_FAULT = saved;
    }
    expect(err).toMatchObject({ code: 'ERR_WALRUS_IO', errno: EIO, errnoCode: 'EIO', syscall: 'mmap' });
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
