/**
 * Deletion of consumed segments. The oldest segment of a shard is deleted as soon as every
 * block in it is consumed: each data block's entries are all behind its topic's cursor and
 * the block is not the one the topic is still writing into. Meta blocks there are restated
 * first by a snapshot record written into the current meta block, unless all of them end
 * before the latest snapshot, which restates them already.
 *
 * Order of operations, so that a crash at any point leaves a log recovery understands:
 * 1. trim records (each touched topic's new first offset) and the snapshot, if any, are
 *    written and fdatasynced with everything else pending;
 * 2. the file is unlinked and the directory fsynced.
 * A crash between 1 and 2 leaves a file whose blocks all lie below their topics' starts;
 * recovery skips them and finishes the deletion.
 *
 * Only the oldest segment is ever deleted (a prefix), so a topic's remaining blocks always
 * continue its chain from its new start. The price: a segment holding one unconsumed block
 * keeps every later segment too, until that block is consumed, unless a retention bound
 * (options.retentionBytes / retentionMs) forces it out: then cursors behind it jump to the
 * first entry still stored, and that is written down like any cursor.
 */
import { META_TOPIC_ID } from '../shared/layout.js';
import { native } from '../shared/native.js';
import type { Block, TopicLog } from './blocks.js';
import { fsyncDir, segmentBytes, type Segment } from './segments.js';
import type { ShardStore } from './store.js';
import type { Writer } from './writer.js';

export class Retention {
  /** Set when a cursor moved or a segment filled up: the oldest segment may be deletable. */
  dirty = true;
  /** Segments deleted since open (stats). */
  deleted = 0;

  constructor(
    private readonly store: ShardStore,
    private readonly writer: Writer,
    private readonly debug: (msg: string) => void,
    private readonly limits: { bytes: number; ms: number },
  ) {}

  /** Deletes the oldest segment if it is fully consumed or out of bounds; returns whether it did. */
  run(now: number): boolean {
    if (!this.dirty && !(this.nextAgeDeadline() <= now)) return false;
    const seg = this.store.segments[0];
    const touched = seg ? this.deletableTopics(seg, this.overBound(seg, now)) : null;
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
   */
  private deletableTopics(seg: Segment, forced: boolean): Set<TopicLog> | null {
    const store = this.store;
    if (seg === store.current || seg === store.spare) return null;
    const touched = new Set<TopicLog>();
    for (const b of seg.blocks) {
      const t = store.topics.get(b.topicId);
      const where = t ? chainPlace(t, b, seg) : 'absent';
      if (!t || where === 'absent') continue;
      // A chain block behind a block of a later segment: deleting this file would cut the
      // chain in the middle (store.ts keeps blocks in segment order so that this never
      // happens; a log written before that rule may still hold such a file: it is kept).
      if (where === 'behind') return null;
      // A block still being written is consumed too once the cursor is at its end: the
      // topic's next entry then starts a new block (see delete()). The committed cursor, not
      // `delivered`: an entry a read returned and nobody committed yet may be delivered
      // again after a crash, so its block must stay.
      if (!forced && t.id !== META_TOPIC_ID && t.cursor < b.next) return null;
      touched.add(t);
    }
    return touched;
  }

  private delete(seg: Segment, touched: Set<TopicLog>): void {
    const store = this.store;
    const meta = store.meta;
    // A block being written in the doomed segment is abandoned: the topic's next record (for
    // the meta topic: the trims and snapshot below) opens a block in a live segment.
    for (const t of store.topics.values()) if (t.cur !== null && t.cur.segment === seg) t.cur = null;
    // Meta blocks that end at or before the latest snapshot record are restated by it already
    // (recovery drops them too): deleting only those needs no new snapshot. Without this rule
    // a snapshot bigger than half a segment never ended: each one sealed the segment of the
    // previous one, which was then deleted by writing the next, forever (thousands of
    // deletions a second on an idle log).
    const restate = touched.has(meta) && meta.blocks.some((b) => b.segment === seg && b.next > store.snapshotAt);
    for (const t of touched) {
      const rest = t.blocks.filter((b) => b.segment !== seg);
      t.blocks = rest;
      if (t.id === META_TOPIC_ID) continue;
      t.start = rest.length > 0 ? rest[0]!.first : t.complete;
      this.writer.appendMeta({ k: 'trim', id: t.id, start: t.start });
      if (t.cursor < t.start) {
        // Forced out by a retention bound before it was consumed.
        t.cursor = t.start;
        this.writer.appendCursor(t);
      }
      // Never read from a deleted entry (only a forced deletion can overtake `delivered`).
      if (t.delivered < t.start) t.delivered = t.start;
    }
    if (restate) {
      const all: [number, string, number, number][] = [];
      for (const t of store.topics.values()) if (t.id !== META_TOPIC_ID) all.push([t.id, t.name, t.start, t.cursor]);
      store.snapshotAt = meta.next;
      this.writer.appendMeta({ k: 'snapshot', t: all });
      for (const t of store.topics.values()) t.cursorWritten = t.cursor;
    }
    this.writer.submit(true);
    meta.start = meta.blocks[0]?.first ?? meta.next;
    // The mapping goes first: nothing may reach the file's pages after its last sync.
    const fd = store.files.release(seg);
    if (!store.memory) {
      native.unlink(seg.path);
      fsyncDir(store.dir);
    }
    // The unlinked file's blocks are freed by this last close: off the worker's loop.
    if (fd >= 0) native.closeInBackground(fd);
    store.segments.shift();
    this.deleted++;
    this.debug(`deleted consumed segment ${seg.path}`);
  }
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
