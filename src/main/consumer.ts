/**
 * Named consumers: `wal.consumer(name, { consistency })`. Each reads every topic with a
 * durable position of its own, so independent parts of a process (a job runner, an audit
 * writer, a forwarder) read the same topics without taking entries from each other. The
 * reads are the instance's own (Walrus.take and friends, given the consumer); the positions
 * live in the shard workers (workers/read/consumer.ts) and in the meta topic (FORMAT.md).
 */
import type { Readable } from 'node:stream';
import type { RecordBatch } from './batch.js';
import { encodeName } from '../shared/format/topic.js';
import { outOfRange, invalidArgType } from '../shared/errors.js';
import type { ReadConsistency } from '../shared/schedule.js';
import type { TypedTopic } from './records/typed.js';
import type { ReadStreamOptions } from './streams.js';
import type { Entry, FetchOptions, SubscribeOptions } from './types.js';

/** Checks a named consumer's name: the rules of topic names (ERR_WALRUS_INVALID_CONSUMER). */
export function checkConsumerName(name: unknown, argName = 'name'): asserts name is string {
  encodeName(name, argName, 'ERR_WALRUS_INVALID_CONSUMER', 'consumer name');
}

/** Checks an offset argument: a non-negative safe integer. */
export function checkOffset(offset: unknown, argName: string): asserts offset is number {
  if (typeof offset !== 'number') throw invalidArgType(argName, 'of type number', offset);
  if (!Number.isSafeInteger(offset) || offset < 0) throw outOfRange(argName, 'a non-negative safe integer', offset);
}

/** Where a consumer stands in a topic (see {@link Consumer.position}). */
export interface PositionReply {
  /** Committed: every entry before it is consumed (what is persisted). */
  cursor: number;
  /** Where its next checkpointing read starts. */
  delivered: number;
  /** The topic's first stored entry. */
  start: number;
  /** The topic's end: the offset its next entry gets (entries appended so far). */
  end: number;
}

/** @internal What a Consumer reads through: the instance's read paths, bound to the consumer. */
export interface ConsumerPort {
  readNext(topic: string, checkpoint: boolean): Promise<Entry | null>;
  batchRead(topic: string, maxBytes: number, checkpoint: boolean): Promise<Entry[]>;
  fetch(topic: string, options: FetchOptions): Promise<RecordBatch>;
  subscribe(topic: string, options: SubscribeOptions): AsyncIterableIterator<Entry>;
  createReadStream(topic: string, options: ReadStreamOptions | undefined): Readable;
  typed<T>(topic: string): TypedTopic<T>;
  commit(topic: string, offset: number | undefined): Promise<void>;
  seek(topic: string, offset: number): Promise<void>;
  position(topic: string): Promise<PositionReply>;
}

/**
 * A named consumer, from {@link Walrus.consumer}: the reading half of the API with a durable
 * position of its own in every topic it reads, and its own consistency.
 *
 * - Its first checkpointing read (or commit, or seek) of a topic starts it at the topic's
 *   first stored entry; that position is durable from then on, across restarts.
 * - Reads follow the rules of the instance's (`readNext`, `batchRead`, `fetch`, `subscribe`,
 *   `createReadStream`, `typed`) with this consumer's consistency: under `StrictlyAtOnce` a
 *   checkpointing read resolves once its advance is durable; under `atLeastOnce(n)` a read's
 *   entries are committed by the next checkpointing read (or `commit`), and after a crash at
 *   most n - 1 entries plus the last read's are delivered again, none skipped.
 * - Consumed entries are deleted only when every consumer of the topic (this one, the
 *   others, and the instance's own default consumer once it has read the topic) committed
 *   them; a retention bound (`retentionBytes`, `retentionMs`) can delete entries a slow
 *   consumer had not read: it then jumps forward, and {@link Walrus.consumers} reports the
 *   entries it skipped.
 * - Two handles of one name are the same consumer (they share its positions); each reads with
 *   the consistency it was created with.
 */
export class Consumer {
  /** @internal */
  constructor(
    /** The consumer's name. */
    readonly name: string,
    /** The consistency of this handle's checkpointing reads. */
    readonly consistency: ReadConsistency,
    private readonly port: ConsumerPort,
  ) {}

  /** Like {@link Walrus.readNext}, from this consumer's position. */
  readNext(topic: string, checkpoint = true): Promise<Entry | null> {
    return this.port.readNext(topic, checkpoint);
  }

  /** Like {@link Walrus.batchRead}, from this consumer's position. */
  batchRead(topic: string, maxBytes: number, checkpoint = true): Promise<Entry[]> {
    return this.port.batchRead(topic, maxBytes, checkpoint);
  }

  /** Like {@link Walrus.fetch}, from this consumer's position. */
  fetch(topic: string, options: FetchOptions = {}): Promise<RecordBatch> {
    return this.port.fetch(topic, options);
  }

  /** Like {@link Walrus.subscribe}, from this consumer's position. */
  subscribe(topic: string, options: SubscribeOptions = {}): AsyncIterableIterator<Entry> {
    return this.port.subscribe(topic, options);
  }

  /** Like {@link Walrus.createReadStream}, from this consumer's position. */
  createReadStream(topic: string, options?: ReadStreamOptions): Readable {
    return this.port.createReadStream(topic, options);
  }

  /** Like {@link Walrus.typed}: a typed view whose reads are this consumer's (its appends are the instance's). */
  typed<T = unknown>(topic: string): TypedTopic<T> {
    return this.port.typed<T>(topic);
  }

  /**
   * Commits, durably (resolves once the position is on stable storage, whatever the
   * consistency): without `offset`, every entry this consumer's checkpointing reads of
   * `topic` returned; with it, every entry before `offset`, for processors that commit after
   * their own work. `offset` is clamped to the stored entries (at least the first stored
   * entry, at most the topic's end); if it is past where reads were, reads continue from it.
   * A commit below the committed position moves it back (those entries are delivered again,
   * as long as they are stored).
   */
  commit(topic: string, offset?: number): Promise<void> {
    return this.port.commit(topic, offset);
  }

  /**
   * Moves this consumer's position in `topic` to `offset`, durably: its next read starts
   * there and everything before it counts as consumed. The rule for offsets outside the
   * stored entries: below the first stored entry (consumed and deleted, or never written) it
   * is that entry; past the end it is the end (the next entry appended).
   */
  seek(topic: string, offset: number): Promise<void> {
    return this.port.seek(topic, offset);
  }

  /** The offset this consumer's next checkpointing read of `topic` starts at. */
  async position(topic: string): Promise<number> {
    return (await this.port.position(topic)).delivered;
  }

  /** This consumer's committed position in `topic`: every entry before it is consumed. */
  async committed(topic: string): Promise<number> {
    return (await this.port.position(topic)).cursor;
  }

  /** Entries of `topic` appended and not yet consumed by this consumer (end - committed). */
  async lag(topic: string): Promise<number> {
    const p = await this.port.position(topic);
    return p.end - p.cursor;
  }
}
