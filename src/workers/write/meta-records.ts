/**
 * The meta topic's policy: which meta records go into the write batch (batch.ts), and when.
 * Topics first seen in a collect are declared in the same batch, in a meta block allocated
 * before any block of theirs (reserve, declare); sync marks record the topics' durable ends,
 * at most every SYNC_MARK_INTERVAL_MS and at close; cursor records, the clean-shutdown record
 * and retention's records (appendMeta) complete the set. The records' encoding is
 * src/shared/format/meta.ts; recovery reads them back (src/workers/recovery/meta-fold.ts).
 */
import { META_TOPIC_ID, RECORD_HEADER_BYTES, RecordKind } from '../../shared/format/layout.js';
import { frameWords } from '../../shared/format/frame.js';
import { encodeMeta, type MetaRecord } from '../../shared/format/meta.js';
import type { NamedConsumer, TopicLog } from '../store/model.js';
import type { ShardStore } from '../store/store.js';
import type { Batch, CollectMeta } from './batch.js';

/**
 * Sync marks are written at most this often (and at close). A mark costs a second write
 * region in the fsync that follows it; marking every fsync halved the fsync rate of
 * appendAndSync. Data fsynced less than this long before a crash is then recovered under
 * torn-tail rules rather than reported as corrupt if damaged, which the contract allows
 * ("corrupt records before a *recorded* sync point").
 */
export const SYNC_MARK_INTERVAL_MS = 250;
/** Room reserve() keeps in the meta topic's block for the declarations of a collect. */
const META_RESERVE = 1024;

export class MetaRecords implements CollectMeta {
  /** Topic durable ends to record in the next sync mark. */
  private readonly pendingMarks = new Map<TopicLog, number>();
  /**
   * Cursor records queued by reads, commits and seeks, written by the next submit
   * (flushQueued): the default consumer's as one `cursor`/`cursors` record, each named
   * consumer's as one `positions` record. Many checkpointing reads answered in one round
   * then cost one record, not one each.
   */
  private readonly queuedCursors = new Set<TopicLog>();
  private readonly queuedPositions = new Map<NamedConsumer, Set<TopicLog>>();
  private lastMarkAt = 0;

  constructor(
    private readonly store: ShardStore,
    private readonly batch: Batch,
  ) {}

  markIfDue(): void {
    if (this.pendingMarks.size > 0 && Date.now() - this.lastMarkAt >= SYNC_MARK_INTERVAL_MS) this.appendSyncMark();
  }

  /**
   * Makes sure the meta topic's current block has room for a declaration before any record
   * of the new topics is placed, so the declarations (written at the end of the collect) lie
   * in a block allocated before the blocks those records open: a crash that keeps only a
   * prefix of the file then keeps a topic's declaration whenever it keeps any of its records.
   */
  reserve(): void {
    const meta = this.store.meta;
    const b = meta.cur;
    if (b !== null && b.capacity - b.used >= META_RESERVE) return;
    this.batch.openBlock(meta, META_RESERVE);
  }

  /** Writes the declarations of `topics`: one record for all of them (a drain can define thousands). */
  declare(topics: TopicLog[]): void {
    const at =
      topics.length === 1
        ? this.appendMeta({ k: 'topic', id: topics[0]!.id, name: topics[0]!.name })
        : this.appendMeta({ k: 'topics', t: topics.map((t) => [t.id, t.name]) });
    for (const t of topics) t.nameSeq = at;
  }

  /**
   * Queues a meta record, or its encoding when the caller made it already; returns
   * the sequence number of the segment it goes into.
   */
  appendMeta(m: MetaRecord | Uint8Array): number {
    const payload = m instanceof Uint8Array ? m : encodeMeta(m);
    const meta = this.store.meta;
    const batch = this.batch;
    const header = new Uint8Array(RECORD_HEADER_BYTES);
    batch.placeFrame(meta, RecordKind.Meta, meta.next, 1, header, frameWords(header), batch.addExt(header), 0, payload, batch.addExt(payload), 0);
    return meta.cur!.segment.seq;
  }

  /** An fsync made `topics` durable up to their last complete batch: the next sync mark records it. */
  noteDurable(topics: ReadonlySet<TopicLog>): void {
    for (const t of topics) {
      t.durable = t.complete;
      if (t.durable !== t.marked) this.pendingMarks.set(t, t.durable);
    }
  }

  private appendSyncMark(): void {
    this.lastMarkAt = Date.now();
    const t: [number, number][] = [];
    for (const [topic, next] of this.pendingMarks) {
      t.push([topic.id, next]);
      topic.marked = next;
    }
    this.pendingMarks.clear();
    this.appendMeta({ k: 'sync', t });
  }

  /**
   * Recovery fsyncs everything it recovered; the first drain records that in a sync mark so
   * that later damage to it is reported as corruption, not taken for a torn tail. Returns
   * whether a cursor had to be recorded.
   */
  noteRecovered(): boolean {
    let clamped = false;
    for (const t of this.store.topics.values()) {
      t.durable = t.complete;
      if (t.durable !== t.marked) this.pendingMarks.set(t, t.durable);
      if (t.cursor !== t.cursorWritten) {
        // Recovery pulled the cursor back to the data it found: record that now, or a later
        // recovery would apply the stale cursor to entries appended after this one.
        this.appendCursor(t);
        clamped = true;
      }
    }
    for (const c of this.store.consumers.values()) {
      for (const [t, p] of c.topics) {
        if (p.cursor !== p.cursorWritten) {
          this.appendPosition(c, t);
          clamped = true;
        }
      }
    }
    return clamped;
  }

  /** Queues a cursor record for `t` (written by the next submit). */
  appendCursor(t: TopicLog): void {
    this.queuedCursors.add(t);
  }

  /** Queues the record of named consumer `c`'s position in `t` (written by the next submit). */
  appendPosition(c: NamedConsumer, t: TopicLog): void {
    let topics = this.queuedPositions.get(c);
    if (!topics) this.queuedPositions.set(c, (topics = new Set()));
    topics.add(t);
  }

  /** Whether cursor records wait for the next submit. */
  hasQueued(): boolean {
    return this.queuedCursors.size > 0 || this.queuedPositions.size > 0;
  }

  /** Places the queued cursor records (submit calls it before writing). */
  flushQueued(): void {
    const cursors = this.queuedCursors;
    if (cursors.size > 0) {
      const ts = [...cursors];
      cursors.clear();
      const at = ts.length === 1 ? this.appendMeta({ k: 'cursor', id: ts[0]!.id, next: ts[0]!.cursor }) : this.appendMeta({ k: 'cursors', t: ts.map((t) => [t.id, t.cursor]) });
      for (const t of ts) {
        t.cursorWritten = t.cursor;
        t.cursorSeq = at;
      }
    }
    for (const [c, topics] of this.queuedPositions) {
      const t: [number, number][] = [];
      for (const topic of topics) {
        const p = c.topics.get(topic);
        if (!p) continue; // dropped since
        t.push([topic.id, p.cursor]);
        p.cursorWritten = p.cursor;
      }
      if (t.length > 0) this.appendMeta({ k: 'positions', c: c.id, t });
    }
    this.queuedPositions.clear();
  }

  /** Declares named consumer `c` (its positions' records follow, at the next submit). */
  declareConsumer(c: NamedConsumer): void {
    this.appendMeta({ k: 'consumer', c: c.id, name: c.name });
  }

  /** Records the deletion of named consumer `c` (its queued positions are dropped). */
  dropConsumer(c: NamedConsumer): void {
    this.queuedPositions.delete(c);
    this.appendMeta({ k: 'dropConsumer', c: c.id });
  }

  /** Every named consumer and its positions, as one `consumers` record states them. */
  consumersRecord(): MetaRecord {
    const c: [number, string, [number, number][]][] = [];
    for (const x of this.store.consumers.values()) {
      const t: [number, number][] = [];
      for (const [topic, p] of x.topics) t.push([topic.id, p.cursor]);
      c.push([x.id, x.name, t]);
    }
    return { k: 'consumers', c };
  }

  /** After a snapshot: restates every named consumer (their earlier records may be in blocks it makes obsolete). */
  restateConsumers(record: MetaRecord = this.consumersRecord()): void {
    if (this.store.consumers.size === 0) return;
    this.queuedPositions.clear();
    this.appendMeta(record);
    for (const x of this.store.consumers.values()) for (const p of x.topics.values()) p.cursorWritten = p.cursor;
  }

  /** Appends the clean-shutdown record listing every topic's end (written by the next submit). */
  appendCloseMark(): void {
    // Every committed position that moved since it was last written, named ones included.
    for (const c of this.store.consumers.values()) for (const [t, p] of c.topics) if (p.cursor !== p.cursorWritten) this.appendPosition(c, t);
    this.flushQueued();
    // Every cursor that moved since it was last written, in one record.
    const moved: TopicLog[] = [];
    for (const topic of this.store.topics.values()) if (topic.cursor !== topic.cursorWritten) moved.push(topic);
    if (moved.length === 1) {
      this.appendCursor(moved[0]!);
      this.flushQueued();
    } else if (moved.length > 1) {
      const at = this.appendMeta({ k: 'cursors', t: moved.map((t) => [t.id, t.cursor]) });
      for (const t of moved) {
        t.cursorWritten = t.cursor;
        t.cursorSeq = at;
      }
    }
    if (this.pendingMarks.size > 0) this.appendSyncMark();
    const t: [number, number][] = [];
    for (const topic of this.store.topics.values()) if (topic.id !== META_TOPIC_ID) t.push([topic.id, topic.complete]);
    t.push([META_TOPIC_ID, this.store.meta.next]);
    this.appendMeta({ k: 'close', t });
  }
}
