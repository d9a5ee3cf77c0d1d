/**
 * A shard's files and topics as its worker holds them: segments, the topic chains and block
 * allocation. Recovery builds it; the writer appends to it; the reader looks things up in it.
 */
import { BLOCK_HEADER_BYTES, META_TOPIC_ID } from '../shared/layout.js';
import { type IoContext, native } from '../shared/native.js';
import { type Block, type TopicLog, encodeBlockHeader, newTopic } from './blocks.js';
import { type Segment, blockSalt, createSegment, mapSegment, slotPosition, unmapSegment } from './segments.js';

export class ShardStore {
  readonly segments: Segment[] = [];
  readonly topics = new Map<number, TopicLog>();
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
    };
    t.blocks.push(block);
    seg.blocks.push(block);
    t.cur = block;
    return { block, header: encodeBlockHeader({ topicId: t.id, seq, first: t.next, slots, salt }) };
  }

  /**
   * Makes a segment with room for `slots` current, from the spare if it is big enough.
   * `segments` stays in the order blocks are allocated (retention deletes only the oldest
   * segment and relies on its blocks starting their topics' chains; recovery makes the last
   * one current): a spare too small for a block is sealed empty, never taken after the
   * bigger segment created behind it. It is deleted when it becomes the oldest.
   */
  private rollSegment(slots: number): Segment {
    let seg = this.spare;
    if (seg && seg.slots >= slots) {
      this.spare = null;
    } else {
      if (this.spareError !== null) throw this.spareError;
      if (seg) {
        seg.sealedAt = Date.now();
        this.spare = null;
      }
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
