/**
 * The public Walrus class: the API of docs/api.md, each method with its documentation
 * comment (about a third of this file), checking its arguments and handing the work on:
 * appends to the shard's ring (client/appender.ts through client/shard.ts), reads and
 * commits to the shard worker (client/shard.ts; `fetch` wraps the reply in batch.ts's
 * RecordBatch), waits for new entries to subscription.ts,
 * typed records and streams to records/ and streams.ts. Over 400 lines because the class is
 * the API and its documentation; every method is short.
 */
import { randomUUID } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { type IoPath, native, resolveIoPath } from '../shared/native.js';
import { WalrusError, closedError, invalidArgType, outOfRange } from '../shared/errors.js';
import { MAX_PRODUCERS } from '../shared/format/layout.js';
import { createRing } from '../shared/ring.js';
import { DirWord, LedgerWord } from '../shared/format/layout.js';
import { TopicDirectory } from '../shared/producers/directory.js';
import { Sequencer } from '../shared/producers/sequencer.js';
import { HANDLE_KIND, type ProducerHandle, type ProducerHandleOptions, channelName } from './threads/handle.js';
import { type AttachOptions, Producer } from './threads/producer.js';
import { encodeTopic, topicHash } from '../shared/format/topic.js';
import { FETCH_DEFAULT_MAX_BYTES, MAX_BATCH_BYTES, MAX_BATCH_ENTRIES, MAX_FETCH_ENTRIES, READ_CHUNK_BYTES } from './limits.js';
import { RecordBatch } from './batch.js';
import { batchLengths, payloadLength } from './append-args.js';
import { type DirectoryLock, lockNamespace } from './lock.js';
import { namespaceDir } from './namespace.js';
import { type ResolvedOptions, type WalrusOptions, backendDefault, resolveOptions } from './options.js';
import type { ProducerTopic } from './client/producer.js';
import { ShardClient } from './client/shard.js';
import { CloseSignal, type Watchable, abortError, notifyAppend, waitForAppend } from './subscription.js';
import { INSTANCE_CLOSED, LIVE_TAIL_PEEK_BYTES, LIVE_TAIL_PEEK_ENTRIES, type LiveTail, type LiveTailCounters, TailLease, captureAppended, dropTail } from './live-tail.js';
import type { ConsumerRef, IoPolicy } from '../shared/messages.js';
import { shardsOnDisk } from '../shared/format/segment.js';
import { FileStructures, MemoryStructures } from './records/structures.js';
import { type ByteLog, TypedTopic, ValueCodec } from './records/typed.js';
import { Consumer, type ConsumerPort, checkConsumerName, checkOffset } from './consumer.js';
import { isReadConsistency } from '../shared/schedule.js';
import type { Readable, Writable } from 'node:stream';
import { type ReadStreamOptions, type WriteStreamOptions, createReadStream, createWriteStream } from './streams.js';
import type { ConsumerInfo, ConsumerOptions, Entry, FetchOptions, SubscribeOptions, WalrusStats } from './types.js';

const IO_NAMES = { always: 'io_uring', multi: 'io_uring+pwritev', never: 'pwritev' } as const;

/** The nameBytes of every recovered topic (see Walrus.open). */
const NO_NAME_BYTES = Buffer.alloc(0);

/**
 * Makes `t` a directory topic: its `next` reads the directory's counter, which every thread
 * appending to the log advances (sequencer.ts); the appender sequences it from now on.
 */
function shareTopic(t: Topic, dir: TopicDirectory, entry: number): void {
  t.entry = entry;
  Object.defineProperty(t, 'next', { get: () => dir.next(entry), set: () => {}, enumerable: true, configurable: true });
}

/** What a memory log's segments are named under in messages (they have no path). */
const MEMORY_LABEL = '(memory)';

interface Topic extends ProducerTopic, Watchable {
  name: string;
  shard: ShardClient;
  /** Copies of the entries appended while a subscriber reads the topic from memory (live-tail.ts). */
  tail: LiveTail | null;
}

/**
 * A write-ahead log organised in topics: open it with {@link Walrus.open}, append with
 * `append` / `batchAppend` / `appendAndSync`, make durable with `sync`, replay with
 * `iterate`, consume through the per-topic cursor with `readNext` / `batchRead` /
 * `subscribe` (or in bulk with `fetch`), and `close` it. Typed records:
 * {@link Walrus.typed}; Node streams: {@link Walrus.createWriteStream} and
 * {@link Walrus.createReadStream}.
 *
 * ```ts
 * const wal = await Walrus.open({ dir: './wal_files' });
 * wal.append('orders', JSON.stringify({ id: 1 }));
 * await wal.sync();
 * for await (const e of wal.iterate('orders')) console.log(e.offset, e.data.toString());
 * await wal.close();
 * ```
 */
export class Walrus {
  private readonly topicMap = new Map<string, Topic>();
  private closing: Promise<void> | null = null;
  private readonly onBeforeExit = (): void => this.flushBeforeExit();
  private readonly onExit = (): void => this.writeBeforeExit();
  /** The namespace directory (null for the memory backend). */
  private nsDir: string | null = null;
  /** Typed records' codec, created by the first typed() call. */
  private codec: ValueCodec | null = null;
  /** The producer handle and its directory, once producerHandle() made them. */
  private producers: { dir: TopicDirectory; handle: ProducerHandle } | null = null;
  /** Whether the wait for producer threads' appends (watchProducers) runs, and for which topics. */
  private watchingProducers = false;
  private readonly watched = new Set<Topic>();
  /** Subscribers reading from memory (live-tail.ts), with the topic each reads. */
  private readonly leases = new Map<TailLease, Topic>();
  private readonly tailCounters: LiveTailCounters = { fromMemory: 0, fromPeeks: 0 };

  private constructor(
    private readonly opts: ResolvedOptions,
    private readonly shards: ShardClient[],
    private readonly lock: DirectoryLock | null,
    private readonly recovered: { tornBytes: number; clean: boolean; uring: IoPolicy; io: IoPath },
    /** Prefix of the shards' channels for producer threads. */
    private readonly channel = '',
  ) {
    process.on('beforeExit', this.onBeforeExit);
    if (opts.backend !== 'memory') process.on('exit', this.onExit);
  }

  /** Opens (creating if needed) the log in `options.dir` / `options.key`. */
  static async open(options?: WalrusOptions): Promise<Walrus> {
    const opts = resolveOptions(options, backendDefault());
    const memory = opts.backend === 'memory';
    const io = resolveIoPath(opts.io);
    if (io === 'portable' && opts.backend !== 'fd') {
      const why = process.env.WALRUS_NATIVE === '0' ? 'WALRUS_NATIVE=0 is set' : opts.io === 'portable' ? "options.io is 'portable'" : 'the addon did not load in this process';
      throw new WalrusError('ERR_WALRUS_ADDON_REQUIRED', `the '${opts.backend}' backend needs the native addon, and this log would use the portable I/O path (${why})`);
    }
    // A memory log has no directory and no lock: `ns` only labels its (pathless) segments.
    const ns = memory ? MEMORY_LABEL : namespaceDir(opts.dir, opts.key);
    const lock = memory ? null : lockNamespace(ns);
    const started: ShardClient[] = [];
    const channel = `walrus-ts:${randomUUID()}`;
    try {
      const onDisk = memory ? [] : shardsOnDisk(ns);
      const count = Math.max(opts.shards, onDisk.length > 0 ? onDisk[onDisk.length - 1]! + 1 : 0);
      const mmap = opts.backend === 'mmap';
      const uring: IoPolicy = mmap || io === 'portable' || opts.ioUring === false || !native.uringSupported() ? 'never' : opts.ioUring === 'auto' ? 'multi' : 'always';
      const results = await Promise.allSettled(
        Array.from({ length: count }, (_, i) =>
          ShardClient.start(
            i,
            {
              shard: i,
              dir: ns,
              ring: createRing(opts.ringBytes),
              memory,
              fsync: opts.fsync,
              consistency: opts.consistency,
              blockBytes: opts.blockBytes,
              segmentSlots: opts.segmentBlocks,
              maxRecordBytes: opts.maxRecordBytes,
              retentionBytes: opts.retentionBytes / count,
              retentionMs: opts.retentionMs,
              uring,
              backend: mmap ? 'mmap' : 'fd',
              walrusIoPath: io,
              cpu: opts.pinWorkers ? (i + 1) % availableParallelism() : -1,
              readAhead: opts.readAhead,
              debug: opts.debug,
              channel: channelName(channel, i),
            },
            opts.backpressureMs,
          ),
        ),
      );
      for (const r of results) if (r.status === 'fulfilled') started.push(r.value.shard);
      const failed = results.find((r) => r.status === 'rejected');
      if (failed) throw (failed as PromiseRejectedResult).reason;
      let tornBytes = 0;
      let clean = true;
      const wal = new Walrus(opts, started, lock, { tornBytes: 0, clean: true, uring, io }, channel);
      for (const r of results) {
        const { shard, ready } = (r as PromiseFulfilledResult<Awaited<ReturnType<typeof ShardClient.start>>>).value;
        tornBytes += ready.tornBytes;
        clean &&= ready.cleanShutdown;
        // A worker the kernel refused a ring (io_uring_setup: EMFILE under a low ulimit -n)
        // writes through pwritev: stats() says so.
        if (!ready.uring) wal.recovered.uring = 'never';
        for (const t of ready.topics) {
          // Recovered topics are declared already: their name bytes are never framed again
          // (claimTopicDef runs only for undefined topics), so none is made per topic.
          wal.topicMap.set(t.name, { id: t.id, name: t.name, next: t.next, entry: -1, defined: true, nameBytes: NO_NAME_BYTES, shard, watchers: null, tail: null });
        }
      }
      wal.nsDir = memory ? null : ns;
      wal.recovered.tornBytes = tornBytes;
      wal.recovered.clean = clean;
      return wal;
    } catch (err) {
      await Promise.allSettled(started.map((s) => s.terminate()));
      lock?.release();
      throw err;
    }
  }

  private topicFor(topic: string): Topic {
    const t = this.topicMap.get(topic);
    if (t !== undefined) return t;
    const nameBytes = encodeTopic(topic);
    if (this.producers !== null) {
      const d = this.producers.dir.lookupOrAdd(nameBytes, topicHash(nameBytes) % this.shards.length);
      return this.adopt(topic, nameBytes, d.shard, d.id, d.entry);
    }
    const shard = this.shards[topicHash(nameBytes) % this.shards.length]!;
    const created: Topic = { id: shard.newTopicId(), name: topic, next: 0, entry: -1, defined: false, nameBytes, shard, watchers: null, tail: null };
    this.topicMap.set(topic, created);
    return created;
  }

  /**
   * The topic if it exists, without making it: in this thread's map, or (with producer
   * threads) in the directory, where a producer thread may have made it.
   */
  private known(topic: string): Topic | undefined {
    const t = this.topicMap.get(topic);
    if (t !== undefined || this.producers === null) return t;
    const nameBytes = encodeTopic(topic);
    const d = this.producers.dir.lookup(nameBytes);
    return d === null ? undefined : this.adopt(topic, nameBytes, d.shard, d.id, d.entry);
  }

  /** A directory topic new to this thread: its TopicDef goes into this thread's ring before its first entry. */
  private adopt(name: string, nameBytes: Buffer, shard: number, id: number, entry: number): Topic {
    const t: Topic = { id, name, next: 0, entry: -1, defined: false, nameBytes, shard: this.shards[shard]!, watchers: null, tail: null };
    shareTopic(t, this.producers!.dir, entry);
    this.topicMap.set(name, t);
    return t;
  }

  /** Every directory topic into this thread's map (topics(), consumers()). */
  private adoptAll(): void {
    if (this.producers === null) return;
    for (const d of this.producers.dir.topics()) {
      if (!this.topicMap.has(d.name)) this.adopt(d.name, Buffer.from(d.name, 'utf8'), d.shard, d.id, d.entry);
    }
  }

  /**
   * A handle for appending to this log from other threads: clone it to any number of them
   * (`workerData`, `postMessage`, a piscina pool's `workerData`) and call
   * {@link Walrus.attach} there. The first call makes the topic directory that every thread
   * appending to the log shares from then on (this thread too: its appends take a topic's
   * lock for a few stores, see docs/ARCHITECTURE.md, "Producer threads"); `options` apply to
   * that call, later calls return the same handle. The handle is valid until the log closes.
   */
  producerHandle(options: ProducerHandleOptions = {}): ProducerHandle {
    this.checkOpen();
    if (typeof options !== 'object' || options === null) throw invalidArgType('options', 'of type object', options);
    this.producers ??= this.shareTopics(options);
    return this.producers.handle;
  }

  private shareTopics(options: ProducerHandleOptions): { dir: TopicDirectory; handle: ProducerHandle } {
    const count = this.topicMap.size;
    const { maxTopics = Math.max(65_536, 4 * count), maxProducers = 1024, ringBytes = Math.min(this.opts.ringBytes, 4 * 1024 * 1024) } = options;
    if (!Number.isInteger(maxTopics) || maxTopics <= count || maxTopics > 2 ** 26) throw outOfRange('options.maxTopics', `an integer above the log's ${count} topics, at most ${2 ** 26}`, maxTopics);
    if (!Number.isInteger(maxProducers) || maxProducers < 1 || maxProducers > MAX_PRODUCERS) throw outOfRange('options.maxProducers', `an integer from 1 to ${MAX_PRODUCERS}`, maxProducers);
    if (!Number.isInteger(ringBytes) || ringBytes < 65_536 || ringBytes > this.opts.ringBytes || (ringBytes & (ringBytes - 1)) !== 0) {
      throw outOfRange('options.ringBytes', `a power of two from 65536 to the log's ringBytes (${this.opts.ringBytes})`, ringBytes);
    }
    let idBase = 1;
    for (const s of this.shards) idBase = Math.max(idBase, s.peekTopicId());
    // Ledger 0 is this thread's; producers take 1 and up.
    const dir = TopicDirectory.create(maxTopics, maxProducers + 1, this.shards.length, idBase);
    for (const t of this.topicMap.values()) {
      const nameBytes = t.nameBytes.length > 0 ? t.nameBytes : Buffer.from(t.name, 'utf8');
      // A topic with no entry published yet (its TopicDef neither) takes a directory id.
      const d = t.defined ? dir.lookupOrAdd(nameBytes, t.shard.index, t.id, t.next) : dir.lookupOrAdd(nameBytes, t.shard.index, -1, 0);
      t.id = d.id;
      shareTopic(t, dir, d.entry);
      // Live tails hold only this thread's appends: their subscribers go back to the worker
      // (woken, to look again).
      dropTail(t);
      if (t.watchers !== null) notifyAppend(t);
    }
    Atomics.store(dir.ledgers, dir.ledgerWord(0, LedgerWord.Taken), 1);
    const sequencer = new Sequencer(dir, 0, (k) => this.shards[k]!.wake());
    for (const s of this.shards) s.share(sequencer);
    const handle: ProducerHandle = {
      kind: HANDLE_KIND,
      version: 1,
      directory: dir.sab,
      rings: this.shards.map((s) => s.ring),
      channel: this.channel,
      maxRecordBytes: this.opts.maxRecordBytes,
      backpressureMs: this.opts.backpressureMs,
      ringBytes,
    };
    return { dir, handle };
  }

  /**
   * In another thread: a {@link Producer} appending to the log whose
   * {@link Walrus.producerHandle} `handle` is, with the arguments, errors and guarantees of
   * this class's `append`, `batchAppend`, `appendAndSync`, `sync`, `flush`, `drain`.
   *
   * ```ts
   * // main thread
   * const wal = await Walrus.open({ dir: './wal_files' });
   * const pool = new Piscina({ filename: './task.mjs', workerData: { wal: wal.producerHandle() } });
   * // task.mjs
   * const producer = Walrus.attach(workerData.wal);
   * export default (order) => producer.append('orders', JSON.stringify(order));
   * ```
   */
  static attach(handle: ProducerHandle, options?: AttachOptions): Producer {
    return new Producer(handle, options);
  }

  private checkOpen(): void {
    if (this.closing) throw closedError();
  }

  /**
   * Appends one entry; returns its offset in the topic. Synchronous: returns once the entry
   * is in the shard's ring (the worker writes it to the files soon after). When the ring is
   * full because the disk is behind, it blocks until there is room (see the
   * `backpressureMs` option, which can bound that wait; past the bound it throws
   * ERR_WALRUS_BACKPRESSURE with nothing written).
   */
  append(topic: string, data: Uint8Array | string): number {
    this.checkOpen();
    if (typeof topic !== 'string') throw invalidArgType('topic', 'of type string', topic);
    // The arguments in order: an invalid topic name is refused before the payload's size.
    const known = this.topicMap.get(topic);
    if (known === undefined) encodeTopic(topic);
    const len = payloadLength(data, 'data', this.opts.maxRecordBytes);
    const t = known ?? this.topicFor(topic);
    const offset = t.shard.appendOne(t, data, len);
    if (t.tail !== null) captureAppended(t, offset, [data], t.shard.publishedTarget());
    if (t.watchers !== null) notifyAppend(t);
    return offset;
  }

  /**
   * Appends up to 2,000 entries (4 GiB, {@link MAX_BATCH_BYTES}) atomically: after any crash
   * either all of them are recovered or none. Returns the offset of the first (for `[]`, the
   * next offset). Waits on a full ring as `append` does.
   */
  batchAppend(topic: string, entries: readonly (Uint8Array | string)[]): number {
    this.checkOpen();
    if (typeof topic !== 'string') throw invalidArgType('topic', 'of type string', topic);
    const known = this.topicMap.get(topic);
    if (known === undefined) encodeTopic(topic);
    const { lens, ringBytes } = batchLengths(entries, this.opts.maxRecordBytes);
    const t = known ?? this.topicFor(topic);
    if (entries.length === 0) return t.next;
    const first = t.shard.appendBatch(t, entries, lens, ringBytes);
    if (t.tail !== null) captureAppended(t, first, entries, t.shard.publishedTarget());
    if (t.watchers !== null) notifyAppend(t);
    return first;
  }

  /** Resolves once every entry appended before the call is on stable storage, in every shard. */
  async sync(): Promise<void> {
    this.checkOpen();
    // Cursor records of atLeastOnce reads are not ring positions: they need their own fsync
    // when nothing was appended since the last one (found by the power-loss crash cycles).
    // Entries live tails delivered count as such reads: reported first.
    for (const l of this.leases.keys()) l.report();
    await Promise.all(this.shards.flatMap((s) => [s.waitDurable(), s.syncCursors()]));
  }

  /** Appends, then resolves with the offset once the entry is durable. */
  async appendAndSync(topic: string, data: Uint8Array | string): Promise<number> {
    const offset = this.append(topic, data);
    await this.topicMap.get(topic)!.shard.waitDurable();
    return offset;
  }

  /**
   * Resolves once every entry appended before the call has been written to the files (handed
   * to the kernel), without waiting for an fsync: it survives a crash of this process, not a
   * power loss. Use `sync()` for durability.
   */
  async flush(): Promise<void> {
    this.checkOpen();
    await Promise.all(this.shards.map((s) => s.waitWritten()));
  }

  /** Resolves when every shard has room in its ring again (after ERR_WALRUS_BACKPRESSURE). */
  async drain(): Promise<void> {
    this.checkOpen();
    await Promise.all(this.shards.map((s) => s.waitRoom()));
  }

  /**
   * Replays `topic` from offset `from` up to its end as it was when `iterate` was called,
   * without touching its cursor. Entries that were consumed and whose segment files were
   * deleted are skipped: the replay starts at the first entry still stored.
   */
  iterate(topic: string, from = 0): AsyncIterableIterator<Entry> {
    this.checkOpen();
    if (typeof from !== 'number') throw invalidArgType('from', 'of type number', from);
    if (!Number.isSafeInteger(from) || from < 0) throw outOfRange('from', 'a non-negative safe integer', from);
    const t = this.known(topic);
    if (t === undefined) encodeTopic(topic);
    const end = t?.next ?? 0;
    return this.replay(t, from, end);
  }

  private async *replay(t: Topic | undefined, from: number, end: number): AsyncIterableIterator<Entry> {
    if (!t) return;
    let next = from;
    while (next < end) {
      this.checkOpen();
      const r = await t.shard.read(t.id, next, Math.min(MAX_BATCH_ENTRIES, end - next), READ_CHUNK_BYTES);
      const entries = new RecordBatch(t.name, r.data, r.entries).toArray();
      // Nothing from `next` on: the rest up to `end` was consumed and its segments deleted.
      if (entries.length === 0) return;
      for (const e of entries) {
        if (next >= end) break;
        yield e;
        next = e.offset + 1;
      }
    }
  }

  /**
   * The next entry at the topic's read cursor, or null when there is none. With
   * `checkpoint` (the default) the cursor advances past it; without, it is a peek that
   * commits nothing. What a crash does to the entry depends on `consistency`:
   *
   * - `StrictlyAtOnce`: the read resolves only once its cursor advance is durable, so the
   *   entry is never returned again, and the read in flight at a crash is at-most-once (its
   *   entry is consumed before the caller has it). For processing that must not lose work:
   *   peek with `readNext(topic, false)`, process, then checkpoint with `readNext(topic)`.
   * - `atLeastOnce(n)`: the entry is committed as consumed only when the next checkpointing
   *   read of the topic (or {@link Walrus.commit}) comes; after a crash at most n - 1 entries
   *   plus the last read's are delivered again, none is skipped (docs/DURABILITY.md).
   */
  async readNext(topic: string, checkpoint = true): Promise<Entry | null> {
    return this.readNextAs(null, topic, checkpoint);
  }

  private async readNextAs(ref: ConsumerRef | null, topic: string, checkpoint: boolean): Promise<Entry | null> {
    const { batch } = await this.takeAt(topic, 1, Number.MAX_SAFE_INTEGER, checkpoint, ref);
    return batch.at(0) ?? null;
  }

  /**
   * Entries in order from the topic's read cursor: up to `maxBytes` of payload or 2,000
   * entries, and at least one when any is available even if it alone exceeds `maxBytes`;
   * `[]` when none. With `checkpoint` (the default) the cursor advances past them; without,
   * it is a peek. Across a crash, like {@link Walrus.readNext}: under `StrictlyAtOnce` the
   * batch in flight is at-most-once; under `atLeastOnce(n)` a batch is committed by the next
   * checkpointing read (or `commit`), and at most n - 1 entries plus the last batch are
   * delivered again.
   */
  async batchRead(topic: string, maxBytes: number, checkpoint = true): Promise<Entry[]> {
    return this.batchReadAs(null, topic, maxBytes, checkpoint);
  }

  private async batchReadAs(ref: ConsumerRef | null, topic: string, maxBytes: number, checkpoint: boolean): Promise<Entry[]> {
    if (typeof maxBytes !== 'number') throw invalidArgType('maxBytes', 'of type number', maxBytes);
    if (!Number.isSafeInteger(maxBytes) || maxBytes < 0) throw outOfRange('maxBytes', 'a non-negative safe integer', maxBytes);
    return this.consume(topic, MAX_BATCH_ENTRIES, maxBytes, checkpoint, ref);
  }

  /**
   * The bulk form of {@link Walrus.batchRead}: entries in order from the topic's read cursor,
   * as one {@link RecordBatch} that allocates nothing per entry until asked (`offset(i)`,
   * `payload(i)` views, `at(i)`, iteration). For processors that handle many entries at
   * once. Up to `options.maxBytes` of payload (default 1 MiB) and `options.maxEntries`
   * entries (default and most {@link MAX_FETCH_ENTRIES}, 65,536); at least one entry when
   * any is available, even if it alone exceeds `maxBytes`; an empty batch (`length` 0) when
   * none. With `options.checkpoint` (the default) the cursor advances past the entries;
   * without, it is a peek.
   *
   * The same read as `batchRead` (one request to the shard worker, the same cursor): reads
   * of a topic by `fetch`, `batchRead`, `readNext` and `subscribe` take turns on its
   * cursor, none returning an entry another checkpointing read returned. Across a crash,
   * like `batchRead`: under `StrictlyAtOnce` the batch resolves once its cursor advance is
   * durable and the batch in flight is at-most-once; under `atLeastOnce(n)` a batch is
   * committed by the next checkpointing read of the topic (or {@link Walrus.commit}), and
   * at most n - 1 entries plus the last batch are delivered again. A record that fails its
   * checksum rejects the whole call with `ERR_WALRUS_CORRUPT` (its `file` and `offset`), and
   * the cursor does not pass it.
   *
   * ```ts
   * const batch = await wal.fetch('events', { maxBytes: 4 << 20 });
   * for (let i = 0; i < batch.length; i++) handle(batch.offset(i), batch.payload(i));
   * ```
   */
  async fetch(topic: string, options: FetchOptions = {}): Promise<RecordBatch> {
    return this.fetchAs(null, topic, options);
  }

  private async fetchAs(ref: ConsumerRef | null, topic: string, options: FetchOptions): Promise<RecordBatch> {
    this.checkOpen();
    if (typeof topic !== 'string') throw invalidArgType('topic', 'of type string', topic);
    if (typeof options !== 'object' || options === null) throw invalidArgType('options', 'of type object', options);
    const { maxBytes = FETCH_DEFAULT_MAX_BYTES, maxEntries = MAX_FETCH_ENTRIES, checkpoint = true } = options;
    if (typeof maxBytes !== 'number') throw invalidArgType('options.maxBytes', 'of type number', maxBytes);
    if (!Number.isSafeInteger(maxBytes) || maxBytes < 0) throw outOfRange('options.maxBytes', 'a non-negative safe integer', maxBytes);
    if (typeof maxEntries !== 'number') throw invalidArgType('options.maxEntries', 'of type number', maxEntries);
    if (!Number.isInteger(maxEntries) || maxEntries < 1 || maxEntries > MAX_FETCH_ENTRIES) {
      throw outOfRange('options.maxEntries', `an integer from 1 to ${MAX_FETCH_ENTRIES}`, maxEntries);
    }
    if (typeof checkpoint !== 'boolean') throw invalidArgType('options.checkpoint', 'of type boolean', checkpoint);
    return (await this.takeAt(topic, maxEntries, maxBytes, checkpoint, ref)).batch;
  }

  /**
   * Commits every entry that checkpointing reads of `topic` returned so far, and resolves
   * once that is durable (a cursor record, fsynced). Under `atLeastOnce(n)` a read's entries
   * are otherwise committed only by the next checkpointing read: call this when the last
   * read's entries are handled and no read follows (before `close()`, which persists the
   * committed cursor and so would deliver them again). Under `StrictlyAtOnce` every
   * checkpointing read has already committed, durably, so this only waits for that.
   */
  async commit(topic: string): Promise<void> {
    return this.commitAs(null, topic, undefined);
  }

  private async commitAs(ref: ConsumerRef | null, topic: string, offset: number | undefined): Promise<void> {
    this.checkOpen();
    if (typeof topic !== 'string') throw invalidArgType('topic', 'of type string', topic);
    if (offset !== undefined) checkOffset(offset, 'offset');
    const t = this.known(topic);
    if (t === undefined) {
      encodeTopic(topic);
      return;
    }
    this.endLeases(t, ref);
    await t.shard.commit(t.id, ref, offset);
  }

  private async consume(topic: string, maxEntries: number, maxBytes: number, checkpoint: unknown, ref: ConsumerRef | null = null): Promise<Entry[]> {
    return (await this.takeAt(topic, maxEntries, maxBytes, checkpoint, ref)).batch.toArray();
  }

  /**
   * One read from where the consumer (null: the default one) stands in `topic` (what
   * readNext, batchRead, fetch and subscribe share): the reply kept whole, and where the
   * consumer's next checkpointing read starts once this one is done (for a peek: where it
   * read). Its callers await it directly, not through another async function: each one in
   * between cost a read about 600 bytes of promises and frames on the main thread (what the
   * main thread allocates per readNext in test/scale.test.ts's consume phase, the test's own
   * checks included, went from about 5.9 to 4.7 KB without two of them).
   */
  private async takeAt(topic: string, maxEntries: number, maxBytes: number, checkpoint: unknown, ref: ConsumerRef | null, readAhead = true): Promise<{ batch: RecordBatch; next: number }> {
    this.checkOpen();
    if (typeof topic !== 'string') throw invalidArgType('topic', 'of type string', topic);
    if (typeof checkpoint !== 'boolean') throw invalidArgType('checkpoint', 'of type boolean', checkpoint);
    const t = this.known(topic);
    if (t === undefined) {
      encodeTopic(topic);
      return { batch: RecordBatch.empty(topic), next: 0 };
    }
    // A subscriber delivering this consumer's entries from memory stops (what it delivered
    // reaches the worker before this read): the two take turns through the worker. A peek
    // only needs what was delivered reported.
    if (checkpoint) this.endLeases(t, ref);
    else this.reportLeases();
    const r = await t.shard.consume(t.id, maxEntries, maxBytes, checkpoint, ref, readAhead);
    return { batch: new RecordBatch(t.name, r.data, r.entries, t.shard.recycle), next: r.next };
  }

  /**
   * Sends the live-tail leases of consumer `ref` (null: the default one) on `t` (all topics:
   * `t` null) back to reading from the worker, reporting what they delivered.
   */
  private endLeases(t: Topic | null, ref: ConsumerRef | null | string): void {
    const name = typeof ref === 'string' ? ref : (ref?.name ?? null);
    for (const [l, lt] of this.leases) if ((t === null || lt === t) && l.consumer === name) l.suspend();
  }

  /**
   * Consumes `topic` from its cursor like `readNext(topic, true)`, waiting for new entries
   * instead of ending. Rejects with an AbortError when `options.signal` aborts; ends when
   * the instance closes.
   */
  subscribe(topic: string, options: SubscribeOptions = {}): AsyncIterableIterator<Entry> {
    return this.subscribeAs(null, topic, options);
  }

  private subscribeAs(ref: ConsumerRef | null, topic: string, options: SubscribeOptions): AsyncIterableIterator<Entry> {
    this.checkOpen();
    if (typeof topic !== 'string') throw invalidArgType('topic', 'of type string', topic);
    if (typeof options !== 'object' || options === null) throw invalidArgType('options', 'of type object', options);
    const { signal } = options;
    if (signal !== undefined && !(signal instanceof AbortSignal)) throw invalidArgType('options.signal', 'an instance of AbortSignal', signal);
    return this.tail(this.topicFor(topic), signal, ref);
  }

  /**
   * subscribe's iterator: the live tail, one entry at a time. StrictlyAtOnce: one
   * checkpointing read at a time from the worker. atLeastOnce: a lease on the topic's live
   * tail (live-tail.ts) delivers the entries appended while it runs from memory, each once
   * the worker has written it, and older ones from bulk peeks at the worker, each reported
   * to the worker as the read it stands for.
   */
  private async *tail(t: Topic, signal: AbortSignal | undefined, ref: ConsumerRef | null): AsyncIterableIterator<Entry> {
    const consistency = ref?.consistency ?? this.opts.consistency;
    // Entries other threads append never pass through this thread's memory: with a producer
    // handle, subscribers read from the worker (as StrictlyAtOnce ones always do).
    if (consistency.kind === 'atLeastOnce' && this.producers === null) yield* this.tailFromMemory(t, signal, ref);
    for (;;) {
      const batch = await this.nextBatch(t, 1, Number.MAX_SAFE_INTEGER, true, signal, ref);
      if (batch === null) return;
      yield batch[0]!;
    }
  }

  /**
   * subscribe's atLeastOnce iterator while only this thread appends: a lease on the topic's
   * live tail (see tail). Returns (the lease ended, what it delivered reported) once a
   * producer handle exists.
   */
  private async *tailFromMemory(t: Topic, signal: AbortSignal | undefined, ref: ConsumerRef | null): AsyncGenerator<Entry, void> {
    const consistency = ref?.consistency ?? this.opts.consistency;
    const closed = this.closedSignal();
    const lease = new TailLease(t, ref, consistency.kind === 'atLeastOnce' ? consistency.persistEvery : 1, this.tailCounters, (l) => this.leases.delete(l));
    this.leases.set(lease, t);
    try {
      for (;;) {
        if (this.producers !== null) return;
        const e = await lease.next(closed, signal);
        if (e === INSTANCE_CLOSED) return;
        if (e !== null) {
          yield e;
          continue;
        }
        if (signal?.aborted) throw abortError(signal);
        if (this.closing || this.producers !== null) return;
        // Entries appended after this point wake the wait below, even if the peek misses them.
        const seen = t.next;
        let r: { batch: RecordBatch; next: number };
        try {
          // No read-ahead: the next peek starts past these entries, not at them.
          r = await this.takeAt(t.name, LIVE_TAIL_PEEK_ENTRIES, LIVE_TAIL_PEEK_BYTES, false, ref, false);
        } catch (err) {
          if (this.closing && (err as { code?: string }).code === 'ERR_WALRUS_CLOSED') return;
          throw err;
        }
        if (!lease.offer(r.batch, r.next)) await waitForAppend(t, seen, closed, signal);
      }
    } finally {
      lease.end();
    }
  }

  /**
   * The live tail of `t`, for subscribe (tail) and read streams: the next checkpointing read
   * of up to `maxEntries` entries and `maxBytes` from its cursor, waiting for appends while
   * it finds none (or, when not `live`, null). Null once the instance closes; rejects with an
   * AbortError once `signal` aborts, before anything more is read.
   */
  private async nextBatch(t: Topic, maxEntries: number, maxBytes: number, live: boolean, signal: AbortSignal | undefined, ref: ConsumerRef | null = null): Promise<Entry[] | null> {
    const closed = this.closedSignal();
    for (;;) {
      if (signal?.aborted) throw abortError(signal);
      if (this.closing) return null;
      // Entries appended after this point wake the wait below, even if the read misses them.
      const seen = t.next;
      let entries: Entry[];
      try {
        entries = await this.consume(t.name, Math.min(maxEntries, MAX_BATCH_ENTRIES), maxBytes, true, ref);
      } catch (err) {
        if (this.closing && (err as { code?: string }).code === 'ERR_WALRUS_CLOSED') return null;
        throw err;
      }
      if (entries.length > 0) return entries;
      if (!live) return null;
      this.watchProducers(t);
      await waitForAppend(t, seen, closed, signal);
    }
  }

  /**
   * Producer threads' appends do not pass through this thread: while subscribers here wait,
   * producers bump the directory's AppendGen after each append (DirWord.Watching says so),
   * and this loop wakes the waiting subscribers of every topic whose counter moved.
   */
  private watchProducers(t: Watchable & { entry: number }): void {
    if (this.producers === null || t.entry < 0) return;
    this.watched.add(t as Topic);
    if (this.watchingProducers) return;
    this.watchingProducers = true;
    const h = this.producers.dir.header;
    Atomics.store(h, DirWord.Watching, 1);
    const lastNext = new Map<Topic, number>();
    void (async () => {
      // The caller registers its wait right after this call: look once that is done.
      await null;
      try {
        for (;;) {
          const gen = Atomics.load(h, DirWord.AppendGen);
          let waiting = false;
          for (const t of this.watched) {
            if (t.watchers === null) {
              this.watched.delete(t);
              lastNext.delete(t);
              continue;
            }
            waiting = true;
            const next = t.next;
            if (lastNext.get(t) !== next) {
              lastNext.set(t, next);
              notifyAppend(t);
            }
          }
          if (!waiting || this.closing) return;
          const r = Atomics.waitAsync(h, DirWord.AppendGen, gen, 250);
          if (r.async) await r.value;
        }
      } finally {
        Atomics.store(h, DirWord.Watching, 0);
        this.watchingProducers = false;
      }
    })();
  }

  /** Reports to the workers what live tails delivered so far (positions and lists then include it). */
  private reportLeases(): void {
    for (const l of this.leases.keys()) l.report();
  }

  /** Fires when close() starts. */
  private closedSignal(): CloseSignal {
    if (this.closing) this.closeSignal.fire();
    return this.closeSignal;
  }

  private readonly closeSignal = new CloseSignal();

  /**
   * A typed view of `topic`: append JavaScript values and read them back decoded (msgpack
   * with shared record structures, persisted beside the log). See {@link TypedTopic}.
   *
   * ```ts
   * const orders = wal.typed<{ id: number; at: Date }>('orders');
   * orders.append({ id: 1, at: new Date() });
   * for await (const { offset, value } of orders.iterate()) console.log(offset, value.id);
   * ```
   */
  typed<T = unknown>(topic: string): TypedTopic<T> {
    return this.typedOver<T>(this, topic);
  }

  /** A typed view of `topic` that reads through `log` (the instance, or a named consumer). */
  private typedOver<T>(log: ByteLog, topic: string): TypedTopic<T> {
    this.checkOpen();
    encodeTopic(topic);
    if (this.codec === null) this.codec = new ValueCodec(this.nsDir === null ? new MemoryStructures() : new FileStructures(this.nsDir));
    const codec = this.codec;
    return new TypedTopic<T>(log, topic, {
      // Checked first: structures are never saved into a directory this instance released.
      encode: (value) => {
        this.checkOpen();
        return codec.encode(value);
      },
      decode: (t, offset, data) => codec.decode(t, offset, data),
    });
  }

  /**
   * A Writable that appends each chunk to `topic` as one entry (object mode: a chunk is a
   * string or Uint8Array, or with `mode: 'values'` any value, stored as a typed record).
   * `write()` returns false when `highWaterMark` chunks wait; a chunk waits while the
   * shard's ring is full (the engine's backpressure, through `drain()`), so honouring
   * write()'s return value and `'drain'` bounds memory. Chunks buffered together are
   * appended as atomic batches of up to 2,000. With `sync: true` a write's callback and
   * `'finish'` come once its entries are durable. The stream errors with the append's
   * error (ERR_WALRUS_CLOSED once the instance is closed, ERR_WALRUS_IO, a TypeError for a
   * bad chunk). Ending the stream does not close the instance.
   *
   * ```ts
   * await pipeline(source, wal.createWriteStream('events', { sync: true }));
   * ```
   */
  createWriteStream(topic: string, options?: WriteStreamOptions): Writable {
    this.checkOpen();
    encodeTopic(topic);
    return createWriteStream(this, topic, () => this.typed(topic), options);
  }

  /**
   * A Readable of the entries of `topic` (object mode: {@link Entry} objects, or decoded
   * {@link TypedEntry} objects with `mode: 'values'`), consumed from the topic's cursor like
   * `subscribe`: every entry is checkpointed (under the instance's `consistency`) as it
   * enters the stream's buffer, the stream waits for new appends when caught up, ends when
   * the instance closes (or, with `live: false`, once it has consumed everything there is),
   * and is destroyed with an AbortError when `signal` aborts. Entries
   * already taken from the log but still in the buffer when the stream is destroyed are not
   * delivered again (at most `highWaterMark`; use `highWaterMark: 1` for one at a time), and
   * under `atLeastOnce` each refill commits what earlier refills took, buffered or not, so a
   * crash can skip what the stream and the pipeline behind it held: use `batchRead` or
   * `subscribe` where every entry must be handled at least once.
   */
  createReadStream(topic: string, options?: ReadStreamOptions): Readable {
    return this.createReadStreamAs(null, this, topic, options);
  }

  private createReadStreamAs(ref: ConsumerRef | null, log: ByteLog, topic: string, options: ReadStreamOptions | undefined): Readable {
    this.checkOpen();
    if (typeof topic !== 'string') throw invalidArgType('topic', 'of type string', topic);
    const t = this.topicFor(topic);
    return createReadStream({ next: (n, maxBytes, live, signal) => this.nextBatch(t, n, maxBytes, live, signal, ref) }, () => this.typedOver(log, topic), options);
  }

  /**
   * A named consumer: reads with a durable position of its own in every topic, so that
   * independent readers of the same topics never take entries from each other. See
   * {@link Consumer}. The instance's own reads (`readNext`, `batchRead`, `fetch`,
   * `subscribe`, ...) are the default consumer, unchanged.
   *
   * ```ts
   * const audit = wal.consumer('audit', { consistency: ReadConsistency.atLeastOnce(100) });
   * for await (const e of audit.subscribe('orders')) record(e);
   * ```
   */
  consumer(name: string, options: ConsumerOptions = {}): Consumer {
    this.checkOpen();
    checkConsumerName(name);
    if (typeof options !== 'object' || options === null) throw invalidArgType('options', 'of type object', options);
    const consistency = options.consistency ?? this.opts.consistency;
    if (!isReadConsistency(consistency)) throw invalidArgType('options.consistency', 'a ReadConsistency value', consistency);
    const ref: ConsumerRef = { name, consistency };
    const log: ByteLog = {
      append: (topic, data) => this.append(topic, data),
      batchAppend: (topic, entries) => this.batchAppend(topic, entries),
      appendAndSync: (topic, data) => this.appendAndSync(topic, data),
      iterate: (topic, from) => this.iterate(topic, from),
      readNext: (topic, checkpoint = true) => this.readNextAs(ref, topic, checkpoint),
      batchRead: (topic, maxBytes, checkpoint = true) => this.batchReadAs(ref, topic, maxBytes, checkpoint),
      fetch: (topic, o = {}) => this.fetchAs(ref, topic, o),
      subscribe: (topic, o = {}) => this.subscribeAs(ref, topic, o),
    };
    const port: ConsumerPort = {
      readNext: log.readNext,
      batchRead: log.batchRead,
      fetch: log.fetch,
      subscribe: log.subscribe,
      createReadStream: (topic, o) => this.createReadStreamAs(ref, log, topic, o),
      typed: (topic) => this.typedOver(log, topic),
      commit: (topic, offset) => this.commitAs(ref, topic, offset),
      seek: (topic, offset) => this.seekAs(ref, topic, offset),
      position: (topic) => this.positionAs(ref, topic),
    };
    return new Consumer(name, consistency, port);
  }

  private async seekAs(ref: ConsumerRef, topic: string, offset: number): Promise<void> {
    this.checkOpen();
    encodeTopic(topic);
    checkOffset(offset, 'offset');
    const t = this.known(topic);
    // A topic with no entry: every offset is clamped to its end, 0, where a first read starts anyway.
    if (t === undefined) return;
    this.endLeases(t, ref);
    await t.shard.seek(t.id, ref, offset);
  }

  private async positionAs(ref: ConsumerRef | null, topic: string) {
    this.checkOpen();
    encodeTopic(topic);
    const t = this.known(topic);
    if (t === undefined) return { cursor: 0, delivered: 0, start: 0, end: 0 };
    this.reportLeases();
    return t.shard.position(t.id, ref);
  }

  /**
   * The named consumers and, for each topic they have a position in, where they stand: the
   * committed position, the next read's, the lag (entries appended and not yet consumed)
   * and the entries a retention bound deleted before they were read (since this open).
   */
  async consumers(): Promise<ConsumerInfo[]> {
    this.checkOpen();
    this.adoptAll();
    const names = this.shards.map(() => new Map<number, string>());
    for (const t of this.topicMap.values()) names[this.shards.indexOf(t.shard)]!.set(t.id, t.name);
    this.reportLeases();
    const lists = await Promise.all(this.shards.map((s) => s.consumers()));
    const out = new Map<string, ConsumerInfo>();
    lists.forEach((list, k) => {
      for (const [name, topics] of list) {
        let info = out.get(name);
        if (!info) out.set(name, (info = { name, topics: [] }));
        for (const [id, committed, position, skipped, end] of topics) {
          const topic = names[k]!.get(id);
          if (topic !== undefined) info.topics.push({ topic, committed, position, lag: end - committed, skipped });
        }
      }
    });
    const sorted = [...out.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const c of sorted) c.topics.sort((a, b) => (a.topic < b.topic ? -1 : a.topic > b.topic ? 1 : 0));
    return sorted;
  }

  /**
   * Deletes named consumer `name` and its positions, durably: it no longer holds back the
   * deletion of consumed entries, and a later `consumer(name)` starts afresh. Resolves
   * (doing nothing) for a name no consumer has.
   */
  async deleteConsumer(name: string): Promise<void> {
    this.checkOpen();
    checkConsumerName(name);
    this.endLeases(null, name);
    await Promise.all(this.shards.map((s) => s.dropConsumer(name)));
  }

  /** Every topic that has at least one entry. */
  topics(): string[] {
    this.checkOpen();
    this.adoptAll();
    const out: string[] = [];
    for (const t of this.topicMap.values()) if (t.next > 0) out.push(t.name);
    return out;
  }

  /** Counters: what the last open recovered, how writes reach the kernel, per-shard I/O. */
  stats(): WalrusStats {
    this.checkOpen();
    return {
      recoveredTornBytes: this.recovered.tornBytes,
      recoveredClean: this.recovered.clean,
      io: this.recovered.io === 'portable' ? 'portable' : this.opts.backend === 'mmap' ? 'mmap' : IO_NAMES[this.recovered.uring],
      shards: this.shards.map((s) => s.stats()),
      liveTail: { ...this.tailCounters },
    };
  }

  /** Writes and fsyncs everything appended, stops the workers and releases the directory. Idempotent. */
  close(): Promise<void> {
    this.closing ??= this.doClose();
    return this.closing;
  }

  private async doClose(): Promise<void> {
    process.off('beforeExit', this.onBeforeExit);
    // What subscribers delivered from memory reaches the workers before their close, which
    // writes every committed position.
    for (const l of [...this.leases.keys()]) l.end();
    this.closeSignal.fire();
    try {
      const results = await Promise.allSettled(this.shards.map((s) => s.close()));
      const failed = results.find((r) => r.status === 'rejected');
      if (failed) throw (failed as PromiseRejectedResult).reason;
    } finally {
      // Only now: process.exit() while close() runs still waits for the rings to be written.
      process.off('exit', this.onExit);
      this.lock?.release();
    }
  }

  /**
   * The event loop is about to empty while records may still sit in a ring: write them
   * (no fsync: the schedule decides that) so a normal exit never drops appended entries.
   */
  private flushBeforeExit(): void {
    if (this.closing) return;
    for (const s of this.shards) s.writeSoon();
  }

  /**
   * process.exit() (or the end of the process) without close(): block until every shard's
   * worker has written what sits in its ring, so process.exit() right after appends keeps
   * them as a script that simply ends does (written to the files, not fsynced: the schedule's
   * pending fsync does not run). The workers still run during 'exit' listeners and are
   * stopped only after them. Bounded per shard (see writeAllSync). With a producer handle,
   * the same for what producer threads appended: this thread cannot see their rings, so each
   * worker is asked to write every ring up to its Head as of the exit (requestExitDrain).
   */
  private writeBeforeExit(): void {
    for (const s of this.shards) s.writeAllSync();
    if (this.producers === null) return;
    const requests = this.shards.map((s) => s.requestExitDrain());
    this.shards.forEach((s, k) => s.waitExitDrain(requests[k]!));
  }
}
