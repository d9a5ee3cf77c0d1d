/**
 * Deletion of consumed segments. The oldest segment of a shard is deleted as soon as every
 * block in it is consumed: each data block's entries are all behind its topic's cursor and
 * the block is not the one the topic is still writing into. Meta blocks there are restated
 * first by a snapshot record written into the current meta block, unless no topic's state is
 * last stated in them and they all end before the latest snapshot record.
 *
 * Order of operations, so that a crash at any point leaves a log recovery understands:
 * 1. a snapshot record (each touched topic's new first offset and cursor, and the state of
 *    every topic last stated in the segment's meta blocks), if one is needed, is written, and
 *    every file written since its last sync is fdatasynced on a detached thread;
 * 2. once those syncs succeeded, the file is unlinked, and closed and its directory fsynced
 *    on a detached thread (a failed sync fails the shard instead, as a failed fsync does).
 * A crash between 1 and 2, or before that directory fsync, leaves a file whose blocks all
 * lie below their topics' starts (its meta blocks restated by the snapshot); recovery skips
 * them and finishes the deletion. The syncs stay off the worker's loop because an fdatasync
 * of the file being written waits for its dirty data and a device cache flush: 18-70 ms per
 * 64 MiB segment on the development VM with NoFsync appends at 75 MB/s, during which no
 * append was written and no live tail delivered. Appends and reads go on meanwhile; the next
 * deletion waits for this one.
 * Without a snapshot the file holds only meta records that later ones supersede: recovery
 * replays it as any segment, and retention deletes it again.
 *
 * Only the oldest segment is ever deleted (a prefix), so a topic's remaining blocks always
 * continue its chain from its new start. The price: a segment holding one unconsumed block
 * keeps every later segment too, until that block is consumed, unless a retention bound
 * (options.retentionBytes / retentionMs) forces it out: then cursors behind it jump to the
 * first entry still stored, and that is written down like any cursor.
 */
import { BLOCK_HEADER_BYTES, META_TOPIC_ID, recordFootprint } from '../shared/format/layout.js';
import { native } from '../shared/native.js';
import { ioError } from '../shared/errors.js';
import type { LentSync } from './store/files.js';
import { type Block, type TopicLog } from './store/model.js';
import { defaultCounts, statedIn, updateFloor } from './store/blocks.js';
import { encodeMeta, encodeSnapshot } from '../shared/format/meta.js';
import { nextAllocationBoundary, segmentBytes, slotPosition } from '../shared/format/segment.js';
import { type Segment } from './store/model.js';
import type { ShardStore } from './store/store.js';
import type { Writer } from './write/writer.js';

/**
 * Fewest slots a retirement must free: segments of fewer slots roll over soon anyway, and
 * retiring one for every block or two would make a file per record or two in a queue that
 * consumes as it appends.
 */
const RETIRE_MIN_SLOTS = 8;

/** While a deletion waits for its background syncs, the worker looks at them this often (ms). */
const PENDING_POLL_MS = 1;

export class Retention {
  /** Set when a cursor moved or a segment filled up: the oldest segment may be deletable. */
  dirty = true;
  /** A deletion whose records are written, waiting for its syncs before its file goes. */
  private pending: { seg: Segment; syncs: LentSync[] } | null = null;

  constructor(
    private readonly store: ShardStore,
    private readonly writer: Writer,
    private readonly debug: (msg: string) => void,
    private readonly limits: { bytes: number; ms: number },
  ) {}

  /** Whether run() has something to look at now (the worker does not sleep while it has). */
  get wanted(): boolean {
    return this.pending === null && this.dirty;
  }

  /** When the worker must look again at the latest (ms; Infinity when nothing is due). */
  nextCheck(now: number): number {
    return this.pending !== null ? now + PENDING_POLL_MS : this.nextAgeDeadline();
  }

  /**
   * Deletes the oldest segment if it is fully consumed or out of bounds, in two steps (see the
   * top of this file): returns whether it did either.
   */
  run(now: number): boolean {
    if (this.pending !== null) return this.finishPending();
    if (!this.dirty && !(this.nextAgeDeadline() <= now)) return false;
    const seg = this.store.segments[0];
    let touched = seg ? this.deletableTopics(seg, this.overBound(seg, now)) : null;
    if (seg && !touched) {
      // Retiring the current segment changes no chain: the topics it touches stay the same.
      touched = this.retirable(seg);
      if (touched) this.store.retireCurrent();
    }
    if (!seg || !touched) {
      this.dirty = false;
      return false;
    }
    this.delete(seg, touched);
    return true;
  }

  /** When the oldest sealed segment passes retentionMs (Infinity when never). */
  nextAgeDeadline(): number {
    const seg = this.store.segments[0];
    if (!seg || seg === this.store.current || seg === this.store.spare) return Number.POSITIVE_INFINITY;
    if (seg.sealedAt === 0 || !Number.isFinite(this.limits.ms)) return Number.POSITIVE_INFINITY;
    return seg.sealedAt + this.limits.ms;
  }

  /**
   * The topics the deletion of `seg` touches (deletableTopics) if `seg`, the current segment
   * and the oldest, should make way for the next one so that it can be deleted, else null: every block in it is consumed, and the slots it uses, less those
   * the snapshot of its deletion may take in the next segment (every topic of the shard
   * restated, at most), are at least an eighth of its slots and at least RETIRE_MIN_SLOTS.
   * Without this, a log whose topics all fit in one segment (100,000 small topics in the
   * default 64 MiB) never gave back its disk when consumed. Meta blocks count, less the
   * snapshot: 100,000 topics consumed one read each leave as many bytes of topic
   * declarations and cursor records as of data, and the snapshot that replaces them is a
   * fraction of that. The eighth keeps a queue that appends and consumes a record at a time
   * from making and deleting a file per record, and subtracting the snapshot keeps an idle log
   * from churning: a retired segment's successor holds the snapshot and is not retired again
   * until new records fill an eighth of it besides.
   */
  private retirable(seg: Segment): Set<TopicLog> | null {
    if (seg !== this.store.current) return null;
    const snapshotSlots = Math.ceil((BLOCK_HEADER_BYTES + recordFootprint(this.store.restateBytes)) / seg.blockBytes);
    // What a retirement gives back is the larger of the slots used and the file's allocation
    // (which runs ahead of the slots in growing steps: 100,000 small topics used 8 of 64
    // slots of 1 MiB per shard, in files of 31 MiB), less what the successor holding the
    // snapshot uses and allocates. An idle successor holds only the snapshot, so it frees
    // nothing by either measure and is not retired again: no churn. (A memory segment is
    // sized whole from the start and holds only the pages written: its slots are the measure.)
    const full = segmentBytes(seg.slots, seg.blockBytes);
    const successor = nextAllocationBoundary(slotPosition(snapshotSlots, seg.blockBytes), full);
    const allocationFrees = this.store.memory ? 0 : Math.floor((seg.allocated - successor) / seg.blockBytes);
    const frees = Math.max(seg.nextSlot - snapshotSlots, allocationFrees);
    if (frees < RETIRE_MIN_SLOTS || frees * 8 < seg.slots) return null;
    return this.deletableTopics(seg, false, true);
  }

  private overBound(seg: Segment, now: number): boolean {
    if (seg.sealedAt > 0 && now >= seg.sealedAt + this.limits.ms) return true;
    if (!Number.isFinite(this.limits.bytes)) return false;
    let total = 0;
    for (const s of this.store.segments) total += segmentBytes(s.slots, s.blockBytes);
    if (this.store.spare) total -= segmentBytes(this.store.spare.slots, this.store.spare.blockBytes);
    return total > this.limits.bytes;
  }

  /**
   * The topics whose chains have blocks in `seg`, if every such block is consumed (the meta
   * topic's count as consumed: a snapshot restates them) or `forced`; null if `seg` must stay.
   * `evenCurrent`: answer for the current segment too (retirable()).
   */
  private deletableTopics(seg: Segment, forced: boolean, evenCurrent = false): Set<TopicLog> | null {
    const store = this.store;
    if ((seg === store.current && !evenCurrent) || seg === store.spare) return null;
    const touched = new Set<TopicLog>();
    const shared: Block[] = [];
    for (const b of seg.blocks) {
      if (b.members !== null) {
        // A shared block is consumed when every record in it is behind its topic's cursor.
        const place = chainPlace(store.shared, b, seg);
        if (place === 'absent') continue;
        if (place === 'behind') return null;
        if (!forced && b.unconsumed > 0) return null;
        shared.push(b);
        continue;
      }
      const t = store.topics.get(b.topicId);
      const where = t ? chainPlace(t, b, seg) : 'absent';
      if (!t || where === 'absent') continue;
      // A chain block behind a block of a later segment: deleting this file would cut the
      // chain in the middle (store.ts keeps blocks in segment order so that this never
      // happens; a log written before that rule may still hold such a file: it is kept).
      if (where === 'behind') return null;
      // A block still being written is consumed too once the floor is at its end: the
      // topic's next entry then starts a new block (see delete()). The floor is the lowest
      // committed position of the topic's consumers (blocks.ts floorOf), not `delivered`:
      // an entry a read returned and nobody committed yet may be delivered again after a
      // crash, so its block must stay.
      if (!forced && t.id !== META_TOPIC_ID && t.floor < b.next) return null;
      touched.add(t);
    }
    for (const b of shared) for (const t of b.members!) touched.add(t);
    return touched;
  }

  private delete(seg: Segment, touched: Set<TopicLog>): void {
    const store = this.store;
    const meta = store.meta;
    // A block being written in the doomed segment is abandoned: the topic's next record (for
    // the meta topic: the trims and snapshot below) opens a block in a live segment.
    for (const t of store.topics.values()) if (t.cur !== null && t.cur.segment === seg) t.cur = null;
    const shared = store.shared;
    if (shared.cur !== null && shared.cur.segment === seg) shared.cur = null;
    shared.blocks = shared.blocks.filter((b) => b.segment !== seg);
    // No snapshot when it would restate nothing and the segment's meta blocks all end at or
    // before the latest snapshot record (which then lies in a later segment: the meta chain
    // that remains still holds a snapshot, as recovery requires once its first blocks are
    // gone). Writing one anyway made an idle log churn: a record that needs a new meta block
    // in a new segment seals the previous one, whose deletion restates every topic stated
    // there, whose snapshot seals the next, forever (thousands of deletions a second).
    const metaTouched = touched.has(meta);
    const metaLeft = metaTouched && meta.blocks.some((b) => b.segment === seg && b.next > store.snapshotAt);
    for (const t of touched) {
      const rest = withoutSegment(t.blocks, seg);
      t.blocks = rest;
      if (t.id === META_TOPIC_ID) continue;
      // Shared records go in write order, so those in the oldest segment come first.
      let gone = 0;
      while (gone < t.small.length && t.small[gone]!.block.segment === seg) t.smallBytes -= t.small[gone++]!.fp;
      if (gone === t.small.length) t.small.length = 0;
      else if (gone > 0) t.small.splice(0, gone);
      t.start = t.small.length > 0 ? t.small[0]!.offset : rest.length > 0 ? rest[0]!.first : t.complete;
      this.skipForward(t);
    }
    // One snapshot record restates every topic the deletion moves forward, and, when the
    // segment holds meta blocks, every topic whose last statement of name, start or cursor
    // is in one of them: after the deletion, recovery finds every topic's state in the meta
    // blocks still present, and the segment's meta blocks are obsolete (snapshot `s`).
    // `touched` becomes that set (a set of up to every topic of the shard made once, not twice).
    const restate = touched;
    restate.delete(meta);
    if (metaTouched) for (const t of store.topics.values()) if (t.id !== META_TOPIC_ID && statedIn(t, seg.seq)) restate.add(t);
    if (restate.size > 0 || metaLeft) this.writeSnapshot(seg, restate);
    this.writer.submit(false);
    meta.start = meta.blocks[0]?.first ?? meta.next;
    this.pending = { seg, syncs: store.memory ? [] : this.writer.syncInBackground() };
    this.finishPending();
  }

  /**
   * Step 2 of the pending deletion once its syncs have finished: true when the file is gone.
   * A sync that failed fails the shard with its error (ERR_WALRUS_IO), as a failed fsync on
   * the worker does; one that never ran (no thread could be made) is made here instead.
   */
  private finishPending(): boolean {
    const p = this.pending!;
    for (const s of p.syncs) if (s.result(false) < 0) return false;
    let retry = false;
    for (const s of p.syncs) {
      if (s.result(false) === 0) continue;
      const failure = s.failure();
      if (failure !== null) throw ioError(failure, `making the records of the deletion of ${p.seg.path} durable failed`);
      retry = true;
    }
    if (retry) this.writer.submit(true);
    this.unlinkPending();
    return true;
  }

  /**
   * The worker is closing and has just fsynced everything: the pending deletion, if any, is
   * covered, and its file goes now rather than at the next open's recovery.
   */
  finishAfterSync(): void {
    if (this.pending !== null) this.unlinkPending();
  }

  private unlinkPending(): void {
    const store = this.store;
    const seg = this.pending!.seg;
    this.pending = null;
    this.writer.forget(seg);
    // The mapping goes first: nothing may reach the file's pages after its last sync.
    const fd = store.files.release(seg);
    if (!store.memory) native.unlink(seg.path);
    // The unlinked file's blocks are freed by this last close: off the worker's loop, and
    // the directory's fsync after it (see the top of this file). A file whose descriptor the
    // cache had closed gets no fsync of its own: the next one of the directory covers it.
    if (fd >= 0) native.closeInBackground(fd, store.memory ? undefined : store.dir);
    store.segments.shift(); // only the oldest segment is ever deleted
    this.debug(`deleted consumed segment ${seg.path}`);
  }

  /**
   * After a deletion moved `t.start`: a consumer whose committed position was behind it (a
   * retention bound forced the entries out before it consumed them) jumps forward to it, and
   * a named consumer counts the entries it lost (`skipped`, in wal.consumers()). No read
   * starts at a deleted entry (only a forced deletion can overtake `delivered`). A default
   * consumer that does not count for the topic (it never read it: blocks.ts defaultCounts)
   * stays where it is; its first read starts at the first stored entry.
   */
  private skipForward(t: TopicLog): void {
    if (defaultCounts(t)) {
      if (t.cursor < t.start) t.cursor = t.start;
      if (t.delivered < t.start) t.delivered = t.start;
    }
    if (t.positions !== null) {
      for (const [id, p] of t.positions) {
        if (p.cursor < t.start) {
          const c = this.store.consumers.get(id)!;
          c.skipped.set(t.id, (c.skipped.get(t.id) ?? 0) + (t.start - p.cursor));
          this.debug(`consumer ${JSON.stringify(c.name)} skipped ${t.start - p.cursor} entries of topic id ${t.id}: deleted by a retention bound before it read them`);
          p.cursor = t.start;
        }
        if (p.delivered < t.start) p.delivered = t.start;
      }
    }
    updateFloor(t);
  }

  /**
   * Writes the snapshot of a deletion of `seg`: the topics of `restate`, with `s` = seg.seq.
   * A snapshot that does not fit in the current segment opens a new one and seals the current
   * segment, whose deletion would then restate the topics last stated there, whose snapshot
   * could seal the next segment in turn: two groups of topics, each restated by the deletion
   * of the other's segment, made an idle log delete and create segments forever. Such a
   * snapshot therefore restates every topic (and says so by omitting `s`: every meta block
   * before it is obsolete), and the deletions of the segments it sealed write nothing.
   */
  private writeSnapshot(seg: Segment, restate: Set<TopicLog>): void {
    const store = this.store;
    let payload = encodeSnapshot(restate, seg.seq);
    let stated: Iterable<TopicLog> = restate;
    // Every snapshot is followed by a record restating every named consumer (docs/FORMAT.md), so
    // the meta blocks a snapshot makes obsolete never hold the last word on one; the two
    // must fit together for the no-churn rule below.
    const consumers = this.writer.consumersRecord();
    const consumersBytes = store.consumers.size > 0 ? recordFootprint(encodeMeta(consumers).length) : 0;
    if (store.metaRecordRolls(recordFootprint(payload.length) + consumersBytes)) {
      const all: TopicLog[] = [];
      for (const t of store.topics.values()) if (t.id !== META_TOPIC_ID) all.push(t);
      payload = encodeSnapshot(all);
      stated = all;
    }
    store.snapshotAt = store.meta.next;
    const at = this.writer.appendMeta(payload);
    for (const t of stated) {
      t.cursorWritten = t.cursor;
      t.nameSeq = t.startSeq = t.cursorSeq = at;
    }
    this.writer.restateConsumers(consumers);
  }
}

/**
 * `blocks` without those of `seg`: the same array when it has none (most topics a deletion
 * touches hold only shared records), so that a deletion restating 50,000 topics does not
 * replace 50,000 empty arrays.
 */
function withoutSegment(blocks: Block[], seg: Segment): Block[] {
  for (let k = 0; k < blocks.length; k++) if (blocks[k]!.segment === seg) return blocks.filter((b) => b.segment !== seg);
  return blocks;
}

/**
 * Where `b` (a block of the oldest segment `seg`) is in the chain of `t`: 'head' when only
 * blocks of `seg` come before it, 'behind' when a block of another segment does, 'absent'
 * when it is not in the chain (torn or dropped at recovery).
 */
function chainPlace(t: TopicLog, b: Block, seg: Segment): 'head' | 'behind' | 'absent' {
  let head = true;
  for (const x of t.blocks) {
    if (x === b) return head ? 'head' : 'behind';
    if (x.segment !== seg) head = false;
  }
  return 'absent';
}
