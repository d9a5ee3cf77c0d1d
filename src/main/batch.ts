/**
 * RecordBatch: what `fetch` returns. It keeps the shard worker's read reply as it arrived
 * (the transferred chunks and the entry table, READ_ENTRY_FIELDS numbers per entry, see
 * shared/messages.ts) and builds nothing per entry until asked: `offset(i)` reads the
 * table, `payload(i)` makes a Buffer view of a chunk (no copy), `at(i)` and the iterator
 * make an Entry. A leaf module (walrus.ts and records/typed.ts import it).
 */
import { invalidArgType, outOfRange } from '../shared/errors.js';
import { READ_ENTRY_FIELDS } from '../shared/messages.js';
import type { Entry } from './types.js';

const NO_CHUNKS: ArrayBuffer[] = [];
const NO_ENTRIES = new Float64Array(0);

/**
 * Entries read by {@link Walrus.fetch}: consecutive entries of one topic, in order, held as
 * the buffers the shard worker read them into. Nothing is allocated per entry until a method
 * asks for it, so a processor that handles many entries at once pays only for what it
 * touches.
 *
 * Entry `i` (0 <= i < `length`) has offset `firstOffset + i`: a read from the cursor
 * returns a run of consecutive offsets. `payload(i)` is a view of the buffer the worker read
 * the entry into, not a copy: it stays valid for as long as you keep it, until
 * {@link RecordBatch.release}, and keeping it keeps that whole buffer, neighbouring entries
 * included, in memory; copy it (`Buffer.from(batch.payload(i))`) to keep one payload for long.
 *
 * A consumer done with a batch calls `release()`: its buffers go back to the shard worker,
 * which reads later entries into them rather than into new memory (new memory costs a page
 * fault per 4 KiB the first time it is written, as much as the read itself). Without it the
 * garbage collector frees the buffers as usual.
 *
 * ```ts
 * const batch = await wal.fetch('events', { maxBytes: 4 << 20 });
 * let bytes = 0;
 * for (const data of batch.payloads()) bytes += data.length;
 * console.log(batch.length, batch.firstOffset, bytes === batch.byteLength);
 * batch.release(); // done with it: its memory serves the next fetch
 * ```
 */
export class RecordBatch implements Iterable<Entry> {
  private count: number;
  private bytes = -1;

  /** @internal */
  constructor(
    /** The topic the entries belong to. */
    readonly topic: string,
    private chunks: ArrayBuffer[],
    private table: Float64Array,
    /** Takes the buffers of a released batch (null: nobody does, release() only empties it). */
    private readonly recycle: ((buffers: ArrayBuffer[]) => void) | null = null,
  ) {
    this.count = table.length / READ_ENTRY_FIELDS;
  }

  /** The number of entries (0 when there was nothing to read, and once released). */
  get length(): number {
    return this.count;
  }

  /**
   * Ends the batch: its buffers go back to the shard worker for later reads. The batch is
   * then empty (`length` 0, `firstOffset` -1), and every payload taken from it before,
   * `Entry.data` included, is empty too: its memory has moved to the worker's thread (a view
   * of moved memory reads as 0 bytes, never as another read's entries). Copy what you keep
   * first. A second call does nothing.
   */
  release(): void {
    const chunks = this.chunks;
    this.chunks = NO_CHUNKS;
    this.table = NO_ENTRIES;
    this.count = 0;
    this.bytes = 0;
    if (chunks.length > 0 && this.recycle !== null) this.recycle(chunks);
  }

  /** @internal An empty batch of `topic`. */
  static empty(topic: string): RecordBatch {
    return new RecordBatch(topic, NO_CHUNKS, NO_ENTRIES);
  }

  /** The offset of the first entry; -1 when the batch is empty. */
  get firstOffset(): number {
    return this.length === 0 ? -1 : this.table[0]!;
  }

  /** The payload bytes of all entries together (computed on first use). */
  get byteLength(): number {
    if (this.bytes < 0) {
      let sum = 0;
      for (let e = 3; e < this.table.length; e += READ_ENTRY_FIELDS) sum += this.table[e]!;
      this.bytes = sum;
    }
    return this.bytes;
  }

  /** The offset of entry `i` in its topic. RangeError unless `0 <= i < length`. */
  offset(i: number): number {
    return this.table[this.index(i) * READ_ENTRY_FIELDS]!;
  }

  /**
   * The payload of entry `i`: a Buffer view of the chunk it was read into (no copy).
   * RangeError unless `0 <= i < length`.
   */
  payload(i: number): Buffer {
    return this.view(this.index(i) * READ_ENTRY_FIELDS);
  }

  /**
   * Entry `i` as an {@link Entry} object, built now (its `data` is `payload(i)`). Like
   * `Array.prototype.at`, a negative `i` counts from the end (`at(-1)` is the last entry)
   * and an index outside the batch gives `undefined`. `i` must be an integer (a TypeError
   * or RangeError otherwise).
   */
  at(i: number): Entry | undefined {
    if (typeof i !== 'number') throw invalidArgType('index', 'of type number', i);
    if (!Number.isInteger(i)) throw outOfRange('index', 'an integer', i);
    const k = i < 0 ? this.length + i : i;
    if (k < 0 || k >= this.length) return undefined;
    return this.entry(k * READ_ENTRY_FIELDS);
  }

  /** The entries in order, each {@link Entry} built as the iteration reaches it. */
  *[Symbol.iterator](): IterableIterator<Entry> {
    for (let e = 0; e < this.table.length; e += READ_ENTRY_FIELDS) yield this.entry(e);
  }

  /** The payloads in order, as `payload(i)` gives them (views, no copies). */
  *payloads(): IterableIterator<Buffer> {
    for (let e = 0; e < this.table.length; e += READ_ENTRY_FIELDS) yield this.view(e);
  }

  /** @internal Every entry as an {@link Entry}, built now (what `batchRead` returns). */
  toArray(): Entry[] {
    const out = new Array<Entry>(this.length);
    for (let k = 0; k < this.length; k++) out[k] = this.entry(k * READ_ENTRY_FIELDS);
    return out;
  }

  /** `i` when it is an entry's index; a TypeError or RangeError naming `index` otherwise. */
  private index(i: number): number {
    // The common case first: `i >>> 0 === i` holds only for integers in [0, 2^32).
    if (i >>> 0 === i && i < this.length) return i;
    if (typeof i !== 'number') throw invalidArgType('index', 'of type number', i);
    throw outOfRange('index', this.length === 0 ? 'an index of an entry, and the batch is empty' : `an integer from 0 to ${this.length - 1}`, i);
  }

  /** The payload of the entry whose fields start at `e` in the table. */
  private view(e: number): Buffer {
    const t = this.table;
    return Buffer.from(this.chunks[t[e + 1]!]!, t[e + 2]!, t[e + 3]!);
  }

  private entry(e: number): Entry {
    return { topic: this.topic, offset: this.table[e]!, data: this.view(e) };
  }
}
