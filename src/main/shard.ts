/**
 * One shard as the main thread sees it: the worker that owns its files, the ring producer,
 * durability waiters (group commit on the main side) and request/response plumbing.
 */
import { MessageChannel, type MessagePort, Worker, receiveMessageOnPort } from 'node:worker_threads';
import { WalrusError, closedError, deserializeError, type SerializedError } from '../shared/errors.js';
import { RECORD_HEADER_BYTES, RecordKind, ShardState, recordFootprint } from '../shared/layout.js';
import type { FromWorker, RecoveredTopic, ShardInit, ToWorker } from '../shared/messages.js';
import { unreachable } from '../shared/messages.js';
import { RingBig, RingSlot, addBig, loadBig, storeBig, wakeWorker } from '../shared/ring.js';
import { RingProducer, STALL_MS, backpressureError, type ProducerTopic } from './producer.js';

const WORKER_URL = new URL('../workers/shard-worker.js', import.meta.url);

export interface ReadReply {
  data: ArrayBuffer[];
  entries: Float64Array;
}

interface Waiter {
  target: number;
  resolve: () => void;
  reject: (e: Error) => void;
}

interface Pending {
  resolve: (m: FromWorker) => void;
  reject: (e: Error) => void;
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

function readReply(m: FromWorker): ReadReply {
  if (m.type !== 'readResult') throw new Error(`walrus-ts internal error: unexpected ${m.type} reply to a read`);
  return { data: m.data, entries: m.entries };
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

export class ShardClient {
  readonly producer: RingProducer;
  private readonly worker: Worker;
  private readonly pending = new Map<number, Pending>();
  private nextRequestId = 1;
  private readonly durableWaiters: Waiter[] = [];
  private watching = false;
  private holds = 0;
  /** Set once the shard has failed (I/O error or worker crash); appends then throw it. */
  failure: Error | null = null;
  private exited = false;
  private readonly exitPromise: Promise<void>;
  /** Topic ids are shard-local and never reused. */
  nextTopicId = 1;
  /** External payload bytes allowed in flight before appends wait. */
  private readonly externalLimit: number;
  /** Where the worker posts its failure before it sets State to Failed. */
  private readonly failPort: MessagePort;

  private constructor(
    readonly index: number,
    initWithoutPort: Omit<ShardInit, 'failPort'>,
    backpressureMs: number,
  ) {
    const channel = new MessageChannel();
    this.failPort = channel.port1;
    this.failPort.unref();
    const init: ShardInit = { ...initWithoutPort, failPort: channel.port2 };
    this.producer = new RingProducer(init.ring, backpressureMs);
    this.externalLimit = Math.max(64 * 1024 * 1024, 4 * this.producer.v.size);
    const options = {
      workerData: init,
      transferList: [channel.port2],
      execArgv: workerExecArgv(process.execArgv),
      stdout: false,
      stderr: false,
      resourceLimits: { maxYoungGenerationSizeMb: WORKER_YOUNG_GENERATION_MB },
    };
    try {
      this.worker = new Worker(WORKER_URL, options);
    } catch (err) {
      // Some host flags are per process and refused for a worker (`node --expose-gc` on Node
      // 20: ERR_WORKER_INVALID_EXEC_ARGV); Node does not say which, so the shard workers then
      // start with none rather than not at all.
      if ((err as { code?: string }).code !== 'ERR_WORKER_INVALID_EXEC_ARGV') throw err;
      this.worker = new Worker(WORKER_URL, { ...options, execArgv: [] });
    }
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
  static async start(index: number, init: Omit<ShardInit, 'failPort'>, backpressureMs: number): Promise<{ shard: ShardClient; ready: ShardReady }> {
    const shard = new ShardClient(index, init, backpressureMs);
    shard.hold();
    try {
      const m = await new Promise<FromWorker>((resolve, reject) => {
        shard.pending.set(0, { resolve, reject });
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
      case 'openFailed':
        this.settle(0, m);
        return;
      case 'readResult':
      case 'synced':
      case 'closed':
        this.settle(m.id, m);
        return;
      case 'requestFailed': {
        const p = this.pending.get(m.id);
        if (p) {
          this.pending.delete(m.id);
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
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    if (id !== 0) this.release();
    p.resolve(m);
  }

  private fail(err: Error): void {
    if (!this.failure) this.failure = err;
    this.rejectAll(this.failure);
  }

  private rejectAll(err: Error): void {
    for (const w of this.durableWaiters.splice(0)) {
      this.release();
      w.reject(err);
    }
    for (const [id, p] of this.pending) {
      this.pending.delete(id);
      if (id !== 0) this.release();
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
  checkWritable(): void {
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

  private pressure(): Error {
    if (Atomics.load(this.producer.v.ctl, RingSlot.State) !== 0) return this.failureNow();
    return backpressureError(this.index, this.producer.backpressureMs, this.producer.stalled);
  }

  /** Appends one entry whose payload length has been validated. */
  appendOne(t: ProducerTopic, data: Uint8Array | string, len: number): number {
    this.checkWritable();
    const p = this.producer;
    const fp = recordFootprint(len);
    if (fp > p.externalThreshold) return this.appendExternal(t, [data], [len]);
    p.begin();
    const offset = t.next;
    this.framed(() => {
      if (!t.defined && !p.claimTopicDef(t)) throw this.pressure();
      const pos = p.claim(fp);
      if (pos < 0) throw this.pressure();
      p.writeHeader(pos, fp, len, t.id, RecordKind.Entry, offset, 1);
      if (len > 0) p.writePayload(pos, data, len);
    });
    p.publish();
    t.defined = true;
    t.next = offset + 1;
    return offset;
  }

  /**
   * Runs the claims and framing of one operation. Whatever it throws (backpressure, or an
   * exception from the caller's data while it is copied), every claim since the last publish
   * is forgotten: the ring and the topic's offsets are as before the call. Claimed bytes are
   * never published half-framed (that once left kind 0 records in the ring, issue 11 item 3).
   */
  private framed(frame: () => void): void {
    try {
      frame();
    } catch (err) {
      this.producer.revert();
      throw err;
    }
  }

  /** Appends a validated, non-empty batch atomically; returns the first offset. */
  appendBatch(t: ProducerTopic, entries: readonly (Uint8Array | string)[], lens: number[], ringBytes: number): number {
    this.checkWritable();
    const p = this.producer;
    if (ringBytes > p.externalThreshold) return this.appendExternal(t, entries, lens);
    p.begin();
    const first = t.next;
    const n = entries.length;
    this.framed(() => {
      if (!t.defined && !p.claimTopicDef(t)) throw this.pressure();
      for (let i = 0; i < n; i++) {
        const len = lens[i]!;
        const fp = recordFootprint(len);
        const pos = p.claim(fp);
        if (pos < 0) throw this.pressure();
        p.writeHeader(pos, fp, len, t.id, RecordKind.Entry, first + i, n - i);
        if (len > 0) p.writePayload(pos, entries[i]!, len);
      }
    });
    // One publish for the whole batch: the worker never sees part of it.
    p.publish();
    t.defined = true;
    t.next = first + n;
    return first;
  }

  /**
   * Entries too large for the ring travel beside it: their payloads are copied into one
   * transferable buffer posted to the worker, and a header-only External record holds their
   * place (and their order) in the ring.
   */
  private appendExternal(t: ProducerTopic, entries: readonly (Uint8Array | string)[], lens: number[]): number {
    const p = this.producer;
    let total = 0;
    for (const len of lens) total += len;
    p.begin();
    // Bound the memory of payloads in flight; a single group larger than the bound may go
    // alone, otherwise it could never be written.
    if (p.externalBytes() + total > this.externalLimit && !p.waitForExternal(Math.max(0, this.externalLimit - total))) {
      throw this.pressure();
    }
    // The payloads are copied before anything is claimed: an allocation or copy that throws
    // leaves nothing behind in the ring.
    const data = new Uint8Array(total);
    let at = 0;
    for (let i = 0; i < entries.length; i++) {
      const e = entries[i]!;
      if (typeof e === 'string') Buffer.from(data.buffer, at, lens[i]!).write(e, 0, lens[i]!, 'utf8');
      else data.set(e, at);
      at += lens[i]!;
    }
    const first = t.next;
    this.framed(() => {
      if (!t.defined && !p.claimTopicDef(t)) throw this.pressure();
      const pos = p.claim(RECORD_HEADER_BYTES);
      if (pos < 0) throw this.pressure();
      const logicalPos = p.position - RECORD_HEADER_BYTES;
      p.writeHeader(pos, RECORD_HEADER_BYTES, 0, t.id, RecordKind.External, first, entries.length);
      const msg: ToWorker = { type: 'external', pos: logicalPos, payload: data, lengths: Float64Array.from(lens) };
      // The payload is posted before the marker is published, and messages arrive in order,
      // so the worker has it by the time it reaches the marker (or soon after).
      this.worker.postMessage(msg, [data.buffer]);
    });
    addBig(p.v.big, RingBig.ExternalBytes, total);
    p.publish();
    t.defined = true;
    t.next = first + entries.length;
    return first;
  }

  /**
   * Resolves once everything published so far is durable; forces a prompt fsync. Rejects
   * once the shard has failed, even when nothing was pending: a failed shard is reported
   * by every call until the log is reopened.
   */
  waitDurable(): Promise<void> {
    const target = this.producer.publishedLogical;
    const big = this.producer.v.big;
    try {
      this.checkWritable();
    } catch (err) {
      return Promise.reject(err);
    }
    if (loadBig(big, RingBig.Durable) >= target) return Promise.resolve();
    if (loadBig(big, RingBig.SyncRequest) < target) storeBig(big, RingBig.SyncRequest, target);
    wakeWorker(this.producer.v.ctl);
    return new Promise<void>((resolve, reject) => {
      this.hold();
      this.durableWaiters.push({ target, resolve, reject });
      if (!this.watching) void this.watchDurable();
    });
  }

  /** Resolves once everything published so far is written to the files (not necessarily durable). */
  async waitWritten(): Promise<void> {
    const target = this.producer.publishedLogical;
    await this.waitSlot(RingSlot.TailGen, () => loadBig(this.producer.v.big, RingBig.Written) >= target);
  }

  /**
   * Blocks the thread until everything published so far is written to the files, for a
   * process 'exit' listener (nothing asynchronous runs there, but the worker thread still
   * does until the listeners return). Gives up, returning false, once the shard has failed
   * or exited or its worker has written nothing for STALL_MS, so a broken shard cannot hang
   * the exit.
   */
  writeAllSync(): boolean {
    const { ctl, big } = this.producer.v;
    const target = this.producer.publishedLogical;
    let written = loadBig(big, RingBig.Written);
    let progressAt = Date.now();
    for (;;) {
      // TailGen before Written: a write completing in between changes TailGen, so the wait
      // below returns at once.
      const gen = Atomics.load(ctl, RingSlot.TailGen);
      const now = loadBig(big, RingBig.Written);
      if (now >= target) return true;
      if (this.exited || this.failure || Atomics.load(ctl, RingSlot.State) !== 0) return false;
      if (now > written) {
        written = now;
        progressAt = Date.now();
      }
      const left = progressAt + STALL_MS - Date.now();
      if (left <= 0) return false;
      wakeWorker(ctl);
      Atomics.wait(ctl, RingSlot.TailGen, gen, left);
    }
  }

  /** Resolves when the ring is at most half full and external payloads are below their bound. */
  async waitRoom(): Promise<void> {
    const p = this.producer;
    await this.waitSlot(RingSlot.TailGen, () => p.inUse() <= p.v.size / 2 && p.externalBytes() <= this.externalLimit / 2);
  }

  private async waitSlot(slot: number, done: () => boolean): Promise<void> {
    const ctl = this.producer.v.ctl;
    this.hold();
    try {
      for (;;) {
        const gen = Atomics.load(ctl, slot);
        if (done()) return;
        if (this.failure) throw this.failure;
        if (this.exited) throw closedError();
        wakeWorker(ctl);
        // Bounded wait: a missed notification costs at most this long, never a hang.
        const r = Atomics.waitAsync(ctl, slot, gen, 250);
        if (r.async) await r.value;
      }
    } finally {
      this.release();
    }
  }

  private async watchDurable(): Promise<void> {
    const { ctl, big } = this.producer.v;
    this.watching = true;
    try {
      while (this.durableWaiters.length > 0) {
        const gen = Atomics.load(ctl, RingSlot.DurableGen);
        const durable = loadBig(big, RingBig.Durable);
        // Targets are taken from a non-decreasing position, so waiters are in target order:
        // one fsync releases every waiter up to its watermark at once.
        while (this.durableWaiters.length > 0 && this.durableWaiters[0]!.target <= durable) {
          this.durableWaiters.shift()!.resolve();
          this.release();
        }
        if (this.durableWaiters.length === 0) break;
        // A failure rejects every waiter through fail(), when the worker's 'failed' message
        // (which carries the error) arrives; until then keep waiting, boundedly.
        const r = Atomics.waitAsync(ctl, RingSlot.DurableGen, gen, 250);
        if (r.async) await r.value;
      }
    } finally {
      this.watching = false;
    }
  }

  /** Sends a request and resolves with the worker's reply. */
  request(
    msg:
      | { type: 'read'; topicId: number; from: number; maxEntries: number; maxBytes: number }
      | { type: 'consume'; topicId: number; maxEntries: number; maxBytes: number; checkpoint: boolean }
      | { type: 'syncCursors' }
      | { type: 'commit'; topicId: number }
      | { type: 'close' },
  ): Promise<FromWorker> {
    if (this.exited) return Promise.reject(closedError());
    const id = this.nextRequestId++;
    this.hold();
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ ...msg, id } as ToWorker);
      wakeWorker(this.producer.v.ctl);
    });
  }

  async read(topicId: number, from: number, maxEntries: number, maxBytes: number): Promise<ReadReply> {
    return readReply(await this.request({ type: 'read', topicId, from, maxEntries, maxBytes }));
  }

  /** Reads from the topic's cursor, advancing it when `checkpoint` (see workers/consumer.ts). */
  async consume(topicId: number, maxEntries: number, maxBytes: number, checkpoint: boolean): Promise<ReadReply> {
    return readReply(await this.request({ type: 'consume', topicId, maxEntries, maxBytes, checkpoint }));
  }

  /**
   * Set by atLeastOnce checkpointing reads: the worker may hold cursor records that no fsync
   * covers yet, which waitDurable (ring positions only) does not see. Cleared by syncCursors.
   */
  cursorsUnsynced = false;

  /** Makes every cursor record of this shard durable, when a checkpoint may have left one unsynced. */
  async syncCursors(): Promise<void> {
    if (!this.cursorsUnsynced) return;
    this.cursorsUnsynced = false;
    await this.request({ type: 'syncCursors' });
  }

  /** Commits what checkpointing reads of the topic returned, durably (see workers/consumer.ts). */
  async commit(topicId: number): Promise<void> {
    await this.request({ type: 'commit', topicId });
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
      const timer = setTimeout(() => void this.worker.terminate(), 5000);
      await this.exitPromise;
      clearTimeout(timer);
    }
  }

  stats(): { fsyncs: number; writeSubmits: number; bytesWritten: number; recordsWritten: number; durable: number; written: number } {
    const big = this.producer.v.big;
    return {
      fsyncs: loadBig(big, RingBig.Fsyncs),
      writeSubmits: loadBig(big, RingBig.WriteSubmits),
      bytesWritten: loadBig(big, RingBig.BytesWritten),
      recordsWritten: loadBig(big, RingBig.RecordsWritten),
      durable: loadBig(big, RingBig.Durable),
      written: loadBig(big, RingBig.Written),
    };
  }
}
