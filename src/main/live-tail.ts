/**
 * Live tails from memory (issue 15): an atLeastOnce `subscribe` of a topic appended in this
 * process gets each entry from the main thread's own copy of it, microseconds after the shard
 * worker has written it, instead of with a read request to the worker.
 *
 * How it stays a read: appends happen only in this instance (the directory lock), so the
 * main thread sees every entry of the topic as it is appended. While an atLeastOnce
 * subscriber runs, it holds a lease on the topic's LiveTail, which keeps a copy of every
 * entry appended from then on (the caller may reuse its buffer once append returns) with the
 * ring position the worker's Written watermark must reach for it to be in the files. The
 * subscriber reads from the worker until a read tells it that its next entry is one the tail
 * holds; from then on it delivers from memory, each entry only once it is written (a kill -9
 * then leaves it where a read would have found it: in the files; before that, a crash could
 * lose it and its offset be given to another entry), in offset order, with the bytes that
 * were appended: what a read would have returned.
 *
 * The consumer's position still lives in the shard worker: the subscriber reports the
 * entries it delivered ('taken' messages, one per run) and the worker moves the position as
 * that many readNext calls would have (each commits what the previous one returned). The
 * rule that bounds redelivery after a crash (at most persistEvery - 1 entries and the last
 * read's again: a cursor record is written before the read whose commit makes it due is
 * answered) holds too: every quarter of persistEvery entries delivered, a report asks the
 * worker to write a record of the committed position now and say so (the subscriber does not
 * wait for the answer), and a delivery that would bring the committed position persistEvery
 * past the last record the worker said it wrote waits for the next answer. So records are
 * written about every persistEvery / 4 entries, and the subscriber waits only when the worker
 * is more than three quarters of persistEvery entries behind with its answers.
 *
 * Entries the tail does not hold (a backlog older than the lease, or after the tail passed
 * its memory bound and was dropped, to be made again from the topic's end) come from peeks at
 * the worker: one read of up to LIVE_TAIL_PEEK_ENTRIES from the consumer's position that
 * moves nothing, whose entries the subscriber then delivers and reports one by one exactly
 * as the tail's. So a subscriber with a backlog catches up at the speed of bulk reads, and
 * every entry is still one readNext as far as the position and a crash are concerned.
 * Anything else that moves the consumer in the topic from this instance (a read, commit,
 * seek or deletion of the consumer) first has the runs delivered so far posted, so the
 * worker sees everything in order, and the subscriber peeks again before it goes on.
 * StrictlyAtOnce subscribers hold no lease: their every read waits for its cursor's fsync,
 * shared by every read of a round, as before.
 */
import type { ConsumerRef } from '../shared/messages.js';
import type { RecordBatch } from './batch.js';
import type { ShardClient } from './client/shard.js';
import { type CloseSignal, type Watchable, abortError, waitForAppend } from './subscription.js';
import type { Entry } from './types.js';

/** Most entries a topic's live tail keeps; past it the tail is dropped and its subscribers read from the worker. */
export const LIVE_TAIL_MAX_ENTRIES = 65_536;
/** Most payload bytes a topic's live tail keeps (see LIVE_TAIL_MAX_ENTRIES). */
export const LIVE_TAIL_MAX_BYTES = 16 * 1024 * 1024;
/** Limits of a lease's peek at the worker (entries, payload bytes). */
export const LIVE_TAIL_PEEK_ENTRIES = 1024;
export const LIVE_TAIL_PEEK_BYTES = 1024 * 1024;

/** Entries atLeastOnce subscribers delivered (stats().liveTail). */
export interface LiveTailCounters {
  fromMemory: number;
  fromPeeks: number;
}

/** A topic as live tails see it (walrus.ts's Topic). */
export interface TailTopic extends Watchable {
  id: number;
  name: string;
  shard: ShardClient;
  /** Copies of the entries appended since a subscriber took a lease, while one holds one. */
  tail: LiveTail | null;
}

/** What a wait of a lease ended with, when not an entry. */
export const LEASE_LOST = null;
export const INSTANCE_CLOSED = Symbol('closed');

/** Entries appended to one topic while subscribers hold leases on it, from offset `base` on. */
export class LiveTail {
  private data: Buffer[] = [];
  private targets: number[] = [];
  /** Index in data/targets of offset `base`. */
  private head = 0;
  private bytes = 0;
  readonly leases = new Set<TailLease>();

  constructor(private base: number) {}

  /** The offset the next captured entry must have. */
  get end(): number {
    return this.base + this.data.length - this.head;
  }

  /**
   * Keeps a copy of the entry appended at `offset`, which the worker has written once its
   * Written watermark reaches `target`. False when it cannot (a gap, or past the bounds):
   * the caller then drops the tail.
   */
  push(offset: number, copy: Buffer, target: number): boolean {
    if (offset !== this.end || this.data.length - this.head >= LIVE_TAIL_MAX_ENTRIES || this.bytes + copy.length > LIVE_TAIL_MAX_BYTES) return false;
    this.data.push(copy);
    this.targets.push(target);
    this.bytes += copy.length;
    return true;
  }

  /** The index of `offset` if it is held, else -1. */
  indexOf(offset: number): number {
    const i = offset - this.base;
    return i >= 0 && i < this.data.length - this.head ? this.head + i : -1;
  }

  dataAt(index: number): Buffer {
    return this.data[index]!;
  }

  targetAt(index: number): number {
    return this.targets[index]!;
  }

  /** Lets go of the entries every lease has delivered (none while a lease does not know its position). */
  trim(): void {
    let low = this.end;
    for (const l of this.leases) low = Math.min(low, l.position < 0 ? this.base : l.position);
    while (this.base < low) {
      this.bytes -= this.data[this.head]!.length;
      this.data[this.head] = EMPTY;
      this.head++;
      this.base++;
    }
    if (this.head > 1024 && this.head * 2 > this.data.length) {
      this.data = this.data.slice(this.head);
      this.targets = this.targets.slice(this.head);
      this.head = 0;
    }
  }
}

const EMPTY = Buffer.alloc(0);

/** Copies an appended payload (the caller may change its buffer once append returns). */
export function copyPayload(data: Uint8Array | string): Buffer {
  return typeof data === 'string' ? Buffer.from(data, 'utf8') : Buffer.from(data);
}

/**
 * Captures entries just appended to `t` (first offset `first`), for its leases: the worker
 * has them in the files once Written reaches `target`. Drops the tail, ending its leases,
 * when it cannot keep them.
 */
export function captureAppended(t: TailTopic, first: number, entries: readonly (Uint8Array | string)[], target: number): void {
  const tail = t.tail!;
  for (let i = 0; i < entries.length; i++) {
    if (!tail.push(first + i, copyPayload(entries[i]!), target)) {
      dropTail(t);
      return;
    }
  }
}

/**
 * Drops `t`'s tail: its leases go back to reading from the worker (posting what they
 * delivered), and join a new tail, made from the topic's end, at their next read.
 */
export function dropTail(t: TailTopic): void {
  const tail = t.tail;
  if (tail === null) return;
  for (const l of tail.leases) l.suspend();
  t.tail = null;
}

/**
 * One atLeastOnce subscriber's lease on its topic's live tail. It delivers from `position`
 * on: from the entries of its last peek at the worker while they last, then from the tail
 * (which holds every entry appended since the lease began), and needs another peek when
 * neither holds its next entry (`next` says LEASE_LOST).
 */
export class TailLease {
  /**
   * The offset of the consumer's next entry, where the worker's reads would continue
   * (-1: not known, until the subscriber's next peek).
   */
  position = -1;
  /** The subscriber's last peek at the worker, from `position` on (entries not delivered yet). */
  private batch: RecordBatch | null = null;
  /** First offset delivered and not yet reported to the worker, or -1. */
  private pendingFrom = -1;
  /** The consumer's committed position last written, as the worker last said (-Infinity: not asked yet). */
  private written = Number.NEGATIVE_INFINITY;
  /** The answers to the reports that asked for a cursor record, oldest first, while awaited. */
  private persisting: Promise<void>[] = [];
  /** The offset of the next entry after the last such report (it recorded everything before it but one). */
  private askedAt = Number.NEGATIVE_INFINITY;
  private ended = false;

  constructor(
    private readonly t: TailTopic,
    private readonly ref: ConsumerRef | null,
    private readonly persistEvery: number,
    /** The instance's counters. */
    private readonly counters: LiveTailCounters,
    /** Unregisters the lease from the instance's list (walrus.ts). */
    private readonly onEnd: (l: TailLease) => void,
  ) {
    this.attach();
  }

  /** The consumer this lease reads for (null: the default one). */
  get consumer(): string | null {
    return this.ref?.name ?? null;
  }

  /** Joins the topic's tail, making one from the topic's end when it has none. */
  private attach(): void {
    const tail = (this.t.tail ??= new LiveTail(this.t.next));
    tail.leases.add(this);
  }

  /**
   * A peek at the worker (from the consumer's position, with everything this lease delivered
   * reported before it) returned `batch`; the consumer's next entry is `next`. Returns
   * whether the lease can deliver from there without another peek (the batch holds entries,
   * or the tail holds `next` or will hold it next).
   */
  offer(batch: RecordBatch, next: number): boolean {
    if (this.ended) return false;
    if (this.t.tail === null || !this.t.tail.leases.has(this)) this.attach();
    const tail = this.t.tail!;
    this.position = next;
    this.batch = batch.length > 0 && batch.firstOffset === next ? batch : null;
    tail.trim();
    return this.batch !== null || tail.indexOf(next) >= 0 || next === tail.end;
  }

  /** Something else moved the consumer: reports what was delivered, and needs a peek to go on. */
  suspend(): void {
    this.report();
    this.position = -1;
    this.batch = null;
  }

  /**
   * The next entry: from the last peek, or from the tail once the worker has written it;
   * LEASE_LOST when neither holds it (peek then), INSTANCE_CLOSED once `closed` resolved;
   * rejects with an AbortError once `signal` aborts.
   */
  async next(closed: CloseSignal, signal: AbortSignal | undefined): Promise<Entry | typeof LEASE_LOST | typeof INSTANCE_CLOSED> {
    for (;;) {
      if (signal?.aborted) throw abortError(signal);
      const offset = this.position;
      if (this.ended || offset < 0) return LEASE_LOST;
      const b = this.batch;
      let index = -1;
      if (b === null || offset >= b.firstOffset + b.length) {
        this.batch = null;
        const tail = this.t.tail;
        if (tail === null || !tail.leases.has(this)) return LEASE_LOST;
        index = tail.indexOf(offset);
        if (index < 0) {
          // Before the tail (read it from the worker), or not appended yet: report what was
          // delivered, then wait for the next append.
          if (offset !== tail.end) return LEASE_LOST;
          this.report();
          await waitForAppend(this.t, offset, closed, signal);
          if (closed.closed) return INSTANCE_CLOSED;
          continue;
        }
        const target = tail.targetAt(index);
        if (!this.t.shard.writtenTo(target)) {
          this.report();
          const r = await raceWait(this.t.shard.waitWrittenTo(target), closed, signal);
          if (r === INSTANCE_CLOSED) return r;
          // A failed shard writes nothing more: read from the worker, which says why.
          if (r === LEASE_LOST) this.suspend();
          continue;
        }
      }
      // Taking this entry commits everything before it. When that brings the committed
      // position persistEvery past the last cursor record written, that record must be
      // written before the entry is handed over, as for a read: wait for the record asked
      // for earlier (or ask now).
      if (offset - this.written >= this.persistEvery) {
        if (this.persisting.length === 0) this.askRecord();
        const r = await raceWait(this.persisting[0]!, closed, signal);
        if (r === INSTANCE_CLOSED) return r;
        // A failed shard: read from the worker, which says why.
        if (r === LEASE_LOST) this.suspend();
        continue;
      }
      if (this.pendingFrom < 0) this.pendingFrom = offset;
      this.position = offset + 1;
      // Ask for records ahead of need, so that they are written before they are due.
      if (offset - Math.max(this.written, this.askedAt) >= this.persistEvery / 4) this.askRecord();
      if (index < 0) {
        this.counters.fromPeeks++;
        return { topic: this.t.name, offset, data: b!.payload(offset - b!.firstOffset) };
      }
      this.counters.fromMemory++;
      const data = this.t.tail!.dataAt(index);
      this.t.tail!.trim();
      return { topic: this.t.name, offset, data };
    }
  }

  /**
   * Reports the run delivered so far with the request to write the consumer's committed
   * position now; `persisting` settles once the worker has written it (and said where).
   */
  private askRecord(): void {
    const from = this.pendingFrom < 0 ? this.position : this.pendingFrom;
    this.pendingFrom = -1;
    this.askedAt = this.position;
    const answer: Promise<void> = this.t.shard.taken(this.t.id, this.ref, from, this.position, true).then(
      (written) => {
        this.written = Math.max(this.written, written);
        this.persisting.splice(this.persisting.indexOf(answer), 1);
      },
      (err: unknown) => {
        this.persisting.splice(this.persisting.indexOf(answer), 1);
        throw err;
      },
    );
    this.persisting.push(answer);
    // Its failure is met by the delivery that waits for it, if any.
    answer.catch(() => {});
  }

  /** Posts the run delivered since the last report (no answer waited for). */
  report(): void {
    if (this.pendingFrom < 0) return;
    const from = this.pendingFrom;
    this.pendingFrom = -1;
    // A closed or failed shard: nothing more to record (close() reported the runs first).
    this.t.shard.taken(this.t.id, this.ref, from, this.position, false).catch(() => {});
  }

  /** Ends the lease: reports what it delivered, leaves the tail (dropped once no lease is left). */
  end(): void {
    if (this.ended) return;
    this.report();
    this.ended = true;
    const tail = this.t.tail;
    if (tail !== null && tail.leases.has(this)) {
      tail.leases.delete(this);
      if (tail.leases.size === 0) this.t.tail = null;
      else tail.trim();
    }
    this.onEnd(this);
  }
}

/** Waits for `p`; INSTANCE_CLOSED if `closed` fires first, LEASE_LOST if `p` rejects; an AbortError if `signal` aborts. */
function raceWait(p: Promise<void>, closed: CloseSignal, signal: AbortSignal | undefined): Promise<undefined | typeof LEASE_LOST | typeof INSTANCE_CLOSED> {
  return new Promise((resolve, reject) => {
    let settled = false;
    const end = (): boolean => {
      if (settled) return false;
      settled = true;
      signal?.removeEventListener('abort', onAbort);
      offClose();
      return true;
    };
    const onAbort = (): void => {
      if (end()) reject(abortError(signal!));
    };
    const done = (v: undefined | typeof LEASE_LOST | typeof INSTANCE_CLOSED): void => {
      if (end()) resolve(v);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    const offClose = closed.on(() => done(INSTANCE_CLOSED));
    p.then(
      () => done(undefined),
      () => done(LEASE_LOST),
    );
  });
}
