/**
 * Segment files as the format defines them (docs/FORMAT.md, "Segment file"): their names,
 * their header, the slot grid blocks are carved from, the steps in which their space is
 * allocated, and the salt of each block. Creating and opening them is the shard worker's
 * (src/workers/store/segments.ts).
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
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
} from './layout.js';
import { native } from '../native.js';
import { joinU64, u64Hi, u64Lo } from './u64.js';

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

/** The salt every record of a block carries: unique per block incarnation. */
export function blockSalt(segmentSalt: number, blockSeq: number): number {
  const mixed = Math.imul((segmentSalt ^ u64Lo(blockSeq)) >>> 0, 0x9e3779b1) ^ u64Hi(blockSeq);
  return (mixed ^ (mixed >>> 15)) >>> 0;
}
