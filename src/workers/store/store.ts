/**
 * A shard's files and topics as its worker holds them: segments, the topic chains and block
 * allocation. Recovery builds it; the writer appends to it; the reader looks things up in it.
 */
import { BLOCK_HEADER_BYTES, META_TOPIC_ID, SHARED_TOPIC_ID } from '../../shared/format/layout.js';
import { ioError } from '../../shared/errors.js';
import { type IoContext, native } from '../../shared/native.js';
import { type Block, type NamedConsumer, type TopicLog } from './model.js';
import { encodeBlockHeader } from '../../shared/format/block.js';
import { TopicColumns, newTopic } from './topic.js';
import { type LentSync, MAX_OPEN_SEGMENTS, SegmentFiles } from './files.js';
import { type Segment } from './model.js';
import { allocate, createSegment, makeDurable } from './segments.js';
import { allocationBoundary, blockSalt, nextAllocationBoundary, segmentBytes, slotPosition } from '../../shared/format/segment.js';

/** Bounds of ShardStore.sharedLimit. */
const MIN_SHARED_LIMIT = 1024;
const MAX_SHARED_LIMIT = 64 * 1024;

/**
 * Most bytes a snapshot entry takes besides its name: msgpack array header (1), topic id
 * (up to 5), bin header (up to 5), start and cursor (up to 9 each).
 */
const SNAPSHOT_ENTRY_OVERHEAD = 29;

export class ShardStore {
  readonly segments: Segment[] = [];
  readonly topics = new Map<number, TopicLog>();
  /** The numbers of every topic of the shard (topic.ts): made before the first topic. */
  private readonly columns = new TopicColumns();
  /**
   * The chain of shared blocks: records of many small topics, in write order. Its `next`
   * counts the records of the chain (block headers carry that count as `first`); it is not
   * in `topics`.
   */
  readonly shared: TopicLog = newTopic(SHARED_TOPIC_ID, '', this.columns);
  /**
   * Bytes of records a topic keeps in shared blocks before it gets blocks of its own: a
   * sixteenth of a slot (1 KiB to 64 KiB), so a topic that outgrows sharing wastes at most
   * 16x what it holds on its first own block, and a small topic costs only its bytes.
   */
  readonly sharedLimit: number;
  /** The segment blocks are allocated from (the last one), if any. */
  current: Segment | null = null;
  /** A created, empty segment ready to become current (made durable when it does). */
  spare: Segment | null = null;
  /** The background sync of the spare's file and directory entry, until the spare is used. */
  private spareSync: LentSync | null = null;
  /** Allocation syncs of segments no longer current, whose descriptors are still lent out. */
  private readonly orphanSyncs: LentSync[] = [];
  /**
   * Meta-topic offset of the latest snapshot record, full or partial (-1: none). Retention
   * deletes a segment whose meta blocks all end at or before it, and state nothing any topic
   * still depends on, without writing another: the remaining chain still holds a snapshot.
   */
  snapshotAt = -1;
  lastBlockSeq = 0;
  lastSegmentSeq = 0;
  maxTopicId = 0;
  /** Named consumers with a position in this shard, by id (ids are never reused) and by name. */
  readonly consumers = new Map<number, NamedConsumer>();
  readonly consumerByName = new Map<string, NamedConsumer>();
  maxConsumerId = 0;
  /** The open descriptors: at most MAX_OPEN_SEGMENTS (disk backends), see files.ts. */
  readonly files: SegmentFiles;
  /** Extending a segment ahead of need failed (idle work is not retried; ensureRoom reports it). */
  private aheadFailed: Segment | null = null;
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
    /**
     * New segment files are sized whole at creation (see createSegment): the fd backend.
     * The mmap backend keeps growing them in durable steps (a write through a mapping into
     * a hole the disk cannot fill is a SIGBUS, so a reopened file must have all its size
     * allocated).
     */
    private readonly sizeWhole = false,
  ) {
    this.topics.set(META_TOPIC_ID, newTopic(META_TOPIC_ID, '', this.columns));
    this.files = new SegmentFiles(memory ? Number.POSITIVE_INFINITY : MAX_OPEN_SEGMENTS);
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

  /** The segment's descriptor (opened if the bound had it closed). */
  fd(seg: Segment): number {
    return this.files.fd(seg);
  }


  /**
   * Upper bound of the payload of a snapshot record that restates every topic of the shard:
   * each topic's name bytes plus SNAPSHOT_ENTRY_OVERHEAD (retention weighs what a deletion
   * writes against what it frees).
   */
  restateBytes = 16;

  /** Declares (or finds) named consumer `id` as `name` (recovery, or a first use). */
  addConsumer(id: number, name: string): NamedConsumer {
    let c = this.consumers.get(id);
    if (!c) {
      c = { id, name, topics: new Map(), skipped: new Map() };
      this.consumers.set(id, c);
    } else if (c.name !== name) {
      this.consumerByName.delete(c.name);
      c.name = name;
    }
    this.consumerByName.set(name, c);
    if (id > this.maxConsumerId) this.maxConsumerId = id;
    return c;
  }

  /** Forgets named consumer `c` and its positions (a dropConsumer record, or a consumers record that omits it). */
  removeConsumer(c: NamedConsumer): void {
    for (const t of c.topics.keys()) {
      t.positions?.delete(c.id);
      if (t.positions?.size === 0) t.positions = null;
    }
    this.consumers.delete(c.id);
    if (this.consumerByName.get(c.name) === c) this.consumerByName.delete(c.name);
  }

  /**
   * Sets the position of named consumer `c` in topic `t` as a record states it (recovery).
   * Until cursors are settled (recovery/cursors.ts) `cursorWritten` holds the stated value.
   */
  statePosition(c: NamedConsumer, t: TopicLog, next: number): void {
    let p = c.topics.get(t);
    if (!p) {
      p = { cursor: next, delivered: next, cursorWritten: next };
      c.topics.set(t, p);
      (t.positions ??= new Map()).set(c.id, p);
    }
    p.cursorWritten = next;
  }

  get meta(): TopicLog {
    return this.topics.get(META_TOPIC_ID)!;
  }

  /** Registers a topic id (from a TopicDef record or from recovery). */
  addTopic(id: number, name: string): TopicLog {
    let t = this.topics.get(id);
    if (!t) {
      t = newTopic(id, name, this.columns);
      this.topics.set(id, t);
      this.restateBytes += Buffer.byteLength(name, 'utf8') + SNAPSHOT_ENTRY_OVERHEAD;
    }
    if (id > this.maxTopicId) this.maxTopicId = id;
    return t;
  }

  /**
   * Whether a meta record of `footprint` bytes opens a new segment (sealing the current one):
   * it fits neither in the meta topic's current block nor in a new block of the current
   * segment. Mirrors allocateBlock and place() (write/batch.ts).
   */
  metaRecordRolls(footprint: number): boolean {
    const b = this.meta.cur;
    if (b !== null && b.used + footprint <= b.capacity) return false;
    const slots = Math.max(1, Math.ceil((BLOCK_HEADER_BYTES + footprint) / this.blockBytes));
    const seg = this.current;
    return !seg || seg.nextSlot + slots > seg.slots;
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
    this.ensureRoom(seg, slotPosition(slot + slots, this.blockBytes));
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

  /**
   * Makes the next segment current although the current one still has room: retention
   * retires a current segment whose data is all consumed, so that its file can be deleted
   * (retention.ts). Blocks stay in segment order: the next one is newer.
   */
  retireCurrent(): void {
    this.rollSegment(1);
  }

  /**
   * Makes a segment with room for `slots` current, from the spare if it is big enough.
   *
   * Invariant: blocks are allocated in segment order (a block's segment is never older than
   * the segment of any block allocated before it), so every topic's chain, the meta topic's
   * included, runs through the segments in file order and deleting the oldest segment only
   * ever removes the head of chains. A spare too small for the block is therefore retired,
   * never used later: it stays, empty and sealed, until retention deletes it as the oldest
   * segment. Using it after the bigger segment created here (as this code once did) put newer
   * blocks in an older file; retention then deleted that file while an older block of the
   * meta chain survived in the newer one, cutting the meta chain (issue 11, item 1).
   */
  private rollSegment(slots: number): Segment {
    let seg = this.spare;
    if (seg && seg.slots >= slots) {
      this.spare = null;
      this.settleSpare(seg);
    } else {
      if (this.spareError !== null) throw this.spareError;
      if (seg) {
        // It stays between segments now, where a creation cut short would be corruption.
        this.settleSpare(seg);
        seg.sealedAt = Date.now();
        this.spare = null;
      }
      seg = this.createSegment(Math.max(slots, this.segmentSlots));
    }
    if (this.current) {
      this.current.sealedAt = Date.now();
      // No block goes into it any more: its allocation sync only has to finish.
      if (this.current.aheadSync !== null) this.orphanSyncs.push(this.current.aheadSync);
      this.current.aheadSync = null;
    }
    this.current = seg;
    return seg;
  }

  private createSegment(slots: number, durable = true): Segment {
    this.files.reserve();
    const seg = createSegment(this.dir, this.shard, ++this.lastSegmentSeq, slots, this.blockBytes, this.memory, this.sizeWhole, durable);
    this.segments.push(seg);
    this.files.adopt(seg);
    return seg;
  }

  /**
   * Makes sure bytes below `end` of `seg` are allocated durably before a block is placed
   * there: recovery requires a file to reach the allocation boundary past its last block
   * (docs/FORMAT.md, "Segment file"), so no crash may leave a block header on disk beyond a
   * size that was not durable. Usually the step was allocated ahead (allocateAhead) and its
   * background fdatasync, or a group commit's, has made it durable; otherwise this waits for
   * that sync, or allocates and fdatasyncs now.
   */
  private ensureRoom(seg: Segment, end: number): void {
    if (end > seg.durableAllocated && seg.aheadEnd >= end) this.settleAhead(seg, true);
    if (end > seg.durableAllocated || end > seg.allocated) {
      const fd = this.files.fd(seg);
      try {
        if (end > seg.allocated) {
          const to = allocationBoundary(end, segmentBytes(seg.slots, seg.blockBytes));
          allocate(fd, seg.allocated, to);
          seg.allocated = to;
        }
        // A file sized whole at creation (createSegment) has every boundary durable already:
        // its space is allocated, but no size changes, so nothing needs an fdatasync.
        if (end > seg.durableAllocated) {
          native.fdatasync(fd);
          seg.durableAllocated = seg.allocated;
        }
      } catch (err) {
        throw ioError(err, `allocating space in segment ${seg.path} failed`, seg.path);
      }
    }
    this.allocateAhead(seg, end);
  }

  /**
   * Once blocks reach into the last allocated step of `seg`, allocates the next one and starts
   * a background fdatasync that makes it durable, so that the block that needs it finds it
   * ready: writes go into preallocated space, and the worker never waits for the writeback
   * that a synchronous fdatasync of a busy file would cost (NoFsync appends measured 15-20%
   * slower with it). A failure here is not reported (a full disk still serves the appends that
   * fit): ensureRoom tries again when a block needs the space, and reports it.
   */
  private allocateAhead(seg: Segment, end: number): void {
    if (this.memory || seg === this.aheadFailed || !this.settleAhead(seg, false)) return;
    const full = segmentBytes(seg.slots, seg.blockBytes);
    if (seg.allocated >= full || allocationBoundary(end, full) < seg.allocated) return;
    const next = nextAllocationBoundary(end, full);
    try {
      allocate(this.files.fd(seg), seg.allocated, next);
    } catch {
      this.aheadFailed = seg;
      return;
    }
    seg.allocated = next;
    if (seg.durableAllocated >= next) return;
    seg.aheadEnd = next;
    seg.aheadSync = this.files.syncInBackground(seg.path);
  }

  /**
   * Takes the result of `seg`'s background allocation sync if it has finished (or, with
   * `wait`, once it has); returns whether none is running any more. A failed one only means
   * its step is not known durable: ensureRoom's own fdatasync then reports any writeback
   * error with its errno (the background sync used an open file description of its own, so it
   * consumed no error of the worker's).
   */
  private settleAhead(seg: Segment, wait: boolean): boolean {
    if (seg.aheadSync === null) return true;
    const err = seg.aheadSync.result(wait);
    if (err < 0) return false;
    seg.aheadSync = null;
    if (err === 0) seg.durableAllocated = Math.max(seg.durableAllocated, seg.aheadEnd);
    return true;
  }

  /** Idle work: notes a finished background sync of the current segment's step or of the spare. */
  prepareAhead(): boolean {
    if (this.current !== null) this.settleAhead(this.current, false);
    // Taken as soon as they end, so that their descriptors count no longer than they exist.
    this.spareSync?.result(false);
    for (let k = this.orphanSyncs.length - 1; k >= 0; k--) if (this.orphanSyncs[k]!.result(false) >= 0) this.orphanSyncs.splice(k, 1);
    return false;
  }

  /**
   * mmap backend: registers every open segment with `io` (and every segment opened from now
   * on), whose writes then go through mapped windows. Recovery reads and repairs with
   * pread/pwritev and fdatasyncs before this, so the mappings start from durable files.
   */
  useMappings(io: IoContext): void {
    this.files.useMapper(io);
  }

  /**
   * Creates the next segment ahead of need once the current one is half used, so rotation
   * does not stall a drain on file creation and two fsyncs. Its fdatasync runs on a detached
   * thread: under ext4's ordered mode, syncing even a new, empty file commits the journal,
   * which first writes out the data of every file with blocks allocated in that transaction,
   * the segment being written included; on the worker's loop that stalled every append and
   * every live tail 17-45 ms per segment (once 375 ms) at 75 MB/s of NoFsync appends.
   */
  prepareSpare(): boolean {
    const cur = this.current;
    if (this.spare || this.spareError !== null || (cur && cur.nextSlot * 2 < cur.slots)) return false;
    try {
      const durable = this.memory;
      this.spare = this.createSegment(this.segmentSlots, durable);
      if (!durable) this.spareSync = this.files.syncInBackground(this.spare.path, this.dir);
    } catch (err) {
      this.spareError = err;
    }
    return true;
  }

  /**
   * The spare is about to take blocks (or to stay between segments): it must be durable. Its
   * background sync has usually finished long before; if it is still running this waits for
   * it. Its failure is the creation's (ERR_WALRUS_IO with its errno and call); only a sync
   * that never ran (no thread) is made here. (A foreground sync even of a file with nothing
   * left to write costs a device cache flush, 17-20 ms on this development VM while another
   * file's writeback runs.)
   */
  private settleSpare(seg: Segment): void {
    const sync = this.spareSync;
    if (sync === null) return;
    this.spareSync = null;
    if (sync.result(true) === 0) return;
    const failure = sync.failure();
    if (failure !== null) throw ioError(failure, `creating segment ${seg.path} failed`, seg.path);
    makeDurable(this.dir, seg);
  }

  /** Unmaps and closes every segment; throws the first failure after trying them all. */
  closeFiles(): void {
    this.files.closeAll();
  }
}
