/**
 * The scan's first phase, over a shard's files: opening each segment (header and size checks,
 * recognising a creation cut short), probing its slots for block headers, and tearing slots
 * whose header is damaged (after harvesting the marks in them). Also the reads of a block's
 * bytes that the chain replays share.
 */
import { statSync } from 'node:fs';
import { type WalrusError, corruptError } from '../../shared/errors.js';
import { BLOCK_HEADER_BYTES, SEGMENT_DATA_START, SEGMENT_HEADER_BYTES, SHARED_TOPIC_ID } from '../../shared/format/layout.js';
import { native } from '../../shared/native.js';
import { type Block } from '../store/model.js';
import { decodeBlockHeader } from '../../shared/format/block.js';
import { OPEN_EXISTING, OPEN_READ_ONLY } from '../../shared/file-io.js';
import { type Segment } from '../store/model.js';
import { allocationBoundary, blockSalt, decodeSegmentHeader, listSegments, segmentBytes, slotPosition } from '../../shared/format/segment.js';
import { readSegment, segmentState } from '../store/segments.js';
import type { ShardStore } from '../store/store.js';
import type { BreakPoint, Findings, ScanMode } from './findings.js';
import { harvestMarks } from './marks.js';

/** What probing a shard's files found. */
export interface ShardProbe {
  /** Segment files listed (recovery of a shard with none is clean). */
  files: number;
  /** Valid blocks by topic id (SHARED_TOPIC_ID: the shared chain), each list in block-sequence order. */
  found: Map<number, Block[]>;
  /**
   * Marks found outside the meta chain (marks.ts): facts wherever they are found. Probing
   * adds those of damaged slots, the meta replay those of the meta bytes it drops.
   */
  harvested: Map<number, number>;
  /** The first slot whose block header is damaged (not zero, not valid). */
  firstDamage: BreakPoint | null;
  /** A last segment whose creation was cut short (recover removes it). */
  abandoned: { path: string; why: string } | null;
}

/** Opens every segment of the shard into `store.segments` and collects its valid blocks. */
export function probeShard(store: ShardStore, findings: Findings): ShardProbe {
  const probe: ShardProbe = { files: 0, found: new Map(), harvested: new Map(), firstDamage: null, abandoned: null };
  // A memory shard starts empty: its segments never outlive the instance.
  const files = store.memory ? [] : listSegments(store.dir, store.shard);
  probe.files = files.length;
  for (let k = 0; k < files.length; k++) {
    const opened = openSegment(store, files[k]!, k === files.length - 1, findings.mode);
    if (typeof opened === 'string') {
      probe.abandoned = { path: files[k]!.path, why: opened };
      continue;
    }
    if ('code' in opened) {
      findings.fail(opened);
      continue;
    }
    const seg = opened;
    store.segments.push(seg);
    store.lastSegmentSeq = seg.seq;
    const damaged: number[] = [];
    const blocks = probeBlocks(store, seg, damaged);
    const short = checkSegmentSize(seg);
    if (short !== null) findings.fail(short);
    for (const b of blocks) {
      let list = probe.found.get(b.topicId);
      if (!list) probe.found.set(b.topicId, (list = []));
      list.push(b);
      if (b.seq > store.lastBlockSeq) store.lastBlockSeq = b.seq;
      if (b.topicId > store.maxTopicId && b.topicId !== SHARED_TOPIC_ID) store.maxTopicId = b.topicId;
    }
    for (const slot of damaged) tearDamagedSlot(store, seg, slot, probe, findings);
  }
  for (const list of probe.found.values()) list.sort((a, b) => a.seq - b.seq);
  return probe;
}

/**
 * A slot whose header is neither zero nor valid: a torn header write, or damage. Its bytes
 * are torn unless a mark in it (or anywhere) says they were durable.
 */
function tearDamagedSlot(store: ShardStore, seg: Segment, slot: number, probe: ShardProbe, findings: Findings): void {
  const start = slotPosition(slot, seg.blockBytes);
  const buf = new Uint8Array(seg.blockBytes);
  const got = native.pread(store.fd(seg), buf, start);
  harvestMarks(buf, 0, got, null, probe.harvested);
  findings.tear(seg, start, nonZeroExtent(buf, 0, got), 'slot whose block header is damaged');
  probe.firstDamage ??= { file: seg.path, pos: start };
}

/**
 * Opens and validates a segment (read-write to recover, read-only to inspect; never writes).
 * Returns the reason when it is a last segment whose creation was cut short (closed again,
 * for recovery to remove), the corruption error when it is invalid otherwise.
 */
function openSegment(store: ShardStore, f: { seq: number; path: string }, isLast: boolean, mode: ScanMode): Segment | string | WalrusError {
  store.files.flags = mode === 'recover' ? OPEN_EXISTING : OPEN_READ_ONLY;
  store.files.reserve();
  const fd = native.open(f.path, store.files.flags, 0);
  const fail = (pos: number, why: string): WalrusError => {
    native.close(fd);
    return corruptError(f.path, pos, why);
  };
  const head = new Uint8Array(SEGMENT_HEADER_BYTES);
  const got = native.pread(fd, head, 0);
  const h = decodeSegmentHeader(head.subarray(0, got));
  if (typeof h === 'string') {
    // A file cut inside its header counts as a creation cut short only if what is left is
    // zeros: creation extends the file by writing the whole 64-byte header at once, then
    // preallocates and fsyncs before the file is used.
    if (isLast && isAllZeroAfter(fd, got < SEGMENT_HEADER_BYTES ? 0 : SEGMENT_HEADER_BYTES)) {
      native.close(fd);
      return h;
    }
    return fail(0, h);
  }
  if (h.shard !== store.shard || h.seq !== f.seq) {
    return fail(0, `segment header names shard ${h.shard} sequence ${h.seq}, the file name says otherwise`);
  }
  // Creation writes the 64-byte header, allocates the first step of the file (fallocate or
  // ftruncate) and fdatasyncs it before any block is written: a file shorter than that was
  // cut afterwards, unless it is the last one and exactly its header (creation cut short
  // before the sizing reached the disk). Later steps are checked against the blocks found
  // (checkSegmentSize, after probing).
  const size = native.fstatSize(fd);
  const full = segmentBytes(h.slots, h.blockBytes);
  const first = allocationBoundary(0, full);
  if (size < first) {
    if (isLast && size === SEGMENT_HEADER_BYTES) {
      native.close(fd);
      return `${size} of ${first} bytes`;
    }
    return fail(size, `the segment file is ${size} bytes, shorter than its first allocation (${first}): truncated`);
  }
  // Recovery fdatasyncs every segment before the shard writes (recover()).
  const seg: Segment = segmentState(
    { seq: h.seq, path: f.path, fd, slots: h.slots, blockBytes: h.blockBytes, salt: h.salt, version: h.version },
    statSync(f.path).mtimeMs,
    size,
  );
  store.files.adopt(seg);
  return seg;
}

/**
 * A segment's file must reach the allocation boundary at or past the end of its last valid
 * block: a slot is handed to a block only once the step holding it is durably allocated
 * (ShardStore.ensureRoom), so no crash leaves a block on disk in a file shorter than that. A
 * shorter file was cut afterwards (its blocks past the cut, and the marks in them, would vanish
 * without a trace). Returns the corruption, or null.
 */
function checkSegmentSize(seg: Segment): WalrusError | null {
  const need = allocationBoundary(slotPosition(seg.nextSlot, seg.blockBytes), segmentBytes(seg.slots, seg.blockBytes));
  if (seg.allocated >= need) return null;
  return corruptError(seg.path, seg.allocated, `the segment file is ${seg.allocated} bytes, its blocks need ${need}: truncated`);
}

function isAllZeroAfter(fd: number, from: number): boolean {
  const buf = new Uint8Array(1 << 20);
  for (let pos = from; ; pos += buf.length) {
    const got = native.pread(fd, buf, pos);
    for (let i = 0; i < got; i++) if (buf[i] !== 0) return false;
    if (got < buf.length) return true;
  }
}

/**
 * Every valid block header in `seg`; sets seg.nextSlot past the last one. Slots not covered
 * by a valid block whose first 64 bytes are not all zero go to `damaged`.
 */
function probeBlocks(store: ShardStore, seg: Segment, damaged: number[]): Block[] {
  const out: Block[] = [];
  const hb = new Uint8Array(BLOCK_HEADER_BYTES);
  const fd = store.files.fd(seg);
  // Slots past the end of the file hold nothing (they read as zeros): not probed, which also
  // bounds the probe by the file's real size whatever geometry its header claims.
  const slots = Math.min(seg.slots, Math.ceil((seg.allocated - SEGMENT_DATA_START) / seg.blockBytes));
  let slot = 0;
  while (slot < slots) {
    const start = slotPosition(slot, seg.blockBytes);
    const got = native.pread(fd, hb, start);
    const h = got === BLOCK_HEADER_BYTES ? decodeBlockHeader(hb) : null;
    if (!h || h.salt !== blockSalt(seg.salt, h.seq) || h.slots < 1 || slot + h.slots > seg.slots) {
      if (got > 0 && hb.subarray(0, got).some((x) => x !== 0)) damaged.push(slot);
      slot++;
      continue;
    }
    out.push({
      seq: h.seq,
      topicId: h.topicId,
      segment: seg,
      slot,
      slots: h.slots,
      start,
      dataStart: start + BLOCK_HEADER_BYTES,
      capacity: h.slots * seg.blockBytes - BLOCK_HEADER_BYTES,
      used: 0,
      first: h.first,
      next: h.first,
      salt: h.salt,
      index: [],
      run: null,
      members: h.topicId === SHARED_TOPIC_ID ? [] : null,
      unconsumed: 0,
    });
    slot += h.slots;
    seg.nextSlot = slot;
  }
  seg.blocks = out;
  return out;
}

/** The block's record area, read whole into `scratch` (grown when too small). */
export function readBlock(b: Block, scratch: Uint8Array): Uint8Array {
  const buf = scratch.length >= b.capacity ? scratch : new Uint8Array(b.capacity);
  const got = readSegment(b.segment, buf.subarray(0, b.capacity), b.dataStart);
  if (got < b.capacity) buf.fill(0, got, b.capacity);
  return buf;
}

/** Bytes from `from` up to the last non-zero byte before `end` (0 if all zero). */
export function nonZeroExtent(buf: Uint8Array, from: number, end: number): number {
  let e = end;
  // Word-wise first: unwritten space is long runs of zeros.
  while (e - 4 >= from && (e & 3) === 0 && (buf[e - 1]! | buf[e - 2]! | buf[e - 3]! | buf[e - 4]!) === 0) e -= 4;
  while (e > from && buf[e - 1] === 0) e--;
  return e - from;
}
