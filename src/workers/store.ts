/**
 * A shard's files and topics as its worker holds them: segments, the topic chains and block
 * allocation. Recovery builds it; the writer appends to it; the reader looks things up in it.
 */
import { BLOCK_HEADER_BYTES, META_TOPIC_ID, SHARED_TOPIC_ID } from '../shared/layout.js';
import { type IoContext, native } from '../shared/native.js';
import { type Block, type TopicLog, encodeBlockHeader, newTopic } from './blocks.js';
import { type Segment, blockSalt, createSegment, mapSegment, slotPosition, unmapSegment } from './segments.js';

/** Bounds of ShardStore.sharedLimit. */
const MIN_SHARED_LIMIT = 1024;
const MAX_SHARED_LIMIT = 64 * 1024;

export class ShardStore {
  readonly segments: Segment[] = [];
  readonly topics = new Map<number, TopicLog>();
  /**
   * The chain of shared blocks: records of many small topics, in write order. Its `next`
   * counts the records of the chain (block headers carry that count as `first`); it is not
   * in `topics`.
   */
  readonly shared: TopicLog = newTopic(SHARED_TOPIC_ID, '');
  /**
   * Bytes of records a topic keeps in shared blocks before it gets blocks of its own: a
   * sixteenth of a slot (1 KiB to 64 KiB), so a topic that outgrows sharing wastes at most
   * 16x what it holds on its first own block, and a small topic costs only its bytes.
   */
  readonly sharedLimit: number;
  /** The segment blocks are allocated from (the last one), if any. */
  current: Segment | null = null;
  /** A fully created, empty segment ready to become current. */
  spare: Segment | null = null;
  lastBlockSeq = 0;
  lastSegmentSeq = 0;
  maxTopicId = 0;
  /** mmap backend: the context every segment is mapped through (set after recovery), else null. */
  private mapper: IoContext | null = null;
  /**
   * Why creating the spare failed, if it did. Reported when a new segment is needed, not
   * before: a full disk then still serves reads and the appends that fit, and the failure
   * reaches the first append that needs the space, with its errno. Never retried.
   */
  private spareError: unknown = null;

  constructor(
    readonly dir: string,
    readonly shard: number,
    readonly blockBytes: number,
    readonly segmentSlots: number,
    /** Segments are anonymous memory files with no directory entry (the 'memory' backend). */
    readonly memory = false,
  ) {
    this.topics.set(META_TOPIC_ID, newTopic(META_TOPIC_ID, ''));
    this.sharedLimit = Math.min(MAX_SHARED_LIMIT, Math.max(MIN_SHARED_LIMIT, Math.floor(blockBytes / 16)));
  }

  /**
   * Whether the batch that `t` is about to start (`n` records, the first of `footprint`
   * bytes) goes to shared blocks: only while the topic has no block of its own (so its shared
   * records always come first) and stays within `sharedLimit`. Never the meta topic.
   */
  fitsShared(t: TopicLog, footprint: number, n: number): boolean {
    return t.id !== META_TOPIC_ID && t.blocks.length === 0 && t.smallBytes + footprint * n <= this.sharedLimit;
  }

  get meta(): TopicLog {
    return this.topics.get(META_TOPIC_ID)!;
  }

  /** Registers a topic id (from a TopicDef record or from recovery). */
  addTopic(id: number, name: string): TopicLog {
    let t = this.topics.get(id);
    if (!t) {
      t = newTopic(id, name);
      this.topics.set(id, t);
    }
    if (id > this.maxTopicId) this.maxTopicId = id;
    return t;
  }

  /**
   * Allocates a new block for `t` big enough for a record of `footprint` bytes, whose first
   * record will have offset `t.next`. Returns the block and its header bytes, which must be
   * written at `block.start` before (or together with) its first record.
   */
  allocateBlock(t: TopicLog, footprint: number): { block: Block; header: Uint8Array } {
    const slots = Math.max(1, Math.ceil((BLOCK_HEADER_BYTES + footprint) / this.blockBytes));
    let seg = this.current;
    if (!seg || seg.nextSlot + slots > seg.slots) seg = this.rollSegment(slots);
    const slot = seg.nextSlot;
    seg.nextSlot += slots;
    const seq = ++this.lastBlockSeq;
    const start = slotPosition(slot, this.blockBytes);
    const salt = blockSalt(seg.salt, seq);
    const block: Block = {
      seq,
      topicId: t.id,
      segment: seg,
      slot,
      slots,
      start,
      dataStart: start + BLOCK_HEADER_BYTES,
      capacity: slots * this.blockBytes - BLOCK_HEADER_BYTES,
      used: 0,
      first: t.next,
      next: t.next,
      salt,
      index: [],
      run: null,
      members: t === this.shared ? [] : null,
      unconsumed: 0,
    };
    t.blocks.push(block);
    seg.blocks.push(block);
    t.cur = block;
    return { block, header: encodeBlockHeader({ topicId: t.id, seq, first: t.next, slots, salt }) };
  }

  /** Makes a segment with room for `slots` current, from the spare if it is big enough. */
  private rollSegment(slots: number): Segment {
    let seg = this.spare;
    if (seg && seg.slots >= slots) {
      this.spare = null;
    } else {
      if (this.spareError !== null) throw this.spareError;
      seg = this.createSegment(Math.max(slots, this.segmentSlots));
    }
    if (this.current) this.current.sealedAt = Date.now();
    this.current = seg;
    return seg;
  }

  private createSegment(slots: number): Segment {
    const seg = createSegment(this.dir, this.shard, ++this.lastSegmentSeq, slots, this.blockBytes, this.memory);
    this.segments.push(seg);
    if (this.mapper !== null) mapSegment(this.mapper, seg);
    return seg;
  }

  /**
   * mmap backend: maps every segment recovery kept, and every segment created from now on.
   * Recovery reads and repairs with pread/pwritev and fdatasyncs before this, so the mappings
   * start from files whose content is durable.
   */
  useMappings(io: IoContext): void {
    this.mapper = io;
    for (const seg of this.segments) mapSegment(io, seg);
  }

  /**
   * Creates the next segment ahead of need once the current one is half used, so rotation
   * does not stall a drain on file creation and two fsyncs.
   */
  prepareSpare(): boolean {
    const cur = this.current;
    if (this.spare || this.spareError !== null || (cur && cur.nextSlot * 2 < cur.slots)) return false;
    try {
      this.spare = this.createSegment(this.segmentSlots);
    } catch (err) {
      this.spareError = err;
    }
    return true;
  }

  /** Unmaps and closes every segment; throws the first failure after trying them all. */
  closeFiles(): void {
    let error: unknown = null;
    for (const s of this.segments) {
      if (s.fd < 0) continue;
      try {
        unmapSegment(s);
      } catch (err) {
        error ??= err;
      }
      try {
        native.close(s.fd);
      } catch (err) {
        error ??= err;
      }
      s.fd = -1;
    }
    if (error !== null) throw error;
  }
}
