/**
 * One shard as the main thread sees it: the worker that owns its files (start, messages,
 * failure, close) and request/response plumbing. Appends are framed into the ring by its
 * Appender (appender.ts); waits for the worker's watermarks (durable, written, room) are
 * its Watermarks' (watermarks.ts).
 */
import { MessageChannel, type MessagePort, Worker, receiveMessageOnPort } from 'node:worker_threads';
import { WalrusError, closedError, deserializeError, type SerializedError } from '../../shared/errors.js';
import { ShardState } from '../../shared/format/layout.js';
import type { ConsumerRef, FromWorker, RecoveredTopic, ShardInit, ToWorker } from '../../shared/messages.js';
import { READ_STATS_FIELDS, unreachable } from '../../shared/messages.js';
import { RingBig, RingSlot, loadBig, wakeWorker } from '../../shared/ring.js';
import type { ReadConsistency } from '../../shared/schedule.js';
import type { Sequencer } from '../../shared/producers/sequencer.js';
import type { ShardStats } from '../types.js';
import { Appender } from './appender.js';
import { STALL_MS, type ProducerTopic, type RingProducer } from './producer.js';
import { type Pending, PendingRequests } from './requests.js';
import { Watermarks } from './watermarks.js';

const WORKER_URL = new URL('../../workers/shard-worker.js', import.meta.url);

export interface ReadReply {
  data: ArrayBuffer[];
  entries: Float64Array;
  /** A read from a consumer's position: where its next read starts (-1 otherwise). */
  next: number;
}

export interface ShardReady {
  topics: RecoveredTopic[];
  maxTopicId: number;
  tornBytes: number;
  uring: boolean;
  cleanShutdown: boolean;
}

/**
 * The host's CLI flags minus those about the main script (`-e`/`--eval`, `-p`/`--print` with
 * their code, `--input-type`): with them a worker does not start (`node --input-type=module
 * -e ...`). The rest (`--cpu-prof`, `--enable-source-maps`, ...) is kept.
 */
export function workerExecArgv(argv: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '-e' || a === '--eval' || a === '-p' || a === '--print' || a === '--input-type') i++;
    else if (!a.startsWith('--eval=') && !a.startsWith('--print=') && !a.startsWith('--input-type=')) out.push(a);
  }
  return out;
}

/** The `--conditions` / `-C` flags of `argv`, each with its value. */
function conditionFlags(argv: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if ((a === '--conditions' || a === '-C') && i + 1 < argv.length) out.push(a, argv[++i]!);
    else if (a.startsWith('--conditions=') || (a.startsWith('-C') && a.length > 2)) out.push(a);
  }
  return out;
}

function readReply(m: FromWorker): ReadReply {
  if (m.type !== 'readResult') throw new Error(`walrus-ts internal error: unexpected ${m.type} reply to a read`);
  return { data: m.data, entries: m.entries, next: m.next };
}

/**
 * Young-generation cap of a shard worker's V8 heap. V8's default lets each isolate keep up
 * to 48 MiB of short-lived garbage (three 16 MiB semispaces) resident, and a shard worker
 * that has served 50,000 reads keeps most of it: 100,000 topics on 2 shards measured
 * +386 MiB RSS after consuming them all by default, +294 MiB with 8 (each worker's heap 60
 * instead of 107 MiB). Append and batchRead throughput did not change measurably
 * (tmp benchmark of 1M 128-byte appends over 64 topics, 3 runs each, within noise).
 */
const WORKER_YOUNG_GENERATION_MB = 8;

/**
 * How long terminate() lets a worker that was asked to close exit on its own (it writes
 * and fsyncs what its ring holds first) before it stops the thread with worker.terminate().
 */
const TERMINATE_GRACE_MS = 5000;

/** Starts the worker of a shard, with the host's flags (see workerExecArgv). */
function spawnWorker(init: ShardInit): Worker {
  const options = {
    workerData: init,
    transferList: [init.failPort],
    execArgv: workerExecArgv(process.execArgv),
    stdout: false,
    stderr: false,
    resourceLimits: { maxYoungGenerationSizeMb: WORKER_YOUNG_GENERATION_MB },
  };
  try {
    return new Worker(WORKER_URL, options);
  } catch (err) {
    // Some host flags are per process and refused for a worker (`node --expose-gc` on Node
    // 20: ERR_WORKER_INVALID_EXEC_ARGV); Node does not say which, so the shard workers then
    // start with only the resolution conditions (`--conditions`, `-C`: they choose which
    // build of the addon `#walrus-addon` names, and a worker must load the one its process
    // loaded) rather than not at all.
    if ((err as { code?: string }).code !== 'ERR_WORKER_INVALID_EXEC_ARGV') throw err;
    return new Worker(WORKER_URL, { ...options, execArgv: conditionFlags(options.execArgv) });
  }
}

export class ShardClient {
  private readonly appender: Appender;
  private readonly producer: RingProducer;
  private readonly watermarks: Watermarks;
  private readonly worker: Worker;
  /** The requests not answered yet (requests.ts says why not a Map). */
  private readonly pending = new PendingRequests<FromWorker>();
  /** Waits for the worker's 'ready' (or 'openFailed') during start(). */
  private opening: Pending<FromWorker> | null = null;
  private holds = 0;
  /** Set once the shard has failed (I/O error or worker crash); appends then throw it. */
  private failure: Error | null = null;
  private exited = false;
  private readonly exitPromise: Promise<void>;
  /** Topic ids are shard-local and never reused. */
  private nextTopicId = 1;
  /** Where the worker posts its failure before it sets State to Failed. */
  private readonly failPort: MessagePort;
  /** The log's read consistency: whether checkpointing reads may leave cursor records unsynced. */
  private readonly consistency: ReadConsistency;
  /**
   * Set by atLeastOnce checkpointing reads: the worker may hold cursor records that no fsync
   * covers yet, which waitDurable (ring positions only) does not see. Cleared by syncCursors.
   */
  private cursorsUnsynced = false;
  /** The worker's read-ahead counters (ShardInit.readStats). */
  private readonly readStats: BigInt64Array;

  private constructor(
    readonly index: number,
    initWithoutPort: Omit<ShardInit, 'failPort' | 'readStats'>,
    backpressureMs: number,
  ) {
    const channel = new MessageChannel();
    this.failPort = channel.port1;
    this.failPort.unref();
    const readStats = new SharedArrayBuffer(READ_STATS_FIELDS * 8);
    this.readStats = new BigInt64Array(readStats);
    const init: ShardInit = { ...initWithoutPort, failPort: channel.port2, readStats };
    this.consistency = init.consistency;
    this.appender = new Appender(init.ring, backpressureMs, {
      index,
      failureNow: () => this.failureNow(),
      post: (msg, transfer) => this.worker.postMessage(msg, transfer),
    });
    this.producer = this.appender.producer;
    this.watermarks = new Watermarks(this.appender, {
      hold: () => this.hold(),
      release: () => this.release(),
      checkWritable: () => this.checkWritable(),
      stopped: () => this.failure ?? (this.exited ? closedError() : null),
    });
    this.worker = spawnWorker(init);
    this.worker.unref();
    this.worker.on('message', (m: FromWorker) => this.onMessage(m));
    this.worker.on('error', (err) => this.fail(new WalrusError('ERR_WALRUS_IO', `shard ${index} worker crashed: ${err.message}`, { cause: err })));
    this.exitPromise = new Promise((resolve) =>
      this.worker.once('exit', (code) => {
        this.exited = true;
        // A failure posted just before the exit is still taken (then the port is done).
        if (!this.failure && Atomics.load(this.producer.v.ctl, RingSlot.State) === ShardState.Failed) this.failureNow();
        this.failPort.close();
        if (!this.failure && code !== 0) this.fail(new WalrusError('ERR_WALRUS_IO', `shard ${index} worker exited with code ${code}`));
        this.rejectAll(this.failure ?? closedError());
        resolve();
      }),
    );
  }

  /** Starts the worker and waits for its recovery to finish. */
  static async start(index: number, init: Omit<ShardInit, 'failPort' | 'readStats'>, backpressureMs: number): Promise<{ shard: ShardClient; ready: ShardReady }> {
    const shard = new ShardClient(index, init, backpressureMs);
    shard.hold();
    try {
      const m = await new Promise<FromWorker>((resolve, reject) => {
        shard.opening = { resolve, reject };
      });
      if (m.type === 'openFailed') throw deserializeError(m.error);
      if (m.type !== 'ready') throw new Error(`walrus-ts internal error: unexpected ${m.type} during open`);
      shard.nextTopicId = m.maxTopicId + 1;
      return { shard, ready: m };
    } catch (err) {
      await shard.terminate();
      throw err;
    } finally {
      shard.release();
    }
  }

  private onMessage(m: FromWorker): void {
    switch (m.type) {
      case 'ready':
      case 'openFailed': {
        const p = this.opening;
        this.opening = null;
        p?.resolve(m);
        return;
      }
      case 'readResult':
      case 'taken':
      case 'synced':
      case 'closed':
      case 'position':
      case 'consumers':
        this.settle(m.id, m);
        return;
      case 'requestFailed': {
        const p = this.pending.take(m.id);
        if (p) {
          this.release();
          p.reject(deserializeError(m.error));
        }
        return;
      }
      case 'failed':
        this.fail(deserializeError(m.error));
        return;
      default:
        unreachable(m);
    }
  }

  private settle(id: number, m: FromWorker): void {
    const p = this.pending.take(id);
    if (!p) return;
    this.release();
    p.resolve(m);
  }

  private fail(err: Error): void {
    if (!this.failure) this.failure = err;
    this.rejectAll(this.failure);
  }

  private rejectAll(err: Error): void {
    this.watermarks.rejectAll(err);
    const opening = this.opening;
    this.opening = null;
    opening?.reject(err);
    for (const p of this.pending.takeAll()) {
      this.release();
      p.reject(err);
    }
  }

  /** Keeps the process alive while something waits on this shard. */
  private hold(): void {
    if (this.holds++ === 0 && !this.exited) this.worker.ref();
  }

  private release(): void {
    if (--this.holds === 0 && !this.exited) this.worker.unref();
  }

  /** Throws the shard's failure, if any, so appends refuse promptly. */
  private checkWritable(): void {
    if (this.failure) throw this.failure;
    if (Atomics.load(this.producer.v.ctl, RingSlot.State) !== 0) throw this.failureNow();
  }

  /**
   * The failure, once State says the shard failed: the worker posted it on the failure port
   * before setting State, so it is there to take, even when its regular 'failed' message has
   * not been delivered yet.
   */
  private failureNow(): Error {
    if (!this.failure) {
      const m = receiveMessageOnPort(this.failPort);
      if (m) this.fail(deserializeError(m.message as SerializedError));
    }
    return this.failure ?? new WalrusError('ERR_WALRUS_IO', `shard ${this.index} failed an I/O operation and refuses appends until reopened`);
  }

  /** A new topic's id in this shard. */
  newTopicId(): number {
    return this.nextTopicId++;
  }

  /** The id the next new topic of this shard would get (producerHandle: the directory's ids start above every shard's). */
  peekTopicId(): number {
    return this.nextTopicId;
  }

  /** The shard's main ring (producer threads ring its doorbell and read its State). */
  get ring(): SharedArrayBuffer {
    return this.producer.v.sab;
  }

  /** Rings the worker's doorbell. */
  wake(): void {
    wakeWorker(this.producer.v.ctl);
  }

  /** Appends of directory topics are sequenced by `sequencer` from now on (see Appender.share). */
  share(sequencer: Sequencer): void {
    this.appender.share(sequencer);
  }

  /** Appends one entry whose payload length has been validated (see Appender). */
  appendOne(t: ProducerTopic, data: Uint8Array | string, len: number): number {
    this.checkWritable();
    return this.appender.appendOne(t, data, len);
  }

  /** Appends a validated, non-empty batch atomically; returns the first offset. */
  appendBatch(t: ProducerTopic, entries: readonly (Uint8Array | string)[], lens: number[], ringBytes: number): number {
    this.checkWritable();
    return this.appender.appendBatch(t, entries, lens, ringBytes);
  }

  /** Resolves once everything published so far is durable; rejects once the shard has failed. */
  waitDurable(): Promise<void> {
    return this.watermarks.waitDurable();
  }

  /** Resolves once everything published so far is written to the files (not necessarily durable). */
  waitWritten(): Promise<void> {
    return this.watermarks.waitWritten();
  }

  /**
   * For 'beforeExit': starts writing what the ring holds (no fsync: the schedule decides
   * that) without waiting, unless the ring is empty or the shard has failed.
   */
  writeSoon(): void {
    if (this.producer.inUse() > 0 && !this.failure) void this.waitWritten().catch(() => {});
  }

  /** For a process 'exit' listener: blocks until the ring is written, boundedly (see Watermarks). */
  writeAllSync(): boolean {
    return this.watermarks.writeAllSync();
  }

  /**
   * For a process 'exit' listener when producer threads append: asks the worker to write
   * every ring up to its Head as of now (workers/write/exit-drain.ts). Returns the request's
   * number, or 0 when the shard has stopped (closed, or failed: nothing more is written).
   */
  requestExitDrain(): number {
    const ctl = this.producer.v.ctl;
    const state = Atomics.load(ctl, RingSlot.State);
    if (this.exited || (state !== ShardState.Open && state !== ShardState.Closing)) return 0;
    const request = (Atomics.add(ctl, RingSlot.ExitRequest, 1) + 1) | 0;
    wakeWorker(ctl);
    return request;
  }

  /**
   * Blocks until the worker served exit request `request`, or its close wrote every ring
   * (a close() called before the exit, not awaited); gives up, returning false, once the
   * shard has failed or its worker has reported no progress for STALL_MS.
   */
  waitExitDrain(request: number): boolean {
    if (request === 0) return false;
    const ctl = this.producer.v.ctl;
    let progress = Atomics.load(ctl, RingSlot.ExitProgress);
    let progressAt = Date.now();
    for (;;) {
      // ExitDone is stored before ExitProgress moves: a served request is seen at the latest
      // when the wait below returns.
      const seen = Atomics.load(ctl, RingSlot.ExitProgress);
      if (Atomics.load(ctl, RingSlot.ExitDone) === request) return true;
      const state = Atomics.load(ctl, RingSlot.State);
      if (state === ShardState.Closed) return true;
      if (this.exited || state === ShardState.Failed) return false;
      if (seen !== progress) {
        progress = seen;
        progressAt = Date.now();
      }
      const left = progressAt + STALL_MS - Date.now();
      if (left <= 0) return false;
      // A closing worker never serves the request and does not notify ExitProgress: look at
      // State now and then.
      Atomics.wait(ctl, RingSlot.ExitProgress, seen, Math.min(left, 10));
    }
  }

  /** Resolves when the ring is at most half full and external payloads are below their bound. */
  waitRoom(): Promise<void> {
    return this.watermarks.waitRoom();
  }

  /** Sends a request and resolves with the worker's reply. */
  private request(
    msg:
      | { type: 'read'; topicId: number; from: number; maxEntries: number; maxBytes: number }
      | { type: 'consume'; topicId: number; maxEntries: number; maxBytes: number; checkpoint: boolean; consumer: ConsumerRef | null; readAhead: boolean }
      | { type: 'taken'; topicId: number; consumer: ConsumerRef | null; from: number; to: number; ack: boolean }
      | { type: 'syncCursors' }
      | { type: 'commit'; topicId: number; consumer: ConsumerRef | null; offset?: number }
      | { type: 'seek'; topicId: number; consumer: ConsumerRef; offset: number }
      | { type: 'position'; topicId: number; consumer: ConsumerRef | null }
      | { type: 'consumers' }
      | { type: 'dropConsumer'; name: string }
      | { type: 'close' },
  ): Promise<FromWorker> {
    if (this.exited) return Promise.reject(closedError());
    this.hold();
    return new Promise((resolve, reject) => {
      const id = this.pending.add(resolve, reject);
      this.worker.postMessage({ ...msg, id } as ToWorker);
      this.wakeSoon();
    });
  }

  private wakePending = false;

  /**
   * Rings the worker's doorbell once the requests posted in this turn of the event loop are
   * all posted (a microtask), not once per request: a sleeping worker then wakes to the whole
   * burst (64 readNext calls in a loop) and answers it with one round (for StrictlyAtOnce
   * reads, one fsync), instead of waking at the first and racing the rest. The messages
   * themselves are posted at once; every request is awaited, so the microtask always runs
   * before anything waits on the answer.
   */
  private wakeSoon(): void {
    if (this.wakePending) return;
    this.wakePending = true;
    queueMicrotask(() => {
      this.wakePending = false;
      wakeWorker(this.producer.v.ctl);
    });
  }

  async read(topicId: number, from: number, maxEntries: number, maxBytes: number): Promise<ReadReply> {
    return readReply(await this.request({ type: 'read', topicId, from, maxEntries, maxBytes }));
  }

  /**
   * Reads from where the consumer (null: the default one) stands in the topic, advancing it
   * when `checkpoint` (see workers/read/consumer.ts).
   */
  async consume(topicId: number, maxEntries: number, maxBytes: number, checkpoint: boolean, consumer: ConsumerRef | null = null, readAhead = true): Promise<ReadReply> {
    const r = readReply(await this.request({ type: 'consume', topicId, maxEntries, maxBytes, checkpoint, consumer, readAhead }));
    // atLeastOnce: any checkpointing read, an empty one too, may have committed (and written
    // the cursor record of) what the read before it returned: sync() must cover it.
    if (checkpoint && (consumer?.consistency ?? this.consistency).kind !== 'strictlyAtOnce') this.cursorsUnsynced = true;
    return r;
  }

  /**
   * A live tail delivered entries [from, to) of the topic to an atLeastOnce consumer from
   * memory (main/live-tail.ts): the worker moves the consumer's position as reads would have.
   * With `ack`, resolves with the committed position last written once the cursor record this
   * queues, if any, is written; without, the message is posted and nothing answers it.
   */
  async taken(topicId: number, consumer: ConsumerRef | null, from: number, to: number, ack: boolean): Promise<number> {
    // A checkpoint of atLeastOnce reads: sync() must cover its cursor record.
    this.cursorsUnsynced = true;
    if (!ack) {
      if (this.exited) throw closedError();
      this.worker.postMessage({ type: 'taken', id: 0, topicId, consumer, from, to, ack } satisfies ToWorker);
      this.wakeSoon();
      return -1;
    }
    const m = await this.request({ type: 'taken', topicId, consumer, from, to, ack });
    if (m.type !== 'taken') throw new Error(`walrus-ts internal error: unexpected ${m.type} reply to a taken request`);
    return m.written;
  }

  /**
   * Gives the buffers of a released read reply back to the worker (moved, not copied: every
   * view of them here becomes empty). Nothing once the worker is gone.
   */
  readonly recycle = (buffers: ArrayBuffer[]): void => {
    if (this.exited) return;
    const live = buffers.filter((b) => b.byteLength > 0);
    if (live.length > 0) this.worker.postMessage({ type: 'recycle', id: 0, buffers: live } satisfies ToWorker, live);
  };

  /** The ring position that Written must reach for everything published so far to be in the files. */
  publishedTarget(): number {
    return this.producer.publishedLogical;
  }

  /** Whether everything published up to ring position `target` is written to the files. */
  writtenTo(target: number): boolean {
    return loadBig(this.producer.v.big, RingBig.Written) >= target;
  }

  /** Resolves once everything published up to ring position `target` is written to the files; rejects once the shard has failed. */
  waitWrittenTo(target: number): Promise<void> {
    return this.watermarks.waitWrittenTo(target);
  }

  /** Moves the named consumer's position in the topic, durably (see Consumers.seek). */
  async seek(topicId: number, consumer: ConsumerRef, offset: number): Promise<void> {
    await this.request({ type: 'seek', topicId, consumer, offset });
  }

  /** Where the consumer stands in the topic, and the topic's stored range. */
  async position(topicId: number, consumer: ConsumerRef | null): Promise<{ cursor: number; delivered: number; start: number; end: number }> {
    const m = await this.request({ type: 'position', topicId, consumer });
    if (m.type !== 'position') throw new Error(`walrus-ts internal error: unexpected ${m.type} reply to a position request`);
    return m;
  }

  /** The named consumers with a position in this shard. */
  async consumers(): Promise<[string, [number, number, number, number, number][]][]> {
    const m = await this.request({ type: 'consumers' });
    if (m.type !== 'consumers') throw new Error(`walrus-ts internal error: unexpected ${m.type} reply to a consumers request`);
    return m.list;
  }

  /** Deletes a named consumer's positions in this shard, durably. */
  async dropConsumer(name: string): Promise<void> {
    await this.request({ type: 'dropConsumer', name });
  }

  /** Makes every cursor record of this shard durable, when a checkpoint may have left one unsynced. */
  async syncCursors(): Promise<void> {
    if (!this.cursorsUnsynced) return;
    this.cursorsUnsynced = false;
    await this.request({ type: 'syncCursors' });
  }

  /**
   * Commits what checkpointing reads of the topic returned (or everything before `offset`),
   * durably (see workers/read/consumer.ts).
   */
  async commit(topicId: number, consumer: ConsumerRef | null = null, offset?: number): Promise<void> {
    await this.request(offset === undefined ? { type: 'commit', topicId, consumer } : { type: 'commit', topicId, consumer, offset });
  }

  /**
   * Flushes, fsyncs and stops the worker. Rejects with the shard's failure when the shard
   * failed before everything `append` acknowledged was made durable: a failed worker writes
   * nothing more, so those entries are lost and close must not report success (issue 11,
   * item 4: close once resolved with 45,367 offsets acknowledged and 29,480 on disk).
   */
  async close(): Promise<void> {
    if (!this.exited && !this.failure) {
      try {
        await this.request({ type: 'close' });
      } catch (err) {
        await this.terminate();
        throw err;
      }
    }
    await this.terminate();
    const p = this.producer;
    // Durable is the worker's watermark of ring bytes on stable storage (the close record's
    // fsync included); publishedLogical covers every record an append returned for.
    if (loadBig(p.v.big, RingBig.Durable) < p.publishedLogical) {
      const failed = Atomics.load(p.v.ctl, RingSlot.State) === ShardState.Failed || this.failure !== null;
      if (failed) throw this.failureNow();
    }
  }

  async terminate(): Promise<void> {
    if (!this.exited) {
      this.worker.postMessage({ type: 'close', id: -1 } satisfies ToWorker);
      wakeWorker(this.producer.v.ctl);
      const timer = setTimeout(() => void this.worker.terminate(), TERMINATE_GRACE_MS);
      await this.exitPromise;
      clearTimeout(timer);
    }
  }

  stats(): ShardStats {
    const big = this.producer.v.big;
    const r = this.readStats;
    return {
      fsyncs: loadBig(big, RingBig.Fsyncs),
      writeSubmits: loadBig(big, RingBig.WriteSubmits),
      bytesWritten: loadBig(big, RingBig.BytesWritten),
      recordsWritten: loadBig(big, RingBig.RecordsWritten),
      readAhead: { made: loadBig(r, 0), served: loadBig(r, 1), dropped: loadBig(r, 2), failed: loadBig(r, 3), heldBytes: loadBig(r, 4) },
    };
  }
}
