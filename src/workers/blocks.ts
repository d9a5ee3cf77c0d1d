/**
 * Blocks and topic chains. A block is a run of slots owned by one topic; a topic's entries
 * live in its blocks, in order, so reading a topic is sequential I/O that never touches
 * another topic's bytes.
 */
import {
  BLK_CRC,
  BLK_FIRST_HI,
  BLK_FIRST_LO,
  BLK_MAGIC,
  BLK_SALT,
  BLK_SEQ_HI,
  BLK_SEQ_LO,
  BLK_SLOTS,
  BLK_TOPIC,
  BLOCK_HEADER_BYTES,
  BLOCK_MAGIC,
} from '../shared/layout.js';
import { joinU64, u64Hi, u64Lo } from '../shared/format/u64.js';
import { native } from '../shared/native.js';
import type { Segment } from './segments.js';

/** The sparse in-block index keeps the position of every INDEX_EVERY-th record. */
export const INDEX_EVERY = 32;

export interface Block {
  seq: number;
  topicId: number;
  segment: Segment;
  slot: number;
  slots: number;
  /** File position of the block header. */
  start: number;
  /** File position of the first record. */
  dataStart: number;
  /** Bytes available for records. */
  capacity: number;
  /** Bytes of records written (or recovered). */
  used: number;
  /** Offset of the first record. */
  first: number;
  /** Offset after the last record. */
  next: number;
  salt: number;
  /** Pairs [offset, position relative to dataStart], every INDEX_EVERY records. */
  index: number[];
  /** The run of the write batch being built that ends at this block's end, if any. */
  run: Run | null;
  /**
   * Shared blocks only (else null): the topic of each record accepted or written into it, in
   * order (a topic appears once per record).
   */
  members: TopicLog[] | null;
  /** Shared blocks: records in it at or after their topic's cursor (the block is consumed at 0). */
  unconsumed: number;
}

/** A record of a topic that lives in a shared block. */
export interface SmallRecord {
  block: Block;
  /** Position of the record relative to the block's dataStart. */
  rel: number;
  offset: number;
  /** Its footprint in bytes. */
  fp: number;
}

/** A contiguous range of a file that one write operation of a batch fills. */
export interface Run {
  segment: Segment;
  pos: number;
  end: number;
  /** Triples: iovec source, offset, length. */
  iovs: number[];
  block: Block;
}

export interface TopicLog {
  id: number;
  name: string;
  blocks: Block[];
  /** The block new records go to, or null when the next record needs a new block. */
  cur: Block | null;
  /** Offset after the last record written. */
  next: number;
  /** Offset after the last record that completed its batch: the recoverable end. */
  complete: number;
  /** `complete` as of the last successful fsync. */
  durable: number;
  /** `durable` as last recorded in a sync mark. */
  marked: number;
  /** Offset of the first entry still stored (entries before it were consumed and deleted). */
  start: number;
  /**
   * The committed read cursor: every entry before it is consumed. This is the position cursor
   * records persist and deletion of consumed segments obeys. Under StrictlyAtOnce it equals
   * `delivered` at all times; under atLeastOnce it trails `delivered` by the entries of the
   * last checkpointing read, which the next checkpointing read (or a commit) commits.
   */
  cursor: number;
  /** `cursor` as last written to the meta topic. */
  cursorWritten: number;
  /**
   * Offset of the next entry a checkpointing read returns (peeks read here too). Never
   * persisted: after a restart it starts at the recovered `cursor`. Invariant:
   * start <= cursor <= delivered <= complete (recovery and retention keep it).
   */
  delivered: number;
  /** Where the last read of this topic stopped, so a sequential reader needs no seek. */
  readHint: { offset: number; block: Block; rel: number } | null;
  /**
   * The topic's records in shared blocks, by offset (dense). They all come before the
   * entries of `blocks`: a topic writes into shared blocks only while it has no block of its
   * own, and at most about `ShardStore.sharedLimit` bytes.
   */
  small: SmallRecord[];
  /** Footprint of `small`. */
  smallBytes: number;
  /** The batch being placed goes to shared blocks (decided at its first record). */
  sharedBatch: boolean;
  /**
   * Sequence numbers of the segments holding the last meta record that stated this topic's
   * name, start and cursor (0: never stated). A deletion of a segment holding meta blocks
   * restates every topic that has one of these in it.
   */
  nameSeq: number;
  startSeq: number;
  cursorSeq: number;
}

export function newTopic(id: number, name: string): TopicLog {
  return {
    id,
    name,
    blocks: [],
    cur: null,
    next: 0,
    complete: 0,
    durable: 0,
    marked: 0,
    start: 0,
    cursor: 0,
    cursorWritten: 0,
    delivered: 0,
    readHint: null,
    small: [],
    smallBytes: 0,
    sharedBatch: false,
    nameSeq: 0,
    startSeq: 0,
    cursorSeq: 0,
  };
}

/** Appends a shared record to `t.small` (a first one in an array of one: most topics of a log with very many hold one). */
export function addSmall(t: TopicLog, r: SmallRecord): void {
  if (t.small.length === 0) t.small = [r];
  else t.small.push(r);
}

/**
 * Moves the read cursor of `t` to `next`, keeping the consumed counts of the shared blocks
 * that hold its records in step (a shared block is consumed when every record in it is).
 */
export function moveCursor(t: TopicLog, next: number): void {
  const small = t.small;
  if (small.length > 0 && next !== t.cursor) {
    const base = small[0]!.offset;
    const lo = Math.max(0, Math.min(t.cursor, next) - base);
    const hi = Math.min(small.length, Math.max(t.cursor, next) - base);
    const delta = next > t.cursor ? -1 : 1;
    for (let k = lo; k < hi; k++) small[k]!.block.unconsumed += delta;
  }
  t.cursor = next;
}

/** Whether a meta record in segment `seq` or older is the last to state part of `t`'s state. */
export function statedIn(t: TopicLog, seq: number): boolean {
  return t.nameSeq <= seq || (t.startSeq > 0 && t.startSeq <= seq) || (t.cursorSeq > 0 && t.cursorSeq <= seq);
}

/** Records the position of a record about to be appended at relative position `rel`. */
export function indexRecord(b: Block, offset: number, rel: number): void {
  if ((offset - b.first) % INDEX_EVERY === 0) b.index.push(offset, rel);
}

/** Relative position of the last indexed record at or before `offset`, with its offset. */
export function seekInBlock(b: Block, offset: number): { offset: number; rel: number } {
  const idx = b.index;
  let lo = 0;
  let hi = idx.length / 2 - 1;
  let best = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (idx[mid * 2]! <= offset) {
      best = mid;
      lo = mid + 1;
    } else hi = mid - 1;
  }
  return best < 0 ? { offset: b.first, rel: 0 } : { offset: idx[best * 2]!, rel: idx[best * 2 + 1]! };
}

/** The block of `t` that holds `offset`, or undefined. Blocks are in offset order. */
export function findBlock(t: TopicLog, offset: number): Block | undefined {
  const bs = t.blocks;
  let lo = 0;
  let hi = bs.length - 1;
  let found: Block | undefined;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (bs[mid]!.first <= offset) {
      found = bs[mid];
      lo = mid + 1;
    } else hi = mid - 1;
  }
  return found && offset < found.next ? found : undefined;
}

export interface BlockHeader {
  topicId: number;
  seq: number;
  first: number;
  slots: number;
  salt: number;
}

export function encodeBlockHeader(h: BlockHeader): Uint8Array {
  const b = new Uint8Array(BLOCK_HEADER_BYTES);
  const dv = new DataView(b.buffer);
  dv.setUint32(BLK_MAGIC, BLOCK_MAGIC, true);
  dv.setUint32(BLK_TOPIC, h.topicId, true);
  dv.setUint32(BLK_SEQ_LO, u64Lo(h.seq), true);
  dv.setUint32(BLK_SEQ_HI, u64Hi(h.seq), true);
  dv.setUint32(BLK_FIRST_LO, u64Lo(h.first), true);
  dv.setUint32(BLK_FIRST_HI, u64Hi(h.first), true);
  dv.setUint32(BLK_SLOTS, h.slots, true);
  dv.setUint32(BLK_SALT, h.salt, true);
  dv.setUint32(BLK_CRC, native.crc32c(b.subarray(0, BLK_CRC)), true);
  return b;
}

/** Decodes a block header; null if it is not a valid one (never written, torn, or garbage). */
export function decodeBlockHeader(b: Uint8Array): BlockHeader | null {
  if (b.length < BLOCK_HEADER_BYTES) return null;
  const dv = new DataView(b.buffer, b.byteOffset, BLOCK_HEADER_BYTES);
  if (dv.getUint32(BLK_MAGIC, true) !== BLOCK_MAGIC) return null;
  if (dv.getUint32(BLK_CRC, true) !== native.crc32c(b.subarray(0, BLK_CRC))) return null;
  return {
    topicId: dv.getUint32(BLK_TOPIC, true),
    seq: joinU64(dv.getUint32(BLK_SEQ_LO, true), dv.getUint32(BLK_SEQ_HI, true)),
    first: joinU64(dv.getUint32(BLK_FIRST_LO, true), dv.getUint32(BLK_FIRST_HI, true)),
    slots: dv.getUint32(BLK_SLOTS, true),
    salt: dv.getUint32(BLK_SALT, true),
  };
}
