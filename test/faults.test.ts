/**
 * Injected I/O errors (the WALRUS_TEST_FAULT seam, docs/DURABILITY.md): for every write and
 * every fdatasync of a small workload in turn, on both I/O paths, the shard fails with the
 * injected errno, acknowledges nothing after it, and a reopen finds every acknowledged entry.
 * The mmap project (vitest.config.ts) runs the same workload on the mmap backend, where the
 * faults are every msync and every mmap in turn (it has no write system call: see the test
 * that proves a write plan never fires there).
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Walrus, FsyncSchedule } from '../dist/index.js';
import { native } from '../dist/shared/native.js';
import { type IoFailure, closeAfterFault, expectRefusedAfter } from './fault-checks.js';
import { PORTABLE, collect, pseudoRandom, tempDir } from './helpers.js';

const EIO = 5;
const ENOSPC = 28;
const ERRNO_NAMES: Record<number, string> = { [EIO]: 'EIO', [ENOSPC]: 'ENOSPC' };
const APPENDS = 12;
const TOPICS = ['a', 'b'];
/** Far more than the workload's writes or fsyncs; reaching it means the seam never ran out. */
const MAX_NTH = 80;

type Kind = 'write' | 'fsync' | 'map';
type Path = 'io_uring' | 'pwritev' | 'mmap' | 'portable';

const MMAP = process.env.WALRUS_TEST_BACKEND === 'mmap';
/** Both fd I/O paths, or pwritev alone (said once) where io_uring is not available. */
const FD_PATHS: Path[] = native.uringSupported() ? ['io_uring', 'pwritev'] : ['pwritev'];
if (!MMAP && !PORTABLE && FD_PATHS.length === 1) console.warn('skipped: io_uring is not supported here (native.uringSupported() is false); only the pwritev path is tested');
/** The portable project: the portable I/O path, its faults injected by test/portable-faults.cjs. */
const PATHS: Path[] = MMAP ? ['mmap'] : PORTABLE ? ['portable'] : FD_PATHS;

/**
 * The payload of the i-th append of the workload: sizes vary (padding); with 4 KiB blocks and
 * 4-block segments the topics fill several blocks and the log rotates into new segments.
 */
function payload(i: number): Buffer {
  return pseudoRandom(i + 1, 1 + ((i * 397) % 2500));
}

/** The syscall an injected fault is reported as. */
function expectedSyscall(kind: Kind, path: Path, short: boolean): string {
  if (kind === 'map') return 'mmap';
  if (kind === 'fsync') return path === 'mmap' ? 'msync' : 'fdatasync';
  // A short write is completed with pwritev on both paths; that attempt is the one that fails.
  // The portable path reports its writev calls as the addon's pwritev path does.
  if (short || path === 'pwritev' || path === 'portable') return 'pwritev';
  return 'writev';
}

/** Opens with the fault plan `spec` in the environment the shard workers read at start. */
async function openWithFault(opts: Parameters<typeof Walrus.open>[0], spec: string): Promise<Walrus> {
  const saved = process.env.WALRUS_TEST_FAULT;
  process.env.WALRUS_TEST_FAULT = spec;
  try {
    return await Walrus.open(opts);
  } finally {
    if (saved === undefined) delete process.env.WALRUS_TEST_FAULT;
    else process.env.WALRUS_TEST_FAULT = saved;
  }
}

/**
 * One case: the workload with the nth write/fsync failing. Returns whether a fault surfaced
 * (false: the workload and close ran clean, so nth is past the last operation).
 */
async function runCase(path: Path, kind: Kind, nth: number, errno: number, short: boolean): Promise<boolean> {
  const dir = tempDir('walrus-fault-');
  const opts = { dir, shards: 1, fsync: FsyncSchedule.NoFsync, ioUring: path === 'io_uring', ringBytes: 1 << 16, blockBytes: 4096, segmentBlocks: 4 };
  const spec = `${kind}:${nth}:${errno}${short ? ':short' : ''}`;
  const wal = await openWithFault(opts, spec);
  const expected = new Map<string, Buffer[]>(TOPICS.map((t) => [t, []]));
  const acked = new Map<string, number[]>(TOPICS.map((t) => [t, []]));
  let failure: IoFailure | undefined;
  const match = { code: 'ERR_WALRUS_IO', errno, errnoCode: ERRNO_NAMES[errno], syscall: expectedSyscall(kind, path, short) };
  try {
    expect(wal.stats().io).toBe(path);
    for (let i = 0; i < APPENDS && failure === undefined; i++) {
      const topic = TOPICS[i % TOPICS.length]!;
      const data = payload(i);
      expected.get(topic)!.push(data);
      try {
        const offset = await wal.appendAndSync(topic, data);
        expect(offset).toBe(expected.get(topic)!.length - 1);
        acked.get(topic)!.push(offset);
      } catch (e) {
        failure = e as IoFailure;
      }
    }
    if (failure !== undefined) await expectRefusedAfter(wal, failure, match, `${spec} on ${path}`);
  } finally {
    // A fault that hit close's own write or fsync (the workload ran clean) surfaces there.
    failure = await closeAfterFault(wal, failure, match, `${spec} on ${path}`);
  }

  // Reopen without the fault: every acknowledged entry is there, byte-exact, offsets dense;
  // an unacknowledged entry may be there too, but then whole and right.
  const again = await Walrus.open(opts);
  try {
    for (const topic of TOPICS) {
      const got = await collect(again.iterate(topic));
      const want = expected.get(topic)!;
      const ack = acked.get(topic)!;
      expect(got.length, `${spec} on ${path}: topic ${topic}`).toBeGreaterThanOrEqual(ack.length);
      expect(got.length).toBeLessThanOrEqual(want.length);
      got.forEach((e, k) => {
        expect(e.offset).toBe(k);
        expect(Buffer.compare(e.data, want[k]!), `${spec} on ${path}: ${topic}@${k}`).toBe(0);
      });
    }
    // The reopened log takes appends again and continues the offsets.
    const next = await again.appendAndSync('a', 'after reopen');
    expect(next).toBe((await collect(again.iterate('a'))).length - 1);
  } finally {
    await again.close();
  }
  // Removed now rather than after the test, which runs dozens of cases.
  rmSync(dir, { recursive: true, force: true });
  return failure !== undefined;
}

describe.skipIf(MMAP)('IoContext.injectFault (the addon seam; mapped contexts: test/mmap.test.ts)', () => {
  it.each(PATHS)('fails the nth write or fdatasync, writes half before a short failure, and clears (%s)', (path) => {
    const dir = tempDir('walrus-seam-');
    const file = join(dir, 'f');
    const fd = native.open(file, native.constants.O_RDWR | native.constants.O_CREAT | native.constants.O_CLOEXEC, 0o644);
    const ring = new SharedArrayBuffer(4096);
    new Uint8Array(ring).fill(0x5a);
    const context = new native.IoContext(ring, path === 'io_uring', 8);
    try {
      // One write of 1000 ring bytes at `position`, then fdatasync when `sync`.
      const write = (position: number, sync: boolean) =>
        context.writeBatch(new Float64Array([fd, position, 0, 1]), 1, new Float64Array([-1, 0, 1000]), [], new Int32Array([fd]), sync ? 1 : 0);
      const io = (f: () => void) => {
        try {
          f();
          return null;
        } catch (e) {
          return e as IoFailure;
        }
      };
      context.injectFault!('write', 2, EIO, false);
      expect(io(() => write(0, true))).toBeNull();
      expect(io(() => write(1000, false))).toMatchObject({ code: 'EIO', errno: EIO, syscall: path === 'io_uring' ? 'writev' : 'pwritev' });
      expect(io(() => write(1000, true))).toBeNull(); // one fault per plan
      context.injectFault!('fsync', 1, ENOSPC, false);
      expect(io(() => write(2000, false))).toBeNull(); // writes are not counted by an fsync plan
      expect(io(() => write(2000, true))).toMatchObject({ code: 'ENOSPC', errno: ENOSPC, syscall: 'fdatasync' });
      context.injectFault!('write', 1, EIO, true);
      expect(io(() => write(4000, false))).toMatchObject({ code: 'EIO', errno: EIO, syscall: 'pwritev' });
      // pwritev wrote half for real; io_uring wrote it all but reported half. Either way the
      // first half is on disk.
      expect(native.fstatSize(fd)).toBe(path === 'io_uring' ? 5000 : 4500);
      context.injectFault!('write', 1, EIO, false);
      context.injectFault!('write', 0, 0, false); // cleared
      expect(io(() => write(5000, true))).toBeNull();
      expect(() => context.injectFault!('read' as 'write', 1, EIO, false)).toThrow(TypeError);
      expect(() => context.injectFault!('write', 1, 0, false)).toThrow(RangeError);
      expect(() => context.injectFault!('write', -1, EIO, false)).toThrow(RangeError);
    } finally {
      context.close();
      native.close(fd);
    }
  });
});

/** Faults injected per (kind, path): errno name -> count. */
const injected = new Map<string, Map<string, number>>();
afterAll(() => {
  for (const [key, byErrno] of injected) {
    const parts = [...byErrno].map(([name, n]) => `${name}=${n}`);
    const total = [...byErrno.values()].reduce((a, b) => a + b, 0);
    console.log(`faults injected: ${key} ${parts.join(' ')} total=${total}; every case failed with the injected errno and reopened with every acknowledged entry`);
  }
});

const VARIANTS = MMAP ? (['fsync', 'map'] as const) : (['write', 'fsync', 'write:short'] as const);
const cases = VARIANTS.flatMap((variant) => [EIO, ENOSPC].map((errno) => ({ variant, errno, name: ERRNO_NAMES[errno]! })));
/**
 * Each case must have failed at least this many operations in turn: one write and one fsync
 * per appendAndSync at least; on the mmap backend one mmap per segment the workload creates:
 * its blocks (4 KiB, 4 per segment) fill two segments, and a third, the spare created ahead
 * of need, exists only when the worker had an idle moment for it (timing).
 */
const MIN_OPERATIONS: Record<(typeof VARIANTS)[number], number> = { write: APPENDS, 'write:short': APPENDS, fsync: APPENDS, map: 2 };

describe.each(PATHS)('injected I/O errors (%s)', (path) => {
  it.each(cases)('$variant fails with $name at every operation in turn', async ({ variant, errno, name }) => {
    const kind: Kind = variant === 'fsync' || variant === 'map' ? variant : 'write';
    const short = variant === 'write:short';
    let nth = 1;
    while (await runCase(path, kind, nth, errno, short)) {
      nth++;
      expect(nth, 'the workload should run out of operations').toBeLessThan(MAX_NTH);
    }
    // Operations 1..nth-1 each failed once; the nth run had nothing left to fail.
    expect(nth - 1).toBeGreaterThanOrEqual(MIN_OPERATIONS[variant]);
    const key = `kind=${variant} path=${path}`;
    if (!injected.has(key)) injected.set(key, new Map());
    injected.get(key)!.set(name, nth - 1);
  });
});

describe.runIf(MMAP)('the mmap backend has no write system call', () => {
  it('a write fault plan never fires there: the workload and close run clean and reopen whole', async () => {
    expect(await runCase('mmap', 'write', 1, EIO, false)).toBe(false);
  });
});

describe('close() after a shard failure (issue 11, item 4)', () => {
  it('rejects with the shard error when appends it acknowledged were never made durable', async () => {
    const dir = tempDir('walrus-fault-');
    // pwritev: an injected write fault there writes nothing (through io_uring the bytes may
    // still land), so the acknowledged entries are really missing after the failure.
    const opts = { dir, shards: 1, fsync: FsyncSchedule.NoFsync, ioUring: false, ringBytes: 1 << 16, blockBytes: 4096, segmentBlocks: 4 };
    // The first write (or, on mmap, the first msync) fails: acknowledged appends never land.
    const spec = MMAP ? `fsync:1:${EIO}` : `write:1:${EIO}`;
    const wal = await openWithFault(opts, spec);
    const match = { code: 'ERR_WALRUS_IO', errno: EIO, errnoCode: 'EIO', syscall: MMAP ? 'msync' : 'pwritev' };
    let acked = 0;
    // Rounds of appends, each written before the next: a write fails with acknowledged
    // entries behind it (fd), or the first fsync fails (mmap). Appends refused once the
    // failure is known are not acknowledged.
    try {
      for (let round = 0; round < 2; round++) {
        for (let i = 0; i < 10; i++) {
          wal.append('a', payload(acked));
          acked++;
        }
        await wal.flush().catch(() => {});
      }
    } catch (e) {
      expect(e).toMatchObject({ code: 'ERR_WALRUS_IO', errno: EIO });
    }
    expect(acked).toBeGreaterThan(0);
    // The failure is known before close: sync reports it.
    await expect(wal.sync()).rejects.toMatchObject({ code: 'ERR_WALRUS_IO', errno: EIO });
    await expect(wal.close()).rejects.toMatchObject(match);
    // Reopened without the fault: on fd, fewer entries than acknowledged, which is what close
    // said (on mmap the failed msync's pages may still reach the file through the page cache).
    const again = await Walrus.open(opts);
    try {
      const recovered = (await collect(again.iterate('a'))).length;
      if (!MMAP) expect(recovered).toBeLessThan(acked);
    } finally {
      await again.close();
    }
  });
});
