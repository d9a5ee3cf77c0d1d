/**
 * The shard worker's model of its log: segments, the blocks carved from them, topics and
 * their chains of blocks. Types only; recovery builds them, the writer appends to them, the
 * reader and retention walk them (store.ts holds one shard's; topic.ts makes its topics).
 */
import type { IoContext } from '../../shared/native.js';
import type { LentSync } from './files.js';

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
  files: SegmentFileSource | null;
  /** The background fdatasync that makes `allocated` (up to `aheadEnd`) durable, if one runs. */
  aheadSync: LentSync | null;
  aheadEnd: number;
  /** Format version in its header: new blocks go only into segments of FORMAT_VERSION. */
  version: number;
}


/** What a segment needs of its shard's descriptor cache (SegmentFiles, files.ts). */
export interface SegmentFileSource {
  /** The segment's descriptor, opened if the cache had closed it. */
  fd(seg: Segment): number;
  /** mmap backend: the context that maps the shard's segments, else null. */
  readonly mapper: IoContext | null;
}

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

/**
 * A topic of the shard. Its numeric fields live in a Float64Array row shared by the shard's
 * topics (store/topic.ts makes them), not in the object: plain fields would cost a heap box
 * each once they hold a number V8 does not keep unboxed.
 */
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
  /**
   * Named consumers' positions in this topic, by consumer id (null while none has one: most
   * topics). The fields above (`cursor`, `delivered`, `cursorWritten`) are the default
   * consumer's.
   */
  positions: Map<number, Position> | null;
  /**
   * The deletion bound: every entry before it is committed by every consumer of the topic
   * (blocks.ts floorOf). Shared blocks count their records at or after it as unconsumed.
   */
  floor: number;
}

/**
 * Where one consumer stands in one topic: the default consumer's are a TopicLog's own
 * fields, a named consumer's a Position. The same rules apply to both (read/consumer.ts).
 */
export interface Cursor {
  /** The committed position: every entry before it is consumed (what records persist). */
  cursor: number;
  /** Where the next checkpointing read starts (never persisted). */
  delivered: number;
  /** `cursor` as last written to the meta topic. */
  cursorWritten: number;
}

export type Position = Cursor;

/** A named consumer of a shard (wal.consumer(name)): its id in this shard's meta records. */
export interface NamedConsumer {
  id: number;
  name: string;
  /** Its positions, by topic (each also in the topic's `positions`). */
  topics: Map<TopicLog, Position>;
  /** Entries it never read because a retention bound deleted them first, per topic id (since open). */
  skipped: Map<number, number>;
}

