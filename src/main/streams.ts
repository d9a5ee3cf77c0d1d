/**
 * Node streams over a topic: a Writable that appends (one chunk, one entry) and a Readable
 * that consumes like `subscribe` (cursor-advancing, live tail), so that
 * `stream.pipeline(wal.createReadStream('in'), transform, wal.createWriteStream('out'))`
 * works end to end.
 */
import { Readable, Writable } from 'node:stream';
import { invalidArgType, invalidArgValue, outOfRange } from '../shared/errors.js';
import type { TypedEntry, TypedTopic } from './records/typed.js';
import { MAX_BATCH_ENTRIES } from './limits.js';
import type { Entry } from './types.js';

/** Options of {@link Walrus.createWriteStream}. */
export interface WriteStreamOptions {
  /**
   * `'bytes'` (default): each chunk is a `string` or `Uint8Array`, stored as is.
   * `'values'`: each chunk is any JavaScript value (not `null`, which object-mode streams
   * refuse), stored as a typed record (see {@link Walrus.typed}).
   */
  mode?: 'bytes' | 'values';
  /**
   * `true`: a write's callback (and `'finish'`) come only once its entries are durable:
   * the entries of one `_writev` share one `sync()` (group commit). Default `false`:
   * callbacks come at enqueue, like `append`, and durability follows the fsync schedule.
   */
  sync?: boolean;
  /** Chunks buffered in the stream before `write()` returns false. Default: 16. */
  highWaterMark?: number;
  /** Aborting it destroys the stream with an AbortError. */
  signal?: AbortSignal;
}

/** Options of {@link Walrus.createReadStream}. */
export interface ReadStreamOptions {
  /** `'bytes'` (default): the stream yields {@link Entry} objects. `'values'`: decoded {@link TypedEntry} objects. */
  mode?: 'bytes' | 'values';
  /**
   * Entries buffered in the stream. Default: 16. Each refill consumes (checkpoints) at most
   * the room left, so at most this many entries are taken from the log and not yet read.
   */
  highWaterMark?: number;
  /**
   * `true` (default): a live tail that waits for new entries when caught up and ends only
   * when the instance closes. `false`: the stream ends once it has consumed everything there
   * is (a queue drained, a pipeline that finishes).
   */
  live?: boolean;
  /** Payload bytes one refill reads at most (at least one entry is always read). Default: 1 MiB. */
  maxBytes?: number;
  /** Aborting it destroys the stream with an AbortError. */
  signal?: AbortSignal;
}

/** What the write stream needs from its instance (a Walrus): appends, sync and drain. */
export interface AppendTarget {
  batchAppend(topic: string, entries: readonly (Uint8Array | string)[]): number;
  sync(): Promise<void>;
  drain(): Promise<void>;
}

/** What the read stream needs from its instance: the next checkpointed batch, waiting when caught up. */
export interface TailSource {
  /**
   * Up to `maxEntries` entries from the cursor; when there are none, waits for appends
   * (`live`) or returns null; null once the instance closes.
   */
  next(maxEntries: number, maxBytes: number, live: boolean, signal: AbortSignal): Promise<Entry[] | null>;
}

function mode(options: { mode?: unknown }): 'bytes' | 'values' {
  const m = options.mode ?? 'bytes';
  if (m !== 'bytes' && m !== 'values') throw invalidArgValue('options.mode', m, "must be 'bytes' or 'values'");
  return m;
}

function positive(v: unknown, name: string, dflt: number): number {
  if (v === undefined) return dflt;
  if (typeof v !== 'number') throw invalidArgType(name, 'of type number', v);
  if (!Number.isSafeInteger(v) || v < 1) throw outOfRange(name, 'a positive safe integer', v);
  return v;
}

function signalOf(options: { signal?: unknown }): AbortSignal | undefined {
  const s = options.signal;
  if (s !== undefined && !(s instanceof AbortSignal)) throw invalidArgType('options.signal', 'an instance of AbortSignal', s);
  return s;
}

function checkOptions(options: unknown): Record<string, unknown> {
  if (options === undefined) return {};
  if (typeof options !== 'object' || options === null) throw invalidArgType('options', 'of type object', options);
  return options as Record<string, unknown>;
}

/**
 * The Writable behind createWriteStream. Backpressure is the stream's own (write() returns
 * false once highWaterMark chunks wait) plus the engine's: a chunk's callback waits while the
 * shard's ring is full (ERR_WALRUS_BACKPRESSURE, then `wal.drain()`, then the same entries
 * again, nothing written twice), so a producer that honours write()'s return value and
 * 'drain' never sees ERR_WALRUS_BACKPRESSURE and never grows memory without bound.
 */
class WalWriteStream extends Writable {
  /** Times an append met a full ring and waited for wal.drain(). */
  backpressureWaits = 0;

  constructor(
    private readonly wal: AppendTarget,
    private readonly append: (chunks: unknown[]) => number,
    private readonly durable: boolean,
    highWaterMark: number,
    signal: AbortSignal | undefined,
  ) {
    super({ objectMode: true, highWaterMark, ...(signal ? { signal } : {}) });
  }

  override _write(chunk: unknown, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.put([chunk]).then(() => cb(), cb);
  }

  override _writev(chunks: { chunk: unknown }[], cb: (err?: Error | null) => void): void {
    this.put(chunks.map((c) => c.chunk)).then(() => cb(), cb);
  }

  override _final(cb: (err?: Error | null) => void): void {
    if (!this.durable) return cb();
    this.wal.sync().then(() => cb(), cb);
  }

  /** Appends `chunks` in batches of at most MAX_BATCH_ENTRIES (each atomic), then syncs if asked. */
  private async put(chunks: unknown[]): Promise<void> {
    for (let i = 0; i < chunks.length; i += MAX_BATCH_ENTRIES) {
      const group = chunks.slice(i, i + MAX_BATCH_ENTRIES);
      for (;;) {
        try {
          this.append(group);
          break;
        } catch (err) {
          if ((err as { code?: string }).code !== 'ERR_WALRUS_BACKPRESSURE') throw err;
          this.backpressureWaits++;
          await this.wal.drain();
        }
      }
    }
    if (this.durable) await this.wal.sync();
  }
}

export function createWriteStream(wal: AppendTarget, topic: string, typed: () => TypedTopic, options: unknown): Writable & { backpressureWaits: number } {
  const o = checkOptions(options);
  const m = mode(o);
  if (o.sync !== undefined && typeof o.sync !== 'boolean') throw invalidArgType('options.sync', 'of type boolean', o.sync);
  const hwm = positive(o.highWaterMark, 'options.highWaterMark', 16);
  const signal = signalOf(o);
  const t = m === 'values' ? typed() : null;
  const append = t ? (chunks: unknown[]) => t.batchAppend(chunks) : (chunks: unknown[]) => wal.batchAppend(topic, chunks as (string | Uint8Array)[]);
  return new WalWriteStream(wal, append, o.sync === true, hwm, signal);
}

/**
 * The Readable behind createReadStream: refills from the topic's cursor with checkpointing
 * reads of at most the room left in its buffer, waits for appends when caught up, ends when
 * the instance closes, and stops waiting at once when destroyed or aborted.
 */
class WalReadStream extends Readable {
  private reading = false;
  private readonly stop = new AbortController();

  constructor(
    private readonly source: TailSource,
    private readonly toChunk: (e: Entry) => unknown,
    private readonly maxBytes: number,
    private readonly live: boolean,
    highWaterMark: number,
    signal: AbortSignal | undefined,
  ) {
    super({ objectMode: true, highWaterMark, ...(signal ? { signal } : {}) });
  }

  override _read(): void {
    if (this.reading) return;
    this.reading = true;
    void this.pump();
  }

  private async pump(): Promise<void> {
    try {
      for (;;) {
        const room = Math.max(1, this.readableHighWaterMark - this.readableLength);
        const batch = await this.source.next(room, this.maxBytes, this.live, this.stop.signal);
        if (this.destroyed) return;
        if (batch === null) {
          this.push(null);
          return;
        }
        let more = true;
        for (const e of batch) more = this.push(this.toChunk(e));
        if (!more) return;
      }
    } catch (err) {
      if (!this.destroyed) this.destroy(err as Error);
    } finally {
      this.reading = false;
    }
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.stop.abort();
    cb(err);
  }
}

export function createReadStream(source: TailSource, typed: () => TypedTopic, options: unknown): Readable {
  const o = checkOptions(options);
  const m = mode(o);
  const hwm = positive(o.highWaterMark, 'options.highWaterMark', 16);
  const maxBytes = positive(o.maxBytes, 'options.maxBytes', 1024 * 1024);
  if (o.live !== undefined && typeof o.live !== 'boolean') throw invalidArgType('options.live', 'of type boolean', o.live);
  const signal = signalOf(o);
  const t = m === 'values' ? typed() : null;
  const map = t ? (e: Entry): TypedEntry<unknown> => t.decode(e) : (e: Entry): Entry => e;
  return new WalReadStream(source, map, maxBytes, o.live !== false, hwm, signal);
}
