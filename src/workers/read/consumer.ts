/**
 * Checkpointing reads: every topic has one read cursor, kept in the shard's meta topic so it
 * rides the same writes and the same group commit as the data (a durable cursor implies the
 * data before it is durable).
 *
 * Each topic has two positions (workers/store/model.ts): `delivered`, where the next read starts,
 * and `cursor`, the committed position (everything before it is consumed). Cursor records
 * only ever persist `cursor`.
 *
 * StrictlyAtOnce: a checkpointing read commits what it returns at once (cursor = delivered),
 * writes a cursor record and is answered only after the fsync that covers it; every read
 * waiting at that moment shares that fsync. The read in flight at a crash is therefore
 * at-most-once: its entries are consumed before the caller has them.
 * atLeastOnce(n): a checkpointing read first commits what earlier reads returned (the caller
 * came back for more, so it handled them), then reads and moves `delivered` only. The cursor
 * record is written once the committed cursor is n or more entries past the last one written
 * (before the read is answered), and becomes durable with the shard's next fsync. After a
 * kill -9 at most (n - 1) + the entries of the last read returned are delivered again, and
 * none is skipped. commit() commits `delivered` explicitly and makes it durable; close()
 * writes every committed cursor exactly.
 *
 * Named consumers (wal.consumer(name)) follow the same rules with positions of their own
 * (a `Position` per topic, persisted by `positions` records) and a consistency of their own,
 * carried by each request. A named consumer gets a position in a topic at its first
 * checkpointing read, commit or seek there, at the topic's first stored entry, written at
 * once. Deletion of consumed entries waits for the lowest committed position of the topic's
 * consumers (blocks.ts floorOf).
 */
import { WalrusError, ioError, serializeError } from '../../shared/errors.js';
import { READ_ENTRY_FIELDS, readTransfer, type ConsumerRef, type FromWorker } from '../../shared/messages.js';
import { MAX_CONSUMERS } from '../../shared/format/meta.js';
import type { ReadConsistency } from '../../shared/schedule.js';
import type { Cursor, TopicLog } from '../store/model.js';
import type { ShardStore } from '../store/store.js';
import { moveCursor, updateFloor } from '../store/blocks.js';
import { EMPTY_READ, readEntries, type ReadOutput } from './reader.js';
import { type AheadPlan, type ReadAhead, readerKey } from './read-ahead.js';
import type { Writer } from '../write/writer.js';

type Reply = Extract<FromWorker, { type: 'readResult' }>;

/** A reply held until its cursor record is written or fsynced, with the read-ahead to make once it is sent. */
interface Held {
  reply: Reply;
  plan: AheadPlan | null;
}

export interface ConsumeRequest {
  id: number;
  topicId: number;
  maxEntries: number;
  maxBytes: number;
  checkpoint: boolean;
  /** A named consumer, or null for the default one. */
  consumer: ConsumerRef | null;
  /** Whether the reader's next read is made in advance once this one is answered. */
  readAhead: boolean;
}

/** Where a consumer stands in a topic, as `position` answers it. */
export interface PositionState {
  cursor: number;
  delivered: number;
}

export class Consumers {
  /** StrictlyAtOnce replies held until the next fsync completes. */
  private awaiting: Held[] = [];
  /**
   * atLeastOnce replies whose read queued a cursor record, held until the record is written:
   * answered first, a kill -9 right after could lose the record (it was only in this
   * worker's memory) and redeliver more than the bound, (n - 1) + the last read's entries.
   * Found by the crash cycles.
   */
  private unwritten: Held[] = [];

  constructor(
    private readonly store: ShardStore,
    private readonly writer: Writer,
    private readonly consistency: ReadConsistency,
    private readonly post: (m: FromWorker, transfer?: ArrayBuffer[]) => void,
    /** The readers' next reads, made in advance (read-ahead.ts). */
    private readonly ahead: ReadAhead,
  ) {}

  /** Whether replies wait for an fsync (the worker must then submit one). */
  get waiting(): boolean {
    return this.awaiting.length > 0;
  }

  /** Whether replies wait for their cursor record to be written (the worker must submit). */
  get unwrittenWaiting(): boolean {
    return this.unwritten.length > 0;
  }

  /** The queued cursor records were written (handed to the kernel): answer their reads. */
  written(): void {
    this.answer(this.unwritten.splice(0));
  }

  /**
   * Reads from where the consumer of `m` stands in `t` (undefined: a topic this shard does
   * not hold); a checkpointing read commits as its consistency says (see the file comment).
   * `failed` is the shard's failure, if any: a StrictlyAtOnce checkpoint cannot be made
   * durable then, so it is refused.
   */
  consume(t: TopicLog | undefined, m: ConsumeRequest, failed: WalrusError | null): void {
    try {
      const consistency = m.consumer?.consistency ?? this.consistency;
      const strict = consistency.kind === 'strictlyAtOnce';
      const c = t ? this.cursorOf(t, m.consumer, m.checkpoint) : null;
      // atLeastOnce: coming back for more commits everything returned before this read,
      // whatever this read finds.
      if (t && c && m.checkpoint && !strict) moveCursor(t, c.delivered, c);
      const key = t ? readerKey(t.id, m.consumer?.name ?? null) : '';
      const from = t ? Math.max(c ? c.delivered : t.start, t.start) : 0;
      // The reader's read-ahead when it is what this read returns, else a read now.
      const out: ReadOutput = t ? (this.ahead.take(key, t, from, m.maxEntries, m.maxBytes) ?? readEntries(t, from, m.maxEntries, m.maxBytes)) : EMPTY_READ();
      const n = out.entries.length / READ_ENTRY_FIELDS;
      const last = n > 0 ? out.entries[(n - 1) * READ_ENTRY_FIELDS]! : -1;
      // Where the consumer's next read starts: here for a peek (or an empty read), past these entries once a checkpoint takes them.
      const reply: Reply = { type: 'readResult', id: m.id, data: out.data, entries: out.entries, next: from };
      // Once the reply is on its way, the reader's next read is made in advance (never
      // moving its cursor): while the caller handles these entries, the next are read.
      const plan: AheadPlan | null = t && n > 0 && m.readAhead ? { key, topic: t, cursor: c, maxEntries: m.maxEntries, maxBytes: m.maxBytes } : null;
      if (!t || !c || !m.checkpoint || (strict && n === 0)) {
        this.answer([{ reply, plan }]);
        return;
      }
      if (strict && failed) throw failed;
      if (n > 0) c.delivered = last + 1;
      reply.next = c.delivered;
      if (strict) {
        moveCursor(t, c.delivered, c);
        this.persist(t, m.consumer);
        this.awaiting.push({ reply, plan });
        return;
      }
      if (!failed && c.cursor - c.cursorWritten >= consistency.persistEvery) {
        this.persist(t, m.consumer);
        this.unwritten.push({ reply, plan });
        return;
      }
      this.answer([{ reply, plan }]);
    } catch (err) {
      this.post({ type: 'requestFailed', id: m.id, error: serializeError(err instanceof WalrusError ? err : ioError(err, 'read failed')) });
    }
  }

  /**
   * A live tail delivered entries [from, to) of `t` from memory, one by one: the position
   * moves as that many readNext calls would have moved it (each commits what the one before
   * returned), and a cursor record is queued once the committed position is persistEvery past
   * the last one written, or at once with m.ack (see the 'taken' message). Returns a function that
   * gives the committed position last written (asked once the queued record is written).
   * A consumer whose position a retention bound moved past `from` meanwhile keeps the larger
   * position.
   */
  taken(t: TopicLog | undefined, m: { topicId: number; consumer: ConsumerRef | null; from: number; to: number; ack: boolean }): () => number {
    if (!t) return () => 0;
    try {
      const c = this.cursorOf(t, m.consumer, true)!;
      const to = Math.min(m.to, t.complete);
      if (m.to > m.from) {
        this.ahead.drop(readerKey(t.id, m.consumer?.name ?? null));
        if (to - 1 > c.cursor) moveCursor(t, to - 1, c);
        if (c.delivered < to) c.delivered = to;
      }
      const consistency = m.consumer?.consistency ?? this.consistency;
      const every = consistency.kind === 'atLeastOnce' ? consistency.persistEvery : 1;
      if (c.cursor !== c.cursorWritten && (m.ack || c.cursor - c.cursorWritten >= every)) this.persist(t, m.consumer);
      return () => c.cursorWritten;
    } catch {
      // Only the consumer limit can refuse here, and a live tail reads with a position it
      // already has: nothing to report to a message nobody waits for.
      return () => 0;
    }
  }

  /**
   * commit(): everything checkpointing reads of `t` returned to the consumer is consumed;
   * with `offset`, everything before `offset` instead (clamped to the stored entries: at
   * least the first stored one, at most the topic's end), and reads continue from there if
   * it is past where they were. Queues the cursor record if the committed position moved
   * past the last one written; the caller then writes and fsyncs before answering.
   */
  commit(t: TopicLog | undefined, consumer: ConsumerRef | null, offset: number | undefined): void {
    if (!t) return;
    const c = this.cursorOf(t, consumer, true)!;
    const target = offset === undefined ? c.delivered : clampOffset(t, offset);
    moveCursor(t, target, c);
    if (c.delivered < target) {
      c.delivered = target;
      this.ahead.drop(readerKey(t.id, consumer?.name ?? null));
    }
    if (c.cursor !== c.cursorWritten) this.persist(t, consumer);
  }

  /**
   * seek(): the consumer's next read of `t` starts at `offset`, clamped to the stored entries
   * (below the first stored entry: that entry; past the end: the end), and everything before
   * it counts as consumed (committed, written; the caller fsyncs before answering).
   */
  seek(t: TopicLog | undefined, consumer: ConsumerRef | null, offset: number): void {
    if (!t) return;
    const c = this.cursorOf(t, consumer, true)!;
    const target = clampOffset(t, offset);
    moveCursor(t, target, c);
    c.delivered = target;
    this.ahead.drop(readerKey(t.id, consumer?.name ?? null));
    if (c.cursor !== c.cursorWritten) this.persist(t, consumer);
  }

  /** Where the consumer stands in `t` (a consumer with no position there: the first stored entry). */
  position(t: TopicLog | undefined, consumer: ConsumerRef | null): PositionState {
    if (!t) return { cursor: 0, delivered: 0 };
    const c = this.cursorOf(t, consumer, false);
    if (!c) return { cursor: t.start, delivered: t.start };
    return { cursor: Math.max(c.cursor, t.start), delivered: Math.max(c.delivered, t.start) };
  }

  /** Every named consumer: name, then [topic id, committed, delivered, skipped, topic end] per topic. */
  list(): [string, [number, number, number, number, number][]][] {
    const out: [string, [number, number, number, number, number][]][] = [];
    for (const c of this.store.consumers.values()) {
      const topics: [number, number, number, number, number][] = [];
      for (const [t, p] of c.topics) topics.push([t.id, p.cursor, p.delivered, c.skipped.get(t.id) ?? 0, t.complete]);
      out.push([c.name, topics]);
    }
    return out;
  }

  /** Deletes named consumer `name` and its positions (the caller writes and fsyncs); false if it has none here. */
  drop(name: string): boolean {
    const c = this.store.consumerByName.get(name);
    if (!c) return false;
    for (const t of c.topics.keys()) {
      t.positions!.delete(c.id);
      if (t.positions!.size === 0) t.positions = null;
      updateFloor(t);
    }
    this.store.consumers.delete(c.id);
    this.store.consumerByName.delete(name);
    this.ahead.dropConsumer(name);
    this.writer.dropConsumer(c);
    return true;
  }

  /** The held StrictlyAtOnce reads' fsync completed: answer them. */
  released(): void {
    this.answer(this.awaiting.splice(0));
  }

  /** The fsync failed: none of the held reads may be answered with entries. */
  failed(err: WalrusError): void {
    this.ahead.cancel();
    for (const { reply } of [...this.awaiting.splice(0), ...this.unwritten.splice(0)]) this.post({ type: 'requestFailed', id: reply.id, error: serializeError(err) });
  }

  /** After a deletion of segments: read-aheads of entries no longer stored go. */
  pruneReadAheads(): void {
    this.ahead.prune();
  }

  /**
   * The consumer's cursor in `t`: the topic's own fields for the default consumer; for a
   * named one its position, made (at the first stored entry, its record queued) when
   * `create` and it has none; null when it has none and `create` is false.
   */
  private cursorOf(t: TopicLog, ref: ConsumerRef | null, create: boolean): Cursor | null {
    if (ref === null) return t;
    let c = this.store.consumerByName.get(ref.name);
    if (!c) {
      if (!create) return null;
      if (this.store.consumers.size >= MAX_CONSUMERS) {
        throw new WalrusError('ERR_WALRUS_CONSUMER_LIMIT', `a shard keeps positions for at most ${MAX_CONSUMERS} named consumers; delete one (wal.deleteConsumer) before using ${JSON.stringify(ref.name)}`);
      }
      c = this.store.addConsumer(++this.store.maxConsumerId, ref.name);
      this.writer.declareConsumer(c);
    }
    let p = c.topics.get(t);
    if (!p) {
      if (!create) return null;
      p = { cursor: t.start, delivered: t.start, cursorWritten: -1 };
      c.topics.set(t, p);
      (t.positions ??= new Map()).set(c.id, p);
      updateFloor(t);
      this.writer.appendPosition(c, t);
    }
    return p;
  }

  /** Queues the record of the consumer's committed position in `t` (written by the next submit). */
  private persist(t: TopicLog, ref: ConsumerRef | null): void {
    if (ref === null) this.writer.appendCursor(t);
    else this.writer.appendPosition(this.store.consumerByName.get(ref.name)!, t);
  }

  /**
   * Posts the replies, then makes their readers' read-aheads: the caller has its entries
   * while the worker reads the next ones, and any request the caller sends after them finds
   * them made (the worker takes its next message only afterwards).
   */
  private answer(held: Held[]): void {
    for (const { reply, plan } of held) {
      this.post(reply, readTransfer(reply.data, reply.entries));
      if (plan !== null) this.ahead.plan(plan);
    }
    this.ahead.run();
  }
}

/** `offset` within the stored entries of `t`: [t.start, t.complete]. */
function clampOffset(t: TopicLog, offset: number): number {
  return Math.max(t.start, Math.min(offset, t.complete));
}
