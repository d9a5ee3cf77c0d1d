/**
 * Segment files of one shard: naming, creation (header, preallocation, fsync of the file and
 * of the directory) and the slot grid that blocks are carved from.
 */
import { randomInt } from 'node:crypto';
import { readdirSync, statfsSync } from 'node:fs';
import { join } from 'node:path';
import { WalrusError, ioError } from '../shared/errors.js';
import {
  FORMAT_VERSION,
  MIN_FORMAT_VERSION,
  SEGMENT_DATA_START,
  SEGMENT_HEADER_BYTES,
  SEGMENT_MAGIC,
  SEG_BLOCK_BYTES,
  SEG_CRC,
  SEG_HEADER_BYTES,
  SEG_MAGIC,
  SEG_SALT,
  SEG_SEQ_HI,
  SEG_SEQ_LO,
  SEG_SHARD,
  SEG_SLOTS,
  SEG_VERSION,
} from '../shared/layout.js';
import { joinU64, u64Hi, u64Lo } from '../shared/format/u64.js';
import { type BackgroundSync, native } from '../shared/native.js';
import type { Block } from './blocks.js';
import type { SegmentFiles } from './files.js';

export interface Segment {
  seq: number;
  path: string;
  /** Open descriptor, or -1 while the shard's SegmentFiles (files.ts) has it closed. */
  fd: number;
  slots: number;
  blockBytes: number;
  /** First slot not yet handed to a block. */
  nextSlot: number;
  salt: number;
  /** Every block with a valid header in this segment (recovered or allocated). */
  blocks: Block[];
  /** When the segment stopped taking new blocks (ms; its mtime when recovered), 0 before. */
  sealedAt: number;
  /** Written since its last fdatasync (or msync): the writer still owes it a sync. */
  unsynced: boolean;
  /** Bytes of the file allocated (its size as this worker made or found it). */
  allocated: number;
  /**
   * Bytes whose allocation is known durable (an fdatasync or msync of the file completed after
   * the fallocate that made them). Slots are handed to blocks only below this (see ensureRoom).
   */
  durableAllocated: number;
  /** The shard's descriptor cache that opens and closes this segment's file (files.ts). */
  files: SegmentFiles | null;
  /** The background fdatasync that makes `allocated` (up to `aheadEnd`) durable, if one runs. */
  aheadSync: BackgroundSync | null;
  aheadEnd: number;
  /** Format version in its header: new blocks go only into segments of FORMAT_VERSION. */
  version: number;
}

/** `s<shard, 3 digits>-<seq, 20 digits>.seg`: sorts by shard, then by sequence. */
export function segmentName(shard: number, seq: number): string {
  return `s${String(shard).padStart(3, '0')}-${String(seq).padStart(20, '0')}.seg`;
}

const SEGMENT_RE = /^s(\d{3,})-(\d{20})\.seg$/;

/** Segment files of `shard` in `dir`, by ascending sequence number. */
export function listSegments(dir: string, shard: number): { seq: number; path: string }[] {
  const out: { seq: number; path: string }[] = [];
  for (const name of readdirSync(dir)) {
    const m = SEGMENT_RE.exec(name);
    if (m && Number(m[1]) === shard) out.push({ seq: Number(m[2]), path: join(dir, name) });
  }
  return out.sort((a, b) => a.seq - b.seq);
}

/** Shard indexes that have segment files in `dir`. */
export function shardsOnDisk(dir: string): number[] {
  const set = new Set<number>();
  for (const name of readdirSync(dir)) {
    const m = SEGMENT_RE.exec(name);
    if (m) set.add(Number(m[1]));
  }
  return [...set].sort((a, b) => a - b);
}

export function segmentBytes(slots: number, blockBytes: number): number {
  return SEGMENT_DATA_START + slots * blockBytes;
}

export function slotPosition(slot: number, blockBytes: number): number {
  return SEGMENT_DATA_START + slot * blockBytes;
}

/**
 * Space is allocated to a segment file in steps, not whole at creation (docs/FORMAT.md,
 * "Segment file"): the first step at creation, then steps that double up to the largest, so
 * an empty segment costs about FIRST_ALLOCATION_STEP and a full one as many allocations as
 * steps (eight for a 64 MiB segment) rather than one per write.
 */
export const FIRST_ALLOCATION_STEP = 1024 * 1024;
export const MAX_ALLOCATION_STEP = 16 * 1024 * 1024;

/**
 * The smallest allocation boundary at or past `end` for a segment of `full` bytes: boundaries
 * are SEGMENT_DATA_START plus 1, 3, 7, 15, 31, 47, 63, ... MiB (steps of 1, 2, 4, 8, then
 * 16 MiB), and `full` itself.
 */
export function allocationBoundary(end: number, full: number): number {
  let at = SEGMENT_DATA_START;
  let step = FIRST_ALLOCATION_STEP;
  while (at < end && at < full) {
    at += step;
    step = Math.min(step * 2, MAX_ALLOCATION_STEP);
  }
  return Math.min(Math.max(at, SEGMENT_DATA_START + FIRST_ALLOCATION_STEP), full);
}

/** The boundary after the one at or past `end`: where the next step of allocation ends. */
export function nextAllocationBoundary(end: number, full: number): number {
  return allocationBoundary(allocationBoundary(end, full) + 1, full);
}

/**
 * Extends the file to `end` (fallocate, or ftruncate where the file system lacks it; memory
 * segments are sized whole at creation). Not durable until the next fdatasync of the file.
 */
export function allocate(fd: number, from: number, end: number): void {
  try {
    native.fallocate(fd, from, end - from);
  } catch (err) {
    if ((err as { code?: string }).code !== 'EOPNOTSUPP') throw err;
    native.ftruncate(fd, end);
  }
}

export function encodeSegmentHeader(shard: number, seq: number, slots: number, blockBytes: number, salt: number): Uint8Array {
  const h = new Uint8Array(SEGMENT_HEADER_BYTES);
  const dv = new DataView(h.buffer);
  h.set(Buffer.from(SEGMENT_MAGIC, 'ascii'), SEG_MAGIC);
  dv.setUint32(SEG_VERSION, FORMAT_VERSION, true);
  dv.setUint32(SEG_HEADER_BYTES, SEGMENT_HEADER_BYTES, true);
  dv.setUint32(SEG_SHARD, shard, true);
  dv.setUint32(SEG_BLOCK_BYTES, blockBytes, true);
  dv.setUint32(SEG_SEQ_LO, u64Lo(seq), true);
  dv.setUint32(SEG_SEQ_HI, u64Hi(seq), true);
  dv.setUint32(SEG_SLOTS, slots, true);
  dv.setUint32(SEG_SALT, salt, true);
  dv.setUint32(SEG_CRC, native.crc32c(h.subarray(0, SEG_CRC)), true);
  return h;
}

export interface SegmentHeader {
  version: number;
  shard: number;
  seq: number;
  slots: number;
  blockBytes: number;
  salt: number;
}

/** Decodes a segment header, or returns a reason it is invalid. */
export function decodeSegmentHeader(h: Uint8Array): SegmentHeader | string {
  if (h.length < SEGMENT_HEADER_BYTES) return 'the file is shorter than a segment header';
  const dv = new DataView(h.buffer, h.byteOffset, SEGMENT_HEADER_BYTES);
  if (Buffer.from(h.buffer, h.byteOffset, 8).toString('latin1') !== SEGMENT_MAGIC) return 'bad segment magic';
  if (dv.getUint32(SEG_CRC, true) !== native.crc32c(h.subarray(0, SEG_CRC))) return 'segment header checksum mismatch';
  const version = dv.getUint32(SEG_VERSION, true);
  if (version < MIN_FORMAT_VERSION || version > FORMAT_VERSION) return `unsupported format version ${version}`;
  if (dv.getUint32(SEG_HEADER_BYTES, true) !== SEGMENT_HEADER_BYTES) return 'unexpected segment header size';
  const blockBytes = dv.getUint32(SEG_BLOCK_BYTES, true);
  const slots = dv.getUint32(SEG_SLOTS, true);
  if (blockBytes < 4096 || blockBytes % 4096 !== 0 || slots < 1) return 'invalid segment geometry';
  return {
    version,
    shard: dv.getUint32(SEG_SHARD, true),
    seq: joinU64(dv.getUint32(SEG_SEQ_LO, true), dv.getUint32(SEG_SEQ_HI, true)),
    slots,
    blockBytes,
    salt: dv.getUint32(SEG_SALT, true),
  };
}

const { O_RDWR, O_CREAT, O_EXCL, O_CLOEXEC, O_NOFOLLOW, O_RDONLY, O_DIRECTORY } = native.constants;
export const OPEN_EXISTING = O_RDWR | O_CLOEXEC | O_NOFOLLOW;
/** For tools that must never change a log (the CLI's verify, inspect and dump). */
export const OPEN_READ_ONLY = O_RDONLY | O_CLOEXEC | O_NOFOLLOW;
const CREATE_NEW = O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW;
export const FILE_MODE = 0o600;

/** fsync of a directory, so a file created or removed in it survives power loss. */
export function fsyncDir(dir: string): void {
  let fd = -1;
  try {
    fd = native.open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
    native.fsync(fd);
  } catch (err) {
    throw ioError(err, 'fsync of the data directory failed', dir);
  } finally {
    if (fd >= 0) native.close(fd);
  }
}

/**
 * Creates a segment: exclusive create, header, allocation of its first step, fdatasync,
 * directory fsync. Only then is the file used, so a segment that recovery sees with a valid
 * header was fully set up, and one without is a creation cut short by a crash. The rest of
 * its space is allocated in steps as blocks need it (ShardStore.ensureRoom).
 *
 * With `memory` (the 'memory' backend) the segment is an anonymous memory file instead: no
 * path, sized whole with ftruncate so that its pages are only allocated as blocks are written.
 */
export function createSegment(dir: string, shard: number, seq: number, slots: number, blockBytes: number, memory = false): Segment {
  const path = join(dir, segmentName(shard, seq));
  const salt = randomInt(1, 2 ** 32 - 1);
  const full = segmentBytes(slots, blockBytes);
  const size = memory ? full : allocationBoundary(0, full);
  let fd = -1;
  try {
    fd = memory ? native.memfdCreate(segmentName(shard, seq)) : native.open(path, CREATE_NEW, FILE_MODE);
    native.pwritev(fd, [encodeSegmentHeader(shard, seq, slots, blockBytes, salt)], 0);
    if (memory) native.ftruncate(fd, size);
    else allocate(fd, 0, size);
    native.fdatasync(fd);
  } catch (err) {
    if (fd >= 0) {
      // Ours (O_EXCL): removed, so that no half-made file is left between segments, where
      // recovery would rightly call it corrupt. Best effort: the creation error is the one
      // to report, and recovery removes a last file that is only a header anyway.
      native.close(fd);
      try {
        native.unlink(path);
      } catch {
        // See above.
      }
    }
    throw ioError(err, `creating segment ${path} failed`, path);
  }
  if (!memory) fsyncDir(dir);
  return segmentState({ seq, path, fd, slots, blockBytes, salt, version: FORMAT_VERSION }, 0, size);
}

/**
 * The in-memory state of a segment file that holds no block yet: `sealedAt` 0 while it may
 * still take blocks, `size` bytes allocated and durable (creation and recovery fdatasync
 * before any block is written).
 */
export function segmentState(
  id: { seq: number; path: string; fd: number; slots: number; blockBytes: number; salt: number; version: number },
  sealedAt: number,
  size: number,
): Segment {
  return {
    ...id,
    nextSlot: 0,
    blocks: [],
    sealedAt,
    unsynced: false,
    allocated: size,
    durableAllocated: size,
    files: null,
    aheadSync: null,
    aheadEnd: 0,
  };
}

/**
 * Copy-on-write file systems (statfs f_type) on which fallocate does not reserve the space
 * that writing a page back needs: a write fault there can raise SIGBUS on a full disk.
 */
const COPY_ON_WRITE_FILE_SYSTEMS: ReadonlyMap<number, string> = new Map([
  [0x9123683e, 'btrfs'],
  [0x2fc12fc1, 'zfs'],
  [0xca451a4e, 'bcachefs'],
]);

/** Why the mmap backend refuses a file system of statfs type `type`, or null when it does not. */
export function mmapRefusal(type: number): string | null {
  const name = COPY_ON_WRITE_FILE_SYSTEMS.get(type);
  if (name === undefined) return null;
  return `the mmap backend refuses ${name}: on a copy-on-write file system fallocate does not reserve the space a write fault may need, and a full disk would then kill the process with SIGBUS instead of failing with ENOSPC; use backend 'fd' here`;
}

/** Throws ERR_WALRUS_IO (EOPNOTSUPP) when `dir` is on a file system the mmap backend refuses. */
export function checkMmapFileSystem(dir: string): void {
  const why = mmapRefusal(Number(statfsSync(dir).type));
  if (why !== null) throw new WalrusError('ERR_WALRUS_IO', `${why} (${dir})`, { errnoCode: 'EOPNOTSUPP', errno: 95, syscall: 'statfs', file: dir });
}

/**
 * Reads into `buf` from `position` of the segment; returns bytes read. On the mmap backend
 * the context copies from its write window when the range lies in one, else preads.
 */
export function readSegment(seg: Segment, buf: Uint8Array, position: number): number {
  const fd = seg.files !== null ? seg.files.fd(seg) : seg.fd;
  const mapper = seg.files?.mapper ?? null;
  return mapper !== null ? mapper.readMapped(fd, buf, position) : native.pread(fd, buf, position);
}

/** The salt every record of a block carries: unique per block incarnation. */
export function blockSalt(segmentSalt: number, blockSeq: number): number {
  const mixed = Math.imul((segmentSalt ^ u64Lo(blockSeq)) >>> 0, 0x9e3779b1) ^ u64Hi(blockSeq);
  return (mixed ^ (mixed >>> 15)) >>> 0;
}
