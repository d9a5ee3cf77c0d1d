/**
 * Read-ahead: once a consumer's read is answered, the shard worker reads and verifies that
 * reader's next read (same topic, same limits, from where its next read will start) and keeps
 * it, so that while the caller handles one batch the next is already in memory, checksummed.
 * The reader's next request is answered from it when, and only when, it is exactly what a
 * read made at that moment would return (see take()); otherwise it is dropped and the request
 * reads as usual. A read-ahead never moves a cursor: it is a copy of stored entries, nothing
 * more, and the request that takes it moves the cursor as any read does.
 *
 * A reader is a consumer (the default one or a named one) of one topic; peeks and
 * checkpointing reads of that consumer share its read-ahead (a peek's next read starts where
 * the peek did). Memory is bounded: one read-ahead per reader, made only for reads of at
 * most READ_AHEAD_MAX_PAYLOAD bytes of payload and kept only when its chunks hold at most
 * READ_AHEAD_READER_BYTES; a shard keeps at most READ_AHEAD_SHARD_BYTES of them, the least
 * recently used going first (docs/ARCHITECTURE.md, "Reads").
 *
 * A read-ahead that fails (a record whose checksum fails, an I/O error) is dropped without a
 * word: the request that reaches those entries reads them itself and reports the error, and
 * every read before it is answered as usual.
 */
import { READ_ENTRY_FIELDS } from '../../shared/messages.js';
import type { Cursor, TopicLog } from '../store/model.js';
import { readEntries, type ReadOutput } from './reader.js';

/** Largest payload limit (`maxBytes`) of a read whose next read is made in advance. */
export const READ_AHEAD_MAX_PAYLOAD = 4 * 1024 * 1024;
/** Most chunk bytes one reader's read-ahead keeps (a larger one is dropped as soon as read). */
export const READ_AHEAD_READER_BYTES = 8 * 1024 * 1024;
/** Most chunk bytes the read-aheads of one shard keep together. */
export const READ_AHEAD_SHARD_BYTES = 16 * 1024 * 1024;

/** Counters of a shard's read-aheads (stats().shards[i].readAhead). */
export interface ReadAheadCounters {
  /** Read-aheads made (read and verified). */
  made: number;
  /** Requests answered from a read-ahead. */
  served: number;
  /** Read-aheads dropped unused: the reader moved elsewhere, asked for more, the bounds. */
  dropped: number;
  /** Read-aheads that failed (checksum, I/O): dropped, and read again by the request that reaches them. */
  failed: number;
  /** Chunk bytes held now. */
  heldBytes: number;
}

interface Ahead {
  key: string;
  topic: TopicLog;
  /** The offset it starts at (its first entry's). */
  from: number;
  /** The limits it was read with: the reader's last request's. */
  maxEntries: number;
  maxBytes: number;
  out: ReadOutput;
  /** Entries in `out`. */
  count: number;
  /** `topic.complete` when it was read: it stopped there when it holds fewer entries than its limits allow. */
  complete: number;
  /** Chunk bytes held. */
  bytes: number;
}

/** A reader whose next read is to be made in advance, once its reply is on its way. */
export interface AheadPlan {
  key: string;
  topic: TopicLog;
  /** The reader's position in the topic (null: a consumer with no position, whose reads start at the topic's first stored entry). */
  cursor: Cursor | null;
  maxEntries: number;
  maxBytes: number;
}

/** The read-ahead key of consumer `name` (null: the default consumer) in topic `topicId`. */
export function readerKey(topicId: number, name: string | null): string {
  // Consumer names are never empty, so '' cannot collide with one.
  return `${topicId}:${name ?? ''}`;
}

export class ReadAhead {
  /** By reader key, least recently used first (a Map keeps insertion order). */
  private readonly held = new Map<string, Ahead>();
  private planned: AheadPlan[] = [];
  readonly counters: ReadAheadCounters = { made: 0, served: 0, dropped: 0, failed: 0, heldBytes: 0 };

  constructor(
    private readonly enabled: boolean,
    /** Called whenever a counter changes (the worker publishes them). */
    private readonly changed: (c: ReadAheadCounters) => void = () => {},
  ) {}

  /**
   * The reply to a read of `t` from `from` with these limits, from reader `key`'s read-ahead,
   * if it is exactly what reading now would return: the same first offset, and the request's
   * limits stop within the entries read ahead, or where the read-ahead stopped for a reason
   * that still holds (the same or a smaller limit; the end of the topic, which has not grown
   * since). Otherwise null, and a read-ahead the reader had is dropped (it took its chance).
   * Entries are never changed once written, so equal offsets mean equal bytes.
   */
  take(key: string, t: TopicLog, from: number, maxEntries: number, maxBytes: number): ReadOutput | null {
    const a = this.held.get(key);
    if (a === undefined) return null;
    this.remove(a);
    const out = a.topic === t && a.from === from && from >= t.start ? this.serve(a, t, maxEntries, maxBytes) : null;
    if (out === null) this.counters.dropped++;
    else this.counters.served++;
    this.changed(this.counters);
    return out;
  }

  private serve(a: Ahead, t: TopicLog, maxEntries: number, maxBytes: number): ReadOutput | null {
    const e = a.out.entries;
    let k = 0;
    let bytes = 0;
    while (k < a.count && k < maxEntries) {
      const len = e[k * READ_ENTRY_FIELDS + 3]!;
      if (k > 0 && bytes + len > maxBytes) break;
      bytes += len;
      k++;
    }
    if (k === a.count && k < maxEntries) {
      // Every entry read ahead fits: a read now would look further, unless what stopped the
      // read-ahead stops it too. Short of its entry limit, the read-ahead stopped at the
      // topic's end (then it must not have grown) or at its byte limit (the next entry did
      // not fit in a.maxBytes, so it does not fit in a smaller limit either).
      const stops = a.count < a.maxEntries && (atEnd(a) ? t.complete === a.complete : maxBytes <= a.maxBytes);
      if (!stops) return null;
    }
    if (k === a.count) return a.out;
    return prefix(a.out, k, bytes);
  }

  /**
   * Notes that reader `p.key`'s next read may be made in advance (run() makes it): its read
   * was answered, or is about to be.
   */
  plan(p: AheadPlan): void {
    if (!this.enabled || p.maxBytes > READ_AHEAD_MAX_PAYLOAD) return;
    this.planned.push(p);
  }

  /** Makes the planned read-aheads (the latest plan of a reader wins). */
  run(): void {
    if (this.planned.length === 0) return;
    const plans = this.planned;
    this.planned = [];
    for (let i = 0; i < plans.length; i++) {
      const p = plans[i]!;
      if (plans.findIndex((q, j) => j > i && q.key === p.key) >= 0) continue;
      this.make(p);
    }
    this.changed(this.counters);
  }

  /** Forgets the planned read-aheads (the shard failed: nothing more is read). */
  cancel(): void {
    this.planned = [];
  }

  private make(p: AheadPlan): void {
    const t = p.topic;
    const from = p.cursor === null ? t.start : Math.max(p.cursor.delivered, t.start);
    const old = this.held.get(p.key);
    if (old !== undefined) {
      // The reader's read-ahead is still there (a peek took none, or a read asked for
      // other limits): kept if it is the one this plan would make.
      if (old.from === from && old.maxEntries === p.maxEntries && old.maxBytes === p.maxBytes && old.topic === t && whole(old, t)) {
        this.held.delete(p.key);
        this.held.set(p.key, old);
        return;
      }
      this.remove(old);
      this.counters.dropped++;
    }
    if (from >= t.complete) return;
    let out: ReadOutput;
    try {
      out = readEntries(t, from, p.maxEntries, p.maxBytes);
    } catch {
      // Damage or an I/O error: the request that reaches these entries reads them again and
      // reports it; the reads before it are not affected.
      this.counters.failed++;
      return;
    }
    const count = out.entries.length / READ_ENTRY_FIELDS;
    if (count === 0) return;
    let bytes = 0;
    for (const c of out.data) bytes += c.byteLength;
    this.counters.made++;
    if (bytes > READ_AHEAD_READER_BYTES) {
      this.counters.dropped++;
      return;
    }
    // Room within the shard's bound: the least recently used read-aheads go first.
    for (const a of this.held.values()) {
      if (this.counters.heldBytes + bytes <= READ_AHEAD_SHARD_BYTES) break;
      this.remove(a);
      this.counters.dropped++;
    }
    const a: Ahead = { key: p.key, topic: t, from, maxEntries: p.maxEntries, maxBytes: p.maxBytes, out, count, complete: t.complete, bytes };
    this.held.set(p.key, a);
    this.counters.heldBytes += bytes;
  }

  /** Drops reader `key`'s read-ahead (its position moved: seek, commit). */
  drop(key: string): void {
    const a = this.held.get(key);
    if (a === undefined) return;
    this.remove(a);
    this.counters.dropped++;
    this.changed(this.counters);
  }

  /** Drops the read-aheads of named consumer `name` (deleted). */
  dropConsumer(name: string): void {
    for (const a of [...this.held.values()]) if (a.key === readerKey(a.topic.id, name)) this.drop(a.key);
  }

  /**
   * After a deletion of consumed segments: drops the read-aheads whose entries are no longer
   * stored (a retention bound deleted them, or a reader with no position peeked at entries
   * others consumed). Their chunks are copies, so the others stay valid.
   */
  prune(): void {
    for (const a of [...this.held.values()]) if (a.from < a.topic.start) this.drop(a.key);
  }

  private remove(a: Ahead): void {
    this.held.delete(a.key);
    this.counters.heldBytes -= a.bytes;
  }
}

/** Whether `a` stopped at the end of its topic's entries as they were when it was read. */
function atEnd(a: Ahead): boolean {
  return a.from + a.count >= a.complete;
}

/** Whether a read with `a`'s own limits would return exactly `a` now (the topic did not grow past where it stopped). */
function whole(a: Ahead, t: TopicLog): boolean {
  return a.count === a.maxEntries || !atEnd(a) || t.complete === a.complete;
}

/**
 * The first `k` entries of `out` (`bytes` of payload): the chunks they lie in, or, when those
 * would be less than half payload, one buffer of just their payloads (as reader.ts does for a
 * read's reply, so that entries a caller keeps do not pin much larger chunks).
 */
function prefix(out: ReadOutput, k: number, bytes: number): ReadOutput {
  const F = READ_ENTRY_FIELDS;
  const entries = out.entries.slice(0, k * F);
  const chunks = out.data.slice(0, entries[(k - 1) * F + 1]! + 1);
  let chunkBytes = 0;
  for (const c of chunks) chunkBytes += c.byteLength;
  if (bytes * 2 >= chunkBytes) return { data: chunks, entries };
  const one = Buffer.allocUnsafeSlow(bytes); // every byte is written below
  let pos = 0;
  for (let e = 0; e < entries.length; e += F) {
    const len = entries[e + 3]!;
    one.set(new Uint8Array(chunks[entries[e + 1]!]!, entries[e + 2]!, len), pos);
    entries[e + 1] = 0;
    entries[e + 2] = pos;
    pos += len;
  }
  return { data: [one.buffer as ArrayBuffer], entries };
}
