/**
 * Typed records: JavaScript values stored as msgpack (msgpackr), with msgpackr's shared
 * record structures so that repeated object shapes are stored as a small structure id plus
 * the values, not the keys every time. The structures live beside the log and are made
 * durable before any record that uses them is appended (structures.ts says how and why).
 *
 * A typed record's payload is one tag byte (0xC1, a byte that msgpack never uses and that
 * never starts valid UTF-8) followed by the msgpack encoding. The tag lets a read tell a
 * typed record from any other entry and fail with ERR_WALRUS_DECODE instead of returning a
 * value decoded from bytes that were never one.
 */
import { Packr } from 'msgpackr';
import { WalrusError, invalidArgType } from '../../shared/errors.js';
import type { StructureStore } from './structures.js';
import { MAX_BATCH_ENTRIES } from '../limits.js';
import type { Entry, FetchOptions, SubscribeOptions } from '../types.js';
import type { RecordBatch } from '../batch.js';

/** First byte of every typed record. */
export const TYPED_TAG = 0xc1;

/** An entry of a typed topic as its reads return it: the decoded value instead of bytes. */
export interface TypedEntry<T> {
  /** The topic it belongs to. */
  topic: string;
  /** Its offset in the topic (typed and byte entries share the topic's offsets). */
  offset: number;
  /** The decoded value. */
  value: T;
}

/**
 * Encodes and decodes the typed records of one instance (every topic shares its structures).
 * Fail-stop: once saving structures failed, every later encode throws that failure, because
 * msgpackr's in-memory structures may then name ids that were never saved.
 */
export class ValueCodec {
  private readonly packr: Packr;
  private failure: Error | null = null;

  constructor(store: StructureStore) {
    this.packr = new Packr({
      structures: store.load() as object[],
      moreTypes: true,
      useBigIntExtension: true,
      // Decoded binary values must not be views into the read chunk the entry came from.
      copyBuffers: true,
      getStructures: () => store.load() as object[],
      saveStructures: (structures: unknown[]) => {
        try {
          store.save(structures);
        } catch (err) {
          this.failure = err as Error;
          throw err;
        }
      },
    });
  }

  /** The tagged msgpack encoding of `value`, in a buffer of its own. */
  encode(value: unknown): Buffer {
    if (this.failure) throw this.failure;
    const packed = this.packr.pack(value);
    const out = Buffer.allocUnsafe(packed.length + 1);
    out[0] = TYPED_TAG;
    out.set(packed, 1);
    return out;
  }

  /** Decodes the payload of entry `offset` of `topic`; ERR_WALRUS_DECODE when it is not a typed record. */
  decode(topic: string, offset: number, data: Uint8Array): unknown {
    if (data.length < 2 || data[0] !== TYPED_TAG) {
      throw decodeError(topic, offset, data.length === 0 ? 'it is empty' : `it does not start with the typed-record tag 0xc1 (first byte 0x${data[0]!.toString(16)})`);
    }
    try {
      return this.packr.unpack(data.subarray(1));
    } catch (err) {
      throw decodeError(topic, offset, `msgpack decoding failed: ${(err as Error).message}`, err);
    }
  }
}

function decodeError(topic: string, offset: number, why: string, cause?: unknown): WalrusError {
  return new WalrusError('ERR_WALRUS_DECODE', `entry ${offset} of topic ${JSON.stringify(topic)} is not a typed record: ${why}`, {
    topic,
    offset,
    ...(cause === undefined ? {} : { cause }),
  });
}

/** What a TypedTopic needs from its instance's codec (encode refuses once the log is closed). */
export interface Codec {
  encode(value: unknown): Buffer;
  decode(topic: string, offset: number, data: Uint8Array): unknown;
}

/**
 * The byte API that a typed view calls: its instance's (a Walrus), declared here so that
 * this module does not import walrus.ts, which imports it.
 * @internal
 */
export interface ByteLog {
  append(topic: string, data: Uint8Array | string): number;
  batchAppend(topic: string, entries: readonly (Uint8Array | string)[]): number;
  appendAndSync(topic: string, data: Uint8Array | string): Promise<number>;
  readNext(topic: string, checkpoint?: boolean): Promise<Entry | null>;
  batchRead(topic: string, maxBytes: number, checkpoint?: boolean): Promise<Entry[]>;
  fetch(topic: string, options?: FetchOptions): Promise<RecordBatch>;
  iterate(topic: string, from?: number): AsyncIterableIterator<Entry>;
  subscribe(topic: string, options?: SubscribeOptions): AsyncIterableIterator<Entry>;
}

/**
 * A typed view of one topic, from {@link Walrus.typed}: the same calls as the byte API, with
 * values instead of payloads. Values are encoded with msgpackr (`moreTypes`): plain objects,
 * arrays, strings, numbers, booleans, null, `Date`, `Map`, `Set`, `Error`, `RegExp`, typed
 * arrays, Buffers and bigint (any size) round-trip. Objects of a repeated shape share a
 * record structure, saved durably beside the log (at most 32 shared shapes per log; later
 * shapes are stored with their keys in each record).
 *
 * The view holds no state of its own: any number of views of a topic, and the byte API on
 * the same topic, can be used together (offsets and the cursor are the topic's).
 *
 * @typeParam T - the type of the values, for the compiler only: reads do not check it.
 */
export class TypedTopic<T = unknown> {
  /** @internal */
  constructor(
    private readonly wal: ByteLog,
    /** The topic this view reads and writes. */
    readonly topic: string,
    private readonly codec: Codec,
  ) {}

  /** Like {@link Walrus.append}: appends `value` and returns its offset, synchronously. */
  append(value: T): number {
    return this.wal.append(this.topic, this.codec.encode(value));
  }

  /** Like {@link Walrus.batchAppend}: atomic, at most 2,000 values; returns the first offset. */
  batchAppend(values: readonly T[]): number {
    if (!Array.isArray(values)) throw invalidArgType('values', 'an instance of Array', values);
    if (values.length > MAX_BATCH_ENTRIES) return this.wal.batchAppend(this.topic, values as never);
    return this.wal.batchAppend(this.topic, values.map((v) => this.codec.encode(v)));
  }

  /** Like {@link Walrus.appendAndSync}: resolves with the offset once the value is durable. */
  appendAndSync(value: T): Promise<number> {
    try {
      return this.wal.appendAndSync(this.topic, this.codec.encode(value));
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /**
   * Like {@link Walrus.readNext}, decoded. An entry that is not a typed record rejects with
   * `ERR_WALRUS_DECODE` (`topic` and `offset` say which); a checkpointing read has then
   * already moved the cursor past it, like any read.
   */
  async readNext(checkpoint = true): Promise<TypedEntry<T> | null> {
    const e = await this.wal.readNext(this.topic, checkpoint);
    return e === null ? null : this.decode(e);
  }

  /**
   * Like {@link Walrus.batchRead} (`maxBytes` counts encoded bytes), decoded. One entry that
   * is not a typed record makes the whole call reject with `ERR_WALRUS_DECODE` (naming the
   * first such entry); a checkpointing read has then moved the cursor past every entry it
   * took, the decodable ones too. On a topic that may hold other entries, peek first
   * (`checkpoint = false`) or read it through the byte API and {@link TypedTopic.decode}.
   */
  async batchRead(maxBytes: number, checkpoint = true): Promise<TypedEntry<T>[]> {
    const entries = await this.wal.batchRead(this.topic, maxBytes, checkpoint);
    return entries.map((e) => this.decode(e));
  }

  /**
   * Like {@link Walrus.fetch} (`maxBytes` counts encoded bytes): the bulk read, as a
   * {@link TypedRecordBatch} that decodes nothing until asked (`value(i)`, `at(i)`,
   * iteration). Unlike `batchRead`, an entry that is not a typed record does not fail the
   * read: decoding that entry throws `ERR_WALRUS_DECODE`, and the others still decode.
   */
  async fetch(options?: FetchOptions): Promise<TypedRecordBatch<T>> {
    return new TypedRecordBatch<T>(await this.wal.fetch(this.topic, options), this.codec);
  }

  /** Like {@link Walrus.iterate}, decoded: replays from `from` without touching the cursor. */
  iterate(from = 0): AsyncIterableIterator<TypedEntry<T>> {
    return this.decoded(this.wal.iterate(this.topic, from));
  }

  /** Like {@link Walrus.subscribe}, decoded: consumes from the cursor and waits for new values. */
  subscribe(options?: SubscribeOptions): AsyncIterableIterator<TypedEntry<T>> {
    return this.decoded(this.wal.subscribe(this.topic, options));
  }

  /** Decodes an entry of this topic read through the byte API. */
  decode(entry: Entry): TypedEntry<T> {
    return { topic: entry.topic, offset: entry.offset, value: this.codec.decode(entry.topic, entry.offset, entry.data) as T };
  }

  private async *decoded(source: AsyncIterableIterator<Entry>): AsyncIterableIterator<TypedEntry<T>> {
    for await (const e of source) yield this.decode(e);
  }
}

/**
 * Entries read by {@link TypedTopic.fetch}: a {@link RecordBatch} whose values are decoded
 * when asked for. `value(i)` decodes entry `i` each time it is called (keep the result to
 * use it twice); an entry that is not a typed record throws `ERR_WALRUS_DECODE` there, with
 * `topic` and `offset`, and only there. Offsets, payloads and indexes are as in
 * RecordBatch: entry `i` has offset `firstOffset + i`.
 *
 * @typeParam T - the type of the values, for the compiler only: decoding does not check it.
 */
export class TypedRecordBatch<T = unknown> implements Iterable<TypedEntry<T>> {
  /** @internal */
  constructor(
    /** The batch of encoded entries this one decodes. */
    readonly records: RecordBatch,
    private readonly codec: Codec,
  ) {}

  /** The topic the entries belong to. */
  get topic(): string {
    return this.records.topic;
  }

  /** The number of entries (0 when there was nothing to read). */
  get length(): number {
    return this.records.length;
  }

  /** The offset of the first entry; -1 when the batch is empty. */
  get firstOffset(): number {
    return this.records.firstOffset;
  }

  /** The encoded payload bytes of all entries together. */
  get byteLength(): number {
    return this.records.byteLength;
  }

  /** The offset of entry `i`. RangeError unless `0 <= i < length`. */
  offset(i: number): number {
    return this.records.offset(i);
  }

  /** The value of entry `i`, decoded now. RangeError unless `0 <= i < length`. */
  value(i: number): T {
    const data = this.records.payload(i);
    return this.codec.decode(this.records.topic, this.records.offset(i), data) as T;
  }

  /**
   * Entry `i` as a {@link TypedEntry}, decoded now. As {@link RecordBatch.at}: a negative
   * `i` counts from the end, and an index outside the batch gives `undefined`.
   */
  at(i: number): TypedEntry<T> | undefined {
    const e = this.records.at(i);
    return e === undefined ? undefined : { topic: e.topic, offset: e.offset, value: this.codec.decode(e.topic, e.offset, e.data) as T };
  }

  /** The entries in order, each decoded as the iteration reaches it. */
  *[Symbol.iterator](): IterableIterator<TypedEntry<T>> {
    for (let i = 0; i < this.records.length; i++) yield { topic: this.records.topic, offset: this.records.offset(i), value: this.value(i) };
  }

  /** The values in order, each decoded as the iteration reaches it. */
  *values(): IterableIterator<T> {
    for (let i = 0; i < this.records.length; i++) yield this.value(i);
  }

  /**
   * Ends the batch, as {@link RecordBatch.release}: its buffers serve later reads, and it is
   * empty afterwards (values decoded before stay as they are: decoding copies).
   */
  release(): void {
    this.records.release();
  }
}
