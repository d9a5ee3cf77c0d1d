// The addon: CRC32C, frame sealing and verification, file operations and IoContext.writeBatch
// on both the pwritev and the io_uring path.
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';

import { crc32c as referenceCrc32c } from '@node-rs/crc32';
import { afterEach, describe, expect, it } from 'vitest';

import {
  IOV_FIELDS,
  IOV_SOURCE_RING,
  REC_CRC,
  REC_KIND,
  REC_LEN,
  RECORD_CRC_START,
  RECORD_HEADER_BYTES,
  RING_CONTROL_BYTES,
  RUN_OUT_FIELDS,
  WRITE_OP_FIELDS,
  recordFootprint,
} from '../dist/shared/format/layout.js';
import { type IoContext, native } from '../dist/shared/native.js';

const { O_RDONLY, O_RDWR, O_CREAT, O_EXCL, O_CLOEXEC, O_NOFOLLOW } = native.constants;
const fixturesDir = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures');
const nativeModuleUrl = pathToFileURL(
  path.join(path.dirname(fileURLToPath(import.meta.url)), '../dist/shared/native.js'),
).href;

// Every test's directories and descriptors are released after it, whatever it did.
const tempDirs: string[] = [];
const openFds = new Set<number>();

afterEach(() => {
  for (const fd of openFds) {
    try {
      native.close(fd);
    } catch {
      // already closed by the test's own failure path; nothing left to release
    }
  }
  openFds.clear();
  for (const dir of tempDirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'walrus-native-'));
  tempDirs.push(dir);
  return dir;
}

function openFile(file: string, flags = O_RDWR | O_CREAT): number {
  const fd = native.open(file, flags | O_CLOEXEC | O_NOFOLLOW, 0o644);
  openFds.add(fd);
  return fd;
}

function closeFile(fd: number): void {
  openFds.delete(fd);
  native.close(fd);
}

/** A descriptor number no process has open (far above any RLIMIT_NOFILE in use). */
const NEVER_OPEN_FD = 0x7fff_fff0;

function expectSystemError(fn: () => unknown, code: string, syscall: string): void {
  let thrown: unknown;
  try {
    fn();
  } catch (error) {
    thrown = error;
  }
  expect(thrown).toBeInstanceOf(Error);
  expect(thrown).toMatchObject({ code, syscall, errno: os.constants.errno[code as keyof typeof os.constants.errno] });
  expect((thrown as Error).message).toMatch(new RegExp(`^${code}: [a-z].*, ${syscall}$`));
}

function randomSeed(): number {
  return randomInt(0, 2 ** 32);
}

/** `bytes` copied into a view at `offset` of a SharedArrayBuffer. */
function sharedCopy(bytes: Uint8Array, offset = 0): Uint8Array {
  const view = new Uint8Array(new SharedArrayBuffer(offset + bytes.length + 5), offset, bytes.length);
  view.set(bytes);
  return view;
}

function reference(bytes: Uint8Array, seed = 0): number {
  return referenceCrc32c(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength), seed);
}

describe('crc32c', () => {
  const implementations = [
    ['crc32c', native.crc32c],
    ['_crc32cPortable', (native as unknown as { _crc32cPortable: typeof native.crc32c })._crc32cPortable],
  ] as const;

  it.each(implementations)('%s gives the standard check value and continues from a seed', (_, crc) => {
    expect(crc(Buffer.from('123456789'))).toBe(0xe3069283);
    expect(crc(new Uint8Array(0))).toBe(0);
    expect(crc(new Uint8Array(0), 0xdeadbeef)).toBe(0xdeadbeef);
    expect(crc(Buffer.from('6789'), crc(Buffer.from('12345')))).toBe(0xe3069283);
  });

  it.each(implementations)('%s agrees with @node-rs/crc32 on random inputs, seeds and views', (_, crc) => {
    const stripeEdges = [7, 8, 9, 191, 192, 193, 575, 576, 577, 767, 768, 769, 24_575, 24_576, 24_577, 25_351, 49_999];
    const lengths = [...Array.from({ length: 41 }, (__, i) => i), ...stripeEdges];
    for (let i = 0; i < 150; i++) lengths.push(randomInt(0, 100_001));
    for (const length of lengths) {
      const offset = randomInt(0, 8); // misaligned starts exercise the head loop
      const bytes = randomBytes(length + offset).subarray(offset);
      const seed = randomSeed();
      expect(crc(bytes)).toBe(reference(bytes));
      expect(crc(bytes, seed)).toBe(reference(bytes, seed));
      expect(crc(sharedCopy(bytes, offset), seed)).toBe(reference(bytes, seed));
    }
  });

  it.each(implementations)('%s chains: crc(b, crc(a)) equals crc(a || b)', (_, crc) => {
    for (let i = 0; i < 100; i++) {
      const bytes = randomBytes(randomInt(0, 60_000));
      const cut = randomInt(0, bytes.length + 1);
      expect(crc(bytes.subarray(cut), crc(bytes.subarray(0, cut)))).toBe(crc(bytes));
    }
  });

  it('uses the CPU instruction where the CPU has it, and both paths agree', () => {
    const cpuinfo = fs.readFileSync('/proc/cpuinfo', 'utf8');
    if (process.arch === 'x64') expect(native.crc32cHardware()).toBe(/\bsse4_2\b/.test(cpuinfo));
    else expect(typeof native.crc32cHardware()).toBe('boolean');
    const portable = (native as unknown as { _crc32cPortable: typeof native.crc32c })._crc32cPortable;
    const bytes = randomBytes(1 << 20);
    expect(native.crc32c(bytes, 12345)).toBe(portable(bytes, 12345));
  });

  it('rejects what is not a Uint8Array', () => {
    expect(() => native.crc32c('123' as unknown as Uint8Array)).toThrow(TypeError);
    expect(() => native.crc32c(new Uint16Array(4) as unknown as Uint8Array)).toThrow(/data must be a Uint8Array/);
    expect(() => native.crc32c(new Uint8Array(4), 'x' as unknown as number)).toThrow(TypeError);
  });
});

interface Frames {
  buf: Uint8Array;
  positions: Uint32Array;
  lengths: number[];
  end: number;
}

/** Frames with random headers and payloads, zero padding, CRC fields left zero. */
function makeFrames(lengths: number[], into?: Uint8Array): Frames {
  const end = lengths.reduce((sum, len) => sum + recordFootprint(len), 0);
  const buf = into ?? new Uint8Array(end + 64);
  const positions = new Uint32Array(lengths.length);
  let at = 0;
  lengths.forEach((len, i) => {
    positions[i] = at;
    buf.set(randomBytes(RECORD_HEADER_BYTES + len), at);
    new DataView(buf.buffer, buf.byteOffset).setUint32(at + REC_LEN, len, true);
    buf.fill(0, at + RECORD_HEADER_BYTES + len, at + recordFootprint(len));
    new DataView(buf.buffer, buf.byteOffset).setUint32(at + REC_CRC, 0, true);
    at += recordFootprint(len);
  });
  return { buf, positions, lengths, end };
}

/** verifyFrames as specified, in JavaScript. */
function referenceVerify(buf: Uint8Array, start: number, end: number): number {
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let at = start;
  while (end - at >= RECORD_HEADER_BYTES) {
    const len = view.getUint32(at + REC_LEN, true);
    // recordFootprint() uses 32-bit operators; lengths near 2^32 need plain arithmetic here.
    const footprint = Math.ceil((RECORD_HEADER_BYTES + len) / 8) * 8;
    if (footprint > end - at) break;
    const covered = buf.subarray(at + RECORD_CRC_START, at + RECORD_HEADER_BYTES + len);
    if (view.getUint32(at + REC_CRC, true) !== reference(covered)) break;
    at += footprint;
  }
  return at;
}

describe('sealFrames / verifyFrames', () => {
  it('seals every frame with the CRC of its header after the CRC field and its payload', () => {
    const frames = makeFrames([0, 1, 7, 8, 100, 750, 4093]);
    native.sealFrames(frames.buf, frames.positions, frames.positions.length);
    const view = new DataView(frames.buf.buffer);
    frames.lengths.forEach((len, i) => {
      const at = frames.positions[i]!;
      const covered = frames.buf.subarray(at + RECORD_CRC_START, at + RECORD_HEADER_BYTES + len);
      expect(view.getUint32(at + REC_CRC, true)).toBe(reference(covered));
    });
    expect(native.verifyFrames(frames.buf, 0, frames.end)).toBe(frames.end);
    expect(native.verifyFrames(frames.buf, frames.positions[3]!, frames.end)).toBe(frames.end);
  });

  it('seals only the first `count` positions', () => {
    const frames = makeFrames([10, 20, 30]);
    native.sealFrames(frames.buf, frames.positions, 2);
    expect(native.verifyFrames(frames.buf, 0, frames.end)).toBe(frames.positions[2]);
  });

  it('works on a view of a SharedArrayBuffer at an offset', () => {
    const shared = new Uint8Array(new SharedArrayBuffer(8192), RING_CONTROL_BYTES, 4096);
    const frames = makeFrames([5, 500, 50], shared);
    native.sealFrames(shared, frames.positions, 3);
    expect(native.verifyFrames(shared, 0, frames.end)).toBe(frames.end);
    expect(referenceVerify(shared, 0, frames.end)).toBe(frames.end);
  });

  it('stops at the frame whose covered bytes changed, not at one whose padding changed', () => {
    const frames = makeFrames([40, 13, 200, 3]);
    native.sealFrames(frames.buf, frames.positions, 4);
    const payloadBit = frames.positions[2]! + RECORD_HEADER_BYTES + 150;
    frames.buf[payloadBit] ^= 0x10;
    expect(native.verifyFrames(frames.buf, 0, frames.end)).toBe(frames.positions[2]);
    frames.buf[payloadBit] ^= 0x10;
    frames.buf[frames.positions[1] + REC_KIND] ^= 0x01;
    expect(native.verifyFrames(frames.buf, 0, frames.end)).toBe(frames.positions[1]);
    frames.buf[frames.positions[1] + REC_KIND] ^= 0x01;
    frames.buf[frames.positions[0] + REC_CRC] ^= 0x80;
    expect(native.verifyFrames(frames.buf, 0, frames.end)).toBe(0);
    frames.buf[frames.positions[0] + REC_CRC] ^= 0x80;
    // 13 bytes of payload leave 3 bytes of padding, which the CRC does not cover.
    frames.buf[frames.positions[1] + RECORD_HEADER_BYTES + 14] = 0xff;
    expect(native.verifyFrames(frames.buf, 0, frames.end)).toBe(frames.end);
  });

  it('stops at a frame whose length does not fit before end', () => {
    const frames = makeFrames([64, 64, 64]);
    native.sealFrames(frames.buf, frames.positions, 3);
    const last = frames.positions[2]!;
    expect(native.verifyFrames(frames.buf, 0, frames.end - 1)).toBe(last);
    expect(native.verifyFrames(frames.buf, 0, last + RECORD_HEADER_BYTES + 10)).toBe(last);
    expect(native.verifyFrames(frames.buf, 0, last + RECORD_HEADER_BYTES - 1)).toBe(last);
    const view = new DataView(frames.buf.buffer);
    const justTooLong = frames.end - frames.positions[1]! - RECORD_HEADER_BYTES + 1;
    for (const len of [justTooLong, 0xffff_ffff, 0xffff_fff9, 0x8000_0000, frames.buf.length]) {
      view.setUint32(frames.positions[1]! + REC_LEN, len, true);
      expect(native.verifyFrames(frames.buf, 0, frames.end)).toBe(frames.positions[1]);
    }
  });

  it('never reads outside the buffer whatever its bytes, and agrees with the specification', () => {
    for (let i = 0; i < 3000; i++) {
      let buf: Uint8Array;
      if (i % 2 === 0) {
        buf = randomBytes(randomInt(0, 2048));
        // Small lengths make frames that nearly fit, the interesting case.
        for (let at = 0; at + 8 <= buf.length; at += 8) {
          if (randomInt(0, 3) === 0) new DataView(buf.buffer, buf.byteOffset).setUint32(at + 4, randomInt(0, 200), true);
        }
      } else {
        const frames = makeFrames(Array.from({ length: randomInt(1, 12) }, () => randomInt(0, 300)));
        native.sealFrames(frames.buf, frames.positions, frames.positions.length);
        buf = frames.buf;
        for (let k = randomInt(0, 4); k > 0; k--) buf[randomInt(0, buf.length)] = randomInt(0, 256);
      }
      const end = randomInt(0, buf.length + 1);
      const start = randomInt(0, end + 1);
      const got = native.verifyFrames(buf, start, end);
      expect(got).toBe(referenceVerify(buf, start, end));
      expect(got).toBeGreaterThanOrEqual(start);
      expect(got).toBeLessThanOrEqual(end);
    }
  });

  it('throws RangeError for positions, counts and bounds outside the buffers', () => {
    const frames = makeFrames([16, 16]);
    const { buf, positions } = frames;
    expect(() => native.verifyFrames(buf, 0, buf.length + 1)).toThrow(RangeError);
    expect(() => native.verifyFrames(buf, 10, 9)).toThrow(RangeError);
    expect(() => native.verifyFrames(buf, -1, 9)).toThrow(RangeError);
    expect(() => native.verifyFrames(buf, 0.5, 9)).toThrow(RangeError);
    expect(() => native.verifyFrames(buf, Number.NaN, 9)).toThrow(RangeError);
    expect(() => native.sealFrames(buf, positions, 3)).toThrow(/count/);
    expect(() => native.sealFrames(buf, new Uint32Array([buf.length - 31]), 1)).toThrow(RangeError);
    expect(() => native.sealFrames(buf, new Uint32Array([2 ** 32 - 1]), 1)).toThrow(RangeError);
    new DataView(buf.buffer).setUint32(positions[1]! + REC_LEN, buf.length, true);
    expect(() => native.sealFrames(buf, positions, 2)).toThrow(/past the end of buf/);
    expect(() => native.sealFrames(buf, [0] as unknown as Uint32Array, 1)).toThrow(TypeError);
  });
});

/** `count` random buffers of 0..maxLength bytes (some empty) and their concatenation. */
function randomChunks(count: number, maxLength: number): { chunks: Uint8Array[]; joined: Buffer } {
  const chunks = Array.from({ length: count }, () => new Uint8Array(randomBytes(randomInt(0, maxLength + 1))));
  return { chunks, joined: Buffer.concat(chunks) };
}

function readBack(fd: number, length: number, position = 0): Buffer {
  const buf = Buffer.alloc(length);
  expect(native.pread(fd, buf, position)).toBe(length);
  return buf;
}

describe('file operations', () => {
  it('pwritev writes more than IOV_MAX buffers and pread reads them back', () => {
    const fd = openFile(path.join(tempDir(), 'f'));
    const { chunks, joined } = randomChunks(2500, 300);
    expect(native.pwritev(fd, chunks, 0)).toBe(joined.length);
    expect(native.fstatSize(fd)).toBe(joined.length);
    expect(readBack(fd, joined.length).equals(joined)).toBe(true);
    const big = Buffer.alloc(joined.length + 100);
    expect(native.pread(fd, big, 0)).toBe(joined.length); // stops at end of file
    expect(native.pread(fd, Buffer.alloc(10), joined.length + 5)).toBe(0);
    expect(native.pwritev(fd, [], 0)).toBe(0);
  });

  it('writes and reads at positions beyond 4 GiB in a sparse file', () => {
    const fd = openFile(path.join(tempDir(), 'sparse'));
    const position = 5 * 2 ** 30 + 3;
    const { chunks, joined } = randomChunks(20, 1000);
    expect(native.pwritev(fd, chunks, position)).toBe(joined.length);
    expect(native.fstatSize(fd)).toBe(position + joined.length);
    expect(readBack(fd, joined.length, position).equals(joined)).toBe(true);
    expect(readBack(fd, 16, 2 ** 32).equals(Buffer.alloc(16))).toBe(true);
    const shared = new Uint8Array(new SharedArrayBuffer(joined.length + 8), 8);
    expect(native.pread(fd, shared, position)).toBe(joined.length);
    expect(Buffer.from(shared).equals(joined)).toBe(true);
  });

  it('truncates, allocates, syncs, renames and unlinks', () => {
    const dir = tempDir();
    const fd = openFile(path.join(dir, 'a'));
    native.fallocate(fd, 0, 1 << 20);
    expect(native.fstatSize(fd)).toBe(1 << 20);
    native.ftruncate(fd, 4096);
    expect(native.fstatSize(fd)).toBe(4096);
    native.fdatasync(fd);
    native.fsync(fd);
    native.rename(path.join(dir, 'a'), path.join(dir, 'b'));
    expect(fs.existsSync(path.join(dir, 'b'))).toBe(true);
    native.unlink(path.join(dir, 'b'));
    expect(fs.readdirSync(dir)).toEqual([]);
    expectSystemError(() => native.unlink(path.join(dir, 'b')), 'ENOENT', 'unlink');
    expectSystemError(() => native.rename(path.join(dir, 'b'), path.join(dir, 'c')), 'ENOENT', 'rename');
  });

  it('datasyncInBackground syncs a file and then its directory; closeInBackground takes a directory to sync', () => {
    const dir = tempDir();
    const file = path.join(dir, 'f');
    fs.writeFileSync(file, 'x');
    const ok = native.datasyncInBackground(file, dir);
    expect(native.backgroundSyncResult(ok, true)).toBe(0);
    expect(native.backgroundSyncSyscall(ok)).toBe('');
    // A directory that cannot be opened is the sync's error, reported as its errno, with the call.
    const noDir = native.datasyncInBackground(file, path.join(dir, 'missing'));
    expect(native.backgroundSyncResult(noDir, true)).toBe(os.constants.errno.ENOENT);
    expect(native.backgroundSyncSyscall(noDir)).toBe('open');
    expect(native.backgroundSyncResult(native.datasyncInBackground(path.join(dir, 'missing')), true)).toBe(os.constants.errno.ENOENT);
    expect(() => native.datasyncInBackground(file, 1 as never)).toThrow(TypeError);
    const fd = native.open(file, O_RDONLY, 0);
    expect(() => native.closeInBackground(fd, 1 as never)).toThrow(TypeError);
    native.closeInBackground(fd, dir);
  });

  it('reports failures with code, errno and syscall', () => {
    const dir = tempDir();
    const file = path.join(dir, 'f');
    fs.writeFileSync(file, 'hello');
    const readOnly = openFile(file, O_RDONLY);
    expectSystemError(() => native.pwritev(readOnly, [Buffer.from('x')], 0), 'EBADF', 'pwritev');
    expectSystemError(() => native.pwritev(NEVER_OPEN_FD, [Buffer.from('x')], 0), 'EBADF', 'pwritev');
    expectSystemError(() => native.fdatasync(NEVER_OPEN_FD), 'EBADF', 'fdatasync');
    expectSystemError(() => native.fsync(NEVER_OPEN_FD), 'EBADF', 'fsync');
    expectSystemError(() => native.pread(NEVER_OPEN_FD, Buffer.alloc(1), 0), 'EBADF', 'pread');
    expectSystemError(() => native.ftruncate(readOnly, 0), 'EINVAL', 'ftruncate');
    expectSystemError(() => native.fstatSize(NEVER_OPEN_FD), 'EBADF', 'fstat');
    expectSystemError(() => native.close(NEVER_OPEN_FD), 'EBADF', 'close');
    expectSystemError(() => native.open(path.join(dir, 'missing'), O_RDONLY, 0), 'ENOENT', 'open');
    expectSystemError(() => native.open(file, O_RDWR | O_CREAT | O_EXCL, 0o644), 'EEXIST', 'open');
    native.fdatasync(readOnly); // syncing a read-only descriptor is allowed
  });

  it('refuses to follow a symbolic link with O_NOFOLLOW', () => {
    const dir = tempDir();
    fs.writeFileSync(path.join(dir, 'target'), 'x');
    fs.symlinkSync(path.join(dir, 'target'), path.join(dir, 'link'));
    expectSystemError(() => native.open(path.join(dir, 'link'), O_RDONLY | O_NOFOLLOW | O_CLOEXEC, 0), 'ELOOP', 'open');
    const fd = native.open(path.join(dir, 'link'), O_RDONLY | O_CLOEXEC, 0);
    openFds.add(fd);
    expect(readBack(fd, 1).toString()).toBe('x');
  });

  it('flock refuses a second open file description until the first is closed', () => {
    const file = path.join(tempDir(), 'LOCK');
    const first = openFile(file);
    const second = openFile(file);
    expect(native.flock(first, true)).toBe(true);
    expect(native.flock(second, true)).toBe(false);
    expect(native.flock(second, false)).toBe(false);
    closeFile(first);
    expect(native.flock(second, true)).toBe(true);
    const third = openFile(file);
    expect(native.flock(third, false)).toBe(false);
    expectSystemError(() => native.flock(NEVER_OPEN_FD, true), 'EBADF', 'flock');
  });

  it('rejects positions, lengths and paths that are not valid', () => {
    const fd = openFile(path.join(tempDir(), 'f'));
    for (const position of [-1, 0.5, 2 ** 53, Number.NaN, Infinity]) {
      expect(() => native.pwritev(fd, [Buffer.from('x')], position)).toThrow(RangeError);
      expect(() => native.pread(fd, Buffer.alloc(1), position)).toThrow(RangeError);
    }
    expect(() => native.pwritev(fd, [Buffer.from('x')], 2 ** 53 - 1)).toThrow(/2\^53/);
    expect(() => native.pwritev(fd, ['x'] as unknown as Uint8Array[], 0)).toThrow(TypeError);
    expect(() => native.ftruncate(fd, -1)).toThrow(RangeError);
    expect(() => native.open('a\0b', O_RDONLY, 0)).toThrow(/NUL/);
    expect(() => native.close(-1)).toThrow(RangeError);
  });

  it('setAffinity pins the calling thread, and says false for a CPU that does not exist', async () => {
    // In a worker, so that the test process itself stays unpinned.
    const result = await runWorker(`
      const { native } = await import(workerData.url);
      const fs = require('node:fs');
      const status = () => fs.readFileSync('/proc/thread-self/status', 'utf8').match(/Cpus_allowed_list:\\s*(\\S+)/)[1];
      const pinned = native.setAffinity(0);
      return { pinned, allowed: status(), missing: native.setAffinity(65535) };
    `);
    expect(result).toEqual({ pinned: true, allowed: '0', missing: false });
  });
});

/** Runs `body` (an async function body) in a worker thread and returns its result. */
async function runWorker(body: string): Promise<unknown> {
  const source = `
    const { parentPort, workerData } = require('node:worker_threads');
    (async () => { ${body} })().then((value) => parentPort.postMessage({ value }), (error) => parentPort.postMessage({ error: String(error && error.stack || error) }));
  `;
  const worker = new Worker(source, { eval: true, workerData: { url: nativeModuleUrl } });
  // Listen for 'exit' before awaiting the message: under load both can be delivered before
  // the continuation after the message runs, and a late listener would wait forever.
  const exited = new Promise((resolve) => worker.once('exit', resolve));
  const message = await new Promise<{ value?: unknown; error?: string }>((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  });
  await exited;
  if (message.error !== undefined) throw new Error(message.error);
  return message.value;
}

/** A batch described the way the worker describes one, with the bytes each file must hold. */
class BatchBuilder {
  readonly ops: number[] = [];
  readonly iovs: number[] = [];
  readonly ext: Uint8Array[] = [];
  readonly expected = new Map<number, Buffer>();

  constructor(readonly ring: SharedArrayBuffer) {}

  /** Adds an op writing `pieces` ([source, offset, length]) to `fd` at `position`. */
  op(fd: number, position: number, pieces: Array<[number, number, number]>): void {
    this.ops.push(fd, position, this.iovs.length / IOV_FIELDS, pieces.length);
    const bytes: Uint8Array[] = [];
    for (const [source, offset, length] of pieces) {
      this.iovs.push(source, offset, length);
      const from = source === IOV_SOURCE_RING ? new Uint8Array(this.ring) : this.ext[source]!;
      bytes.push(from.subarray(offset, offset + length));
    }
    const data = Buffer.concat(bytes);
    const before = this.expected.get(fd) ?? Buffer.alloc(0);
    const after = Buffer.alloc(Math.max(before.length, position + data.length));
    before.copy(after);
    data.copy(after, position);
    this.expected.set(fd, after);
  }

  /** `count` random ring and external iovecs. */
  randomPieces(count: number): Array<[number, number, number]> {
    const ringBytes = this.ring.byteLength;
    return Array.from({ length: count }, () => {
      const source = randomInt(0, 4) === 0 && this.ext.length > 0 ? randomInt(0, this.ext.length) : IOV_SOURCE_RING;
      const size = source === IOV_SOURCE_RING ? ringBytes : this.ext[source]!.length;
      const offset = randomInt(0, size);
      return [source, offset, randomInt(0, Math.min(900, size - offset) + 1)];
    });
  }

  run(context: IoContext, syncFds: number[]): void {
    context.writeBatch(
      new Float64Array(this.ops),
      this.ops.length / WRITE_OP_FIELDS,
      new Float64Array(this.iovs),
      this.ext,
      new Int32Array(syncFds),
      syncFds.length,
    );
  }
}


function newRing(dataBytes = 1 << 16): SharedArrayBuffer {
  const ring = new SharedArrayBuffer(RING_CONTROL_BYTES + dataBytes);
  new Uint8Array(ring).set(randomBytes(ring.byteLength));
  return ring;
}

function externalBuffers(): Uint8Array[] {
  const shared = new Uint8Array(new SharedArrayBuffer(6000));
  shared.set(randomBytes(shared.length));
  return [
    new Uint8Array(randomBytes(5000)),
    new Uint8Array(shared.buffer, 13, 4000),
    new Uint8Array(randomBytes(3000)).subarray(7, 2900),
  ];
}

function ioUringFdCount(): number {
  return fs.readdirSync('/proc/self/fd').filter((fd) => {
    try {
      return fs.readlinkSync(`/proc/self/fd/${fd}`) === 'anon_inode:[io_uring]';
    } catch {
      return false; // the directory's own descriptor, gone by now
    }
  }).length;
}

const uringAvailable = native.uringSupported();
const paths = [
  { name: 'pwritev', useUring: false, available: true },
  { name: 'io_uring', useUring: true, available: uringAvailable },
];

describe.each(paths)('IoContext on the $name path', ({ useUring, available }) => {
  const test = available ? it : it.skip;
  const suffix = available ? '' : ' (skipped: io_uring_setup is not permitted here)';
  const writeSyscall = useUring ? 'writev' : 'pwritev';
  const contexts: IoContext[] = [];
  const newContext = (ring: SharedArrayBuffer, depth = 64): IoContext => {
    const context = new native.IoContext(ring, useUring, depth);
    contexts.push(context);
    return context;
  };
  afterEach(() => {
    for (const context of contexts.splice(0)) context.close();
  });

  test(`reports its path${suffix}`, () => {
    expect(newContext(newRing()).uring).toBe(useUring);
  });

  test.each([2, 5, 256])(
    `writes ring and external iovecs to two files, byte-exact, with fdatasync (depth %i)${suffix}`,
    (depth) => {
      const dir = tempDir();
      const a = openFile(path.join(dir, 'a'));
      const b = openFile(path.join(dir, 'b'));
      const syncOnly = openFile(path.join(dir, 'c'));
      const ring = newRing();
      const batch = new BatchBuilder(ring);
      batch.ext.push(...externalBuffers());
      batch.op(a, 0, batch.randomPieces(2500)); // more than IOV_MAX: split into pieces
      batch.op(b, 1 << 20, batch.randomPieces(40));
      batch.op(a, batch.expected.get(a)!.length, batch.randomPieces(30));
      batch.op(b, 0, batch.randomPieces(300));
      batch.op(b, 100, []); // no iovecs: nothing to do
      batch.op(a, 7, [[IOV_SOURCE_RING, 0, 0]]); // empty: nothing to do
      batch.op(b, 4096, [[0, 0, 5000], [IOV_SOURCE_RING, RING_CONTROL_BYTES, 1 << 16]]);
      batch.run(newContext(ring, depth), [a, b, syncOnly, a]);
      for (const fd of [a, b]) {
        const expected = batch.expected.get(fd)!;
        expect(native.fstatSize(fd)).toBe(expected.length);
        expect(readBack(fd, expected.length).equals(expected)).toBe(true);
      }
      expect(native.fstatSize(syncOnly)).toBe(0);
    },
  );

  test(`writes batch after batch through one context${suffix}`, () => {
    const fd = openFile(path.join(tempDir(), 'log'));
    const ring = newRing(1 << 12);
    const context = newContext(ring, 8);
    const expected: Buffer[] = [];
    let position = 0;
    for (let round = 0; round < 50; round++) {
      const batch = new BatchBuilder(ring);
      batch.op(fd, position, batch.randomPieces(randomInt(1, 40)));
      const written = batch.expected.get(fd)!.subarray(position);
      batch.run(context, round % 3 === 0 ? [fd] : []);
      expected.push(written);
      position += written.length;
    }
    expect(readBack(fd, position).equals(Buffer.concat(expected))).toBe(true);
  });

  test(`throws code, errno and syscall for a read-only or never-opened fd${suffix}`, () => {
    const dir = tempDir();
    fs.writeFileSync(path.join(dir, 'ro'), 'old');
    const readOnly = openFile(path.join(dir, 'ro'), O_RDONLY);
    const good = openFile(path.join(dir, 'good'));
    const ring = newRing();
    const context = newContext(ring);
    for (const badFd of [readOnly, NEVER_OPEN_FD]) {
      const batch = new BatchBuilder(ring);
      batch.op(good, 0, batch.randomPieces(10));
      batch.op(badFd, 0, batch.randomPieces(10));
      expectSystemError(() => batch.run(context, [good, badFd]), 'EBADF', writeSyscall);
    }
    const syncOnly = new BatchBuilder(ring);
    syncOnly.op(good, 0, syncOnly.randomPieces(3));
    expectSystemError(() => syncOnly.run(context, [good, NEVER_OPEN_FD]), 'EBADF', 'fdatasync');
    expect(fs.readFileSync(path.join(dir, 'ro'), 'utf8')).toBe('old');
    // The context stays usable after a failed batch.
    const after = new BatchBuilder(ring);
    after.op(good, 0, after.randomPieces(5));
    after.run(context, [good]);
    expect(readBack(good, after.expected.get(good)!.length).equals(after.expected.get(good)!)).toBe(true);
  });

  test(`completes a short write and reports the error that stops it (RLIMIT_FSIZE)${suffix}`, () => {
    const hasPrlimit = spawnSync('prlimit', ['--version']).status === 0;
    expect(hasPrlimit, 'prlimit (util-linux) is needed for this test').toBe(true);
    const dir = tempDir();
    const file = path.join(dir, 'limited');
    const script = path.join(dir, 'child.mjs');
    fs.writeFileSync(
      script,
      `
      import { native } from ${JSON.stringify(nativeModuleUrl)};
      const fd = native.open(${JSON.stringify(file)}, native.constants.O_RDWR | native.constants.O_CREAT, 0o644);
      const ring = new SharedArrayBuffer(256 + 8192);
      new Uint8Array(ring).fill(0x5a);
      const context = new native.IoContext(ring, ${useUring}, 8);
      // Three iovecs of 3000 bytes; the file may grow to 5000 bytes only.
      const ops = new Float64Array([fd, 0, 0, 3]);
      const iovs = new Float64Array([-1, 256, 3000, -1, 256, 3000, -1, 256, 3000]);
      let outcome;
      try {
        context.writeBatch(ops, 1, iovs, [], new Int32Array([fd]), 1);
        outcome = { ok: true };
      } catch (error) {
        outcome = { code: error.code, errno: error.errno, syscall: error.syscall };
      }
      console.log(JSON.stringify({ ...outcome, size: native.fstatSize(fd) }));
      `,
    );
    const output = execFileSync('prlimit', ['--fsize=5000', process.execPath, script], { encoding: 'utf8' });
    // The kernel writes up to the limit (a short write), the remainder fails with EFBIG.
    expect(JSON.parse(output)).toEqual({ code: 'EFBIG', errno: os.constants.errno.EFBIG, syscall: 'pwritev', size: 5000 });
    expect(fs.readFileSync(file).equals(Buffer.alloc(5000, 0x5a))).toBe(true);
  });

  test(`validates every op and iovec against its buffer${suffix}`, () => {
    const fd = openFile(path.join(tempDir(), 'f'));
    const ring = newRing(1024);
    const context = newContext(ring);
    const ext = [new Uint8Array(100)];
    const call = (ops: number[], iovs: number[], opCount = ops.length / 4, sync: number[] = []) =>
      context.writeBatch(new Float64Array(ops), opCount, new Float64Array(iovs), ext, new Int32Array(sync), sync.length);
    call([fd, 0, 0, 2], [-1, 0, ring.byteLength, 0, 0, 100]);
    expect(() => call([fd, 0, 0, 1], [-1, 1, ring.byteLength])).toThrow(/iovs\[0\].*inside its buffer/);
    expect(() => call([fd, 0, 0, 1], [0, 50, 51])).toThrow(RangeError);
    expect(() => call([fd, 0, 0, 1], [1, 0, 1])).toThrow(/source/);
    expect(() => call([fd, 0, 0, 1], [-2, 0, 1])).toThrow(/source/);
    expect(() => call([fd, 0, 0, 1], [0.5, 0, 1])).toThrow(/source/);
    expect(() => call([fd, 0, 0, 2], [-1, 0, 1])).toThrow(/ops\[0\].*iovecs/);
    expect(() => call([fd, 0.5, 0, 1], [-1, 0, 1])).toThrow(/position/);
    expect(() => call([fd, 2 ** 53 - 1, 0, 1], [-1, 0, 1])).toThrow(/2\^53/);
    expect(() => call([-1, 0, 0, 1], [-1, 0, 1])).toThrow(/fd/);
    expect(() => call([fd, 0, 0, 1], [-1, 0, 1], 2)).toThrow(/opCount/);
    expect(() => call([], [], 0, [-3])).toThrow(/syncFds\[0\]/);
    expect(() =>
      context.writeBatch(new Float64Array(0), 0, new Float64Array(0), [], new Int32Array(1), 2),
    ).toThrow(/syncCount/);
    expect(() =>
      context.writeBatch(new Float64Array(0), 0, new Float64Array(0), [new Uint16Array(1) as unknown as Uint8Array], new Int32Array(0), 0),
    ).toThrow(TypeError);
    expect(() => context.writeBatch([] as unknown as Float64Array, 0, new Float64Array(0), [], new Int32Array(0), 0)).toThrow(TypeError);
    expect(native.fstatSize(fd)).toBe(ring.byteLength + 100);
  });

  test(`refuses a ring that is not a SharedArrayBuffer, and a bad queue depth${suffix}`, () => {
    const IoContext = native.IoContext as unknown as new (ring: unknown, useUring: unknown, depth: unknown) => IoContext;
    expect(() => new IoContext(new ArrayBuffer(64), useUring, 8)).toThrow(/SharedArrayBuffer/);
    expect(() => new IoContext(new Uint8Array(new SharedArrayBuffer(64)), useUring, 8)).toThrow(/SharedArrayBuffer/);
    expect(() => new IoContext({ length: 4 }, useUring, 8)).toThrow(/SharedArrayBuffer/);
    expect(() => new IoContext(new SharedArrayBuffer(64), 1, 8)).toThrow(/useUring/);
    expect(() => new IoContext(new SharedArrayBuffer(64), useUring, 0)).toThrow(RangeError);
    expect(() => new IoContext(new SharedArrayBuffer(64), useUring, 32769)).toThrow(RangeError);
    const writeBatch = native.IoContext.prototype.writeBatch as unknown as (...args: unknown[]) => void;
    expect(() => writeBatch.call({}, new Float64Array(0), 0, new Float64Array(0), [], new Int32Array(0), 0)).toThrow();
  });

  test(`close() is idempotent and a closed context throws EBADF${suffix}`, () => {
    const fd = openFile(path.join(tempDir(), 'f'));
    const ring = newRing();
    const context = newContext(ring);
    context.close();
    context.close();
    const batch = new BatchBuilder(ring);
    batch.op(fd, 0, batch.randomPieces(3));
    expectSystemError(() => batch.run(context, []), 'EBADF', useUring ? 'io_uring_enter' : 'pwritev');
    expect(context.uring).toBe(useUring);
  });

  test(`a worker thread that exits without close() releases its contexts${suffix}`, async () => {
    const before = ioUringFdCount();
    // Counted inside the worker too: libuv may give the worker's own event loop a ring.
    const counts = await runWorker(`
      const { native } = await import(workerData.url);
      const fs = require('node:fs');
      const count = () => fs.readdirSync('/proc/self/fd').filter((fd) => {
        try { return fs.readlinkSync('/proc/self/fd/' + fd) === 'anon_inode:[io_uring]'; } catch { return false; }
      }).length;
      const initial = count();
      globalThis.keep = [1, 2, 3].map(() => new native.IoContext(new SharedArrayBuffer(4096), ${useUring}, 16));
      return [initial, count()];
    `);
    const [initial, during] = counts as [number, number];
    expect(during - initial).toBe(useUring ? 3 : 0);
    expect(ioUringFdCount()).toBe(before);
  });
  test(`a call made while its worker is being terminated never aborts the process${suffix}`, () => {
    // Before the fix the first termination aborted (std::terminate: the Napi::Error thrown
    // for the failed Node-API call could not be thrown into a stopping environment).
    const runs = Number(process.env.WALRUS_TERMINATE_RUNS ?? 20);
    const child = spawnSync(process.execPath, [path.join(fixturesDir, 'terminate-child.mjs'), nativeModuleUrl, String(runs), String(useUring)], {
      encoding: 'utf8',
      timeout: 120_000,
    });
    expect({ status: child.status, signal: child.signal, stderr: child.stderr }).toEqual({ status: 0, signal: null, stderr: '' });
    expect(child.stdout).toBe('done\n');
  }, 180_000);
});

describe('opaque handles', () => {
  it("accept only handles of their own kind: anything else, another kind's included, is a TypeError", () => {
    const file = path.join(tempDir(), 'f');
    fs.writeFileSync(file, 'x');
    const sync = native.datasyncInBackground(file);
    expect(native.backgroundSyncResult(sync, true)).toBe(0);
    const words = new Int32Array(new SharedArrayBuffer(16));
    const mark = native.markOnThreadExit(words, 1, 7, -1)!;
    for (const wrong of [{}, 1, null]) {
      expect(() => native.backgroundSyncResult(wrong as never, false)).toThrow(TypeError);
      expect(() => native.backgroundSyncSyscall(wrong as never)).toThrow(TypeError);
      expect(() => native.cancelThreadExitMark(wrong as never)).toThrow(TypeError);
    }
    expect(() => native.backgroundSyncResult(mark as never, false)).toThrow(TypeError);
    expect(() => native.cancelThreadExitMark(sync as never)).toThrow(TypeError);
    expect(() => native.markOnThreadExit(words, 4, 7, -1)).toThrow(RangeError);
    native.cancelThreadExitMark(mark);
    native.cancelThreadExitMark(mark);
    expect([...words]).toEqual([0, 0, 0, 0]);
  });
});

describe('io_uring probe', () => {
  it('is refused where the kernel disables io_uring, and gives working rings where it says yes', () => {
    let disabled = '0';
    try {
      disabled = fs.readFileSync('/proc/sys/kernel/io_uring_disabled', 'utf8').trim();
    } catch {
      // kernels before 6.6 have no such switch
    }
    if (disabled === '2') expect(uringAvailable).toBe(false);
    expect(native.uringSupported()).toBe(uringAvailable);
    if (uringAvailable) {
      for (const depth of [1, 4096]) {
        const context = new native.IoContext(new SharedArrayBuffer(64), true, depth);
        expect(context.uring).toBe(true);
        context.close();
      }
    }
  });
});

describe('sealRun', () => {
  /** Frames of `spec` (topic, offset, remaining, len) back to back; returns buffer and positions. */
  function frames(spec: [number, number, number, number][]): { buf: Uint8Array; at: number[] } {
    const at: number[] = [];
    let size = 0;
    for (const [, , , len] of spec) {
      at.push(size);
      size += (RECORD_HEADER_BYTES + len + 7) & ~7;
    }
    const buf = new Uint8Array(size + 64);
    const dv = new DataView(buf.buffer);
    spec.forEach(([topic, offset, remaining, len], k) => {
      const p = at[k]!;
      dv.setUint32(p + REC_LEN, len, true);
      dv.setUint32(p + 8, topic, true);
      buf[p + 12] = 1; // Entry
      dv.setUint32(p + 16, offset, true);
      dv.setUint32(p + 28, remaining, true);
      buf.fill(k + 1, p + RECORD_HEADER_BYTES, p + RECORD_HEADER_BYTES + len);
    });
    return { buf, at };
  }

  it('seals a run of one topic with the salt, and stops at another topic', () => {
    const { buf, at } = frames([
      [5, 10, 1, 100],
      [5, 11, 2, 7],
      [5, 12, 1, 0],
      [6, 0, 1, 9],
    ]);
    const out = new Float64Array(RUN_OUT_FIELDS + 20);
    const taken = native.sealRun(buf, 0, buf.length, 5, 10, 0xabcdef01, 1 << 20, out, 0, 2);
    expect(taken).toBe(at[3]);
    expect([...out.subarray(0, RUN_OUT_FIELDS)]).toEqual([3, 13, 2]);
    // Offsets 10 and 12 are multiples of 2 from indexBase 0: their positions are reported.
    expect([...out.subarray(RUN_OUT_FIELDS, RUN_OUT_FIELDS + 4)]).toEqual([10, at[0], 12, at[2]]);
    const dv = new DataView(buf.buffer);
    for (const p of at.slice(0, 3)) {
      expect(dv.getUint32(p + 24, true)).toBe(0xabcdef01);
      expect(native.verifyFrames(buf, p, buf.length)).toBeGreaterThan(p);
    }
    // The fourth frame (other topic) was not touched: its CRC is still 0, so it fails.
    expect(native.verifyFrames(buf, at[3]!, buf.length)).toBe(at[3]);
  });

  it('stops at an offset gap, at the room limit and at the limit, and reports no complete batch', () => {
    const { buf, at } = frames([
      [1, 0, 3, 50],
      [1, 1, 2, 50],
      [1, 3, 1, 50],
    ]);
    const out = new Float64Array(8);
    expect(native.sealRun(buf, 0, buf.length, 1, 0, 7, 1 << 20, out, 0, 32)).toBe(at[2]);
    expect([...out.subarray(0, RUN_OUT_FIELDS)]).toEqual([2, -1, 1]);
    expect(native.sealRun(buf, 0, buf.length, 1, 0, 7, at[1]! + 1, out, 0, 32)).toBe(at[1]);
    expect(native.sealRun(buf, 0, at[1]! + 10, 1, 0, 7, 1 << 20, out, 0, 32)).toBe(at[1]);
    expect(native.sealRun(buf, 0, buf.length, 2, 0, 7, 1 << 20, out, 0, 32)).toBe(0);
    expect(() => native.sealRun(buf, 0, buf.length + 1, 1, 0, 7, 1, out, 0, 32)).toThrow(RangeError);
    expect(() => native.sealRun(buf, 0, buf.length, 1, 0, 7, 1, new Float64Array(RUN_OUT_FIELDS - 1), 0, 32)).toThrow(RangeError);
  });
});
