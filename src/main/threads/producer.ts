/**
 * A producer in another thread: `Walrus.attach(handle)`. It appends through rings of its own
 * (one per shard it appends to, made on first use and announced on the shard's channel),
 * sequenced with every other thread's appends through the handle's directory
 * (shared/producers/sequencer.ts), and waits for the same watermarks as the opening thread
 * (client/watermarks.ts), written by the same shard workers: its appendAndSync and sync ride
 * the shard's group commit with everyone else's.
 */
import { WalrusError, closedError, invalidArgType, outOfRange } from '../../shared/errors.js';
import { DirWord, LEDGER_ABANDONED, LedgerWord, ShardState } from '../../shared/format/layout.js';
import { native, type ThreadExitMark } from '../../shared/native.js';
import { encodeTopic, topicHash } from '../../shared/format/topic.js';
import { TopicDirectory } from '../../shared/producers/directory.js';
import { Sequencer, releaseLedger, takeLedger } from '../../shared/producers/sequencer.js';
import { MAX_RING_BYTES, RingBig, RingSlot, createRing, loadBig, ringViews, wakeWorker } from '../../shared/ring.js';
import { Appender, type AppenderShard } from '../client/appender.js';
import type { ProducerTopic } from '../client/producer.js';
import { Watermarks, type WatermarkShard } from '../client/watermarks.js';
import { batchLengths, payloadLength } from '../append-args.js';
import type { ToWorker } from '../../shared/messages.js';
import { type ProducerHandle, checkHandle, postToShard } from './handle.js';

/** Options of `Walrus.attach`. */
export interface AttachOptions {
  /** Size of this producer's ring per shard (default: the handle's), a power of two from 64 KiB to 1 GiB. */
  ringBytes?: number;
}

const MIN_PRODUCER_RING_BYTES = 64 * 1024;
/** Longest delay a timer takes; the keep-alive timer never needs to fire. */
const KEEP_ALIVE_MS = 2 ** 31 - 1;

interface ThreadTopic extends ProducerTopic {
  shard: number;
}

/** The error a shard's State stands for, or null while it takes appends. */
function stateError(ctl: Int32Array, shard: number): Error | null {
  const state = Atomics.load(ctl, RingSlot.State);
  if (state === ShardState.Open) return null;
  if (state === ShardState.Failed) {
    return new WalrusError('ERR_WALRUS_IO', `shard ${shard} failed an I/O operation and refuses appends until the log is reopened (the instance that opened the log has the error)`);
  }
  return closedError();
}

/** This producer's side of one shard: its ring, framed by an Appender, and the shard's watermarks. */
class ProducerShard implements AppenderShard, WatermarkShard {
  readonly appender: Appender;
  readonly watermarks: Watermarks;
  private readonly shardCtl: Int32Array;
  /** This ring's id in the log (its channel messages name it). */
  private readonly ringId: number;

  constructor(
    readonly index: number,
    private readonly handle: ProducerHandle,
    producer: number,
    ringBytes: number,
    sequencer: Sequencer,
    directory: TopicDirectory,
    private readonly keepAlive: { hold(): void; release(): void },
  ) {
    const ring = createRing(ringBytes);
    this.ringId = Atomics.add(directory.header, DirWord.RingSerial, 1) + 1;
    this.appender = new Appender(ring, handle.backpressureMs, this, handle.rings[index], this.ringId);
    this.appender.share(sequencer);
    this.watermarks = new Watermarks(this.appender, this);
    this.shardCtl = this.appender.producer.shardCtl;
    postToShard(handle, index, { type: 'attach', producer, ringId: this.ringId, ring, directory: handle.directory });
  }

  failureNow(): Error {
    return stateError(this.shardCtl, this.index) ?? new WalrusError('ERR_WALRUS_IO', `shard ${this.index} refuses appends`);
  }

  post(msg: ToWorker): void {
    if (msg.type !== 'external') throw new Error(`walrus-ts internal error: a producer thread posts only External payloads, not ${msg.type}`);
    postToShard(this.handle, this.index, msg);
  }

  hold(): void {
    this.keepAlive.hold();
  }

  release(): void {
    this.keepAlive.release();
  }

  checkWritable(): void {
    const err = stateError(this.shardCtl, this.index);
    if (err) throw err;
  }

  /**
   * Why nothing more will be made durable: null while the shard is open, and while it is
   * closing (its worker still writes and fsyncs what producers published: a sync() in flight
   * then resolves, docs/DURABILITY.md).
   */
  stopped(): Error | null {
    if (Atomics.load(this.shardCtl, RingSlot.State) === ShardState.Closing) return null;
    return stateError(this.shardCtl, this.index);
  }

  /** Whether everything this producer published to the shard is durable. */
  allDurable(): boolean {
    const p = this.appender.producer;
    return loadBig(p.v.big, RingBig.Durable) >= p.publishedLogical;
  }

  /** Resolves once the shard is not Closing (a closing worker is still writing what producers published). */
  async settled(): Promise<void> {
    const own = this.appender.producer.v.ctl;
    // An asynchronous Atomics wait does not keep a thread alive by itself.
    this.hold();
    try {
      for (;;) {
        const gen = Atomics.load(own, RingSlot.DurableGen);
        if (Atomics.load(this.shardCtl, RingSlot.State) !== ShardState.Closing) return;
        // The worker notifies DurableGen of every ring once State says Closed or Failed.
        const r = Atomics.waitAsync(own, RingSlot.DurableGen, gen, 250);
        if (r.async) await r.value;
      }
    } finally {
      this.release();
    }
  }

  detach(): void {
    postToShard(this.handle, this.index, { type: 'detach', ringId: this.ringId });
  }
}

/**
 * Appends to a log opened in another thread (see {@link Walrus.attach}): `append`,
 * `batchAppend`, `appendAndSync`, `sync`, `flush`, `drain` and `close`, with the arguments,
 * errors and guarantees of the same methods of {@link Walrus}. Offsets are shared with every
 * thread appending to the log: dense per topic, a batch's contiguous, each thread's own
 * appends to a topic increasing. Closing the log makes every producer's calls fail with
 * ERR_WALRUS_CLOSED.
 */
export class Producer {
  private readonly handle: ProducerHandle;
  private readonly dir: TopicDirectory;
  private readonly sequencer: Sequencer;
  private readonly ledger: number;
  /** This producer's token in its ledger slot (see takeLedger). */
  private readonly token: number;
  /** The addon's thread-exit hook for the slot (see markOnThreadExit), or null without the addon. */
  private readonly exitMark: ThreadExitMark | null;
  private readonly shards: (ProducerShard | undefined)[];
  private readonly topics = new Map<string, ThreadTopic>();
  private readonly ringBytes: number;
  private closing: Promise<void> | null = null;
  private holds = 0;
  private keepAliveTimer: ReturnType<typeof setInterval> | null = null;
  private readonly keepAlive = {
    hold: (): void => {
      if (this.holds++ === 0) this.keepAliveTimer = setInterval(() => {}, KEEP_ALIVE_MS);
    },
    release: (): void => {
      if (--this.holds === 0 && this.keepAliveTimer !== null) {
        clearInterval(this.keepAliveTimer);
        this.keepAliveTimer = null;
      }
    },
  };

  /** @internal Use {@link Walrus.attach}. */
  constructor(handle: unknown, options: AttachOptions = {}) {
    this.handle = checkHandle(handle);
    const ringBytes = options.ringBytes ?? this.handle.ringBytes;
    if (!Number.isInteger(ringBytes) || ringBytes < MIN_PRODUCER_RING_BYTES || ringBytes > MAX_RING_BYTES || (ringBytes & (ringBytes - 1)) !== 0) {
      throw outOfRange('options.ringBytes', `a power of two from ${MIN_PRODUCER_RING_BYTES} to ${MAX_RING_BYTES}`, ringBytes);
    }
    this.ringBytes = ringBytes;
    this.dir = new TopicDirectory(this.handle.directory);
    for (let k = 0; k < this.handle.rings.length; k++) {
      const err = stateError(ringViews(this.handle.rings[k]!).ctl, k);
      if (err) throw err;
    }
    const { slot, token } = takeLedger(this.dir);
    this.ledger = slot;
    this.token = token;
    // Should this thread end without close(), the addon's hook marks the slot abandoned
    // (null without the addon: the slot then stays taken).
    this.exitMark = native.markOnThreadExit(this.dir.ledgers, this.dir.ledgerWord(slot, LedgerWord.Taken), token, LEDGER_ABANDONED);
    this.sequencer = new Sequencer(this.dir, this.ledger, (k) => wakeWorker(ringViews(this.handle.rings[k]!).ctl), token);
    this.shards = new Array(this.handle.rings.length);
  }

  private checkOpen(): void {
    if (this.closing) throw closedError();
  }

  private topicFor(topic: string): ThreadTopic {
    const t = this.topics.get(topic);
    if (t !== undefined) return t;
    const nameBytes = encodeTopic(topic);
    const d = this.dir.lookupOrAdd(nameBytes, topicHash(nameBytes) % this.shards.length);
    const created: ThreadTopic = { id: d.id, next: 0, entry: d.entry, defined: false, nameBytes, shard: d.shard };
    this.topics.set(topic, created);
    return created;
  }

  private shard(k: number): ProducerShard {
    let s = this.shards[k];
    if (s === undefined) {
      const err = stateError(ringViews(this.handle.rings[k]!).ctl, k);
      if (err) throw err;
      s = this.shards[k] = new ProducerShard(k, this.handle, this.ledger, this.ringBytes, this.sequencer, this.dir, this.keepAlive);
    }
    return s;
  }

  /** After an append: wakes the opening thread's subscribers if any wait (see Walrus.watchProducers). */
  private announce(): void {
    const h = this.dir.header;
    if (Atomics.load(h, DirWord.Watching) !== 0) {
      Atomics.add(h, DirWord.AppendGen, 1);
      Atomics.notify(h, DirWord.AppendGen);
    }
  }

  /** As {@link Walrus.append}. */
  append(topic: string, data: Uint8Array | string): number {
    this.checkOpen();
    if (typeof topic !== 'string') throw invalidArgType('topic', 'of type string', topic);
    // The arguments in order: an invalid topic name is refused before the payload's size.
    const known = this.topics.get(topic);
    if (known === undefined) encodeTopic(topic);
    const len = payloadLength(data, 'data', this.handle.maxRecordBytes);
    const t = known ?? this.topicFor(topic);
    const s = this.shard(t.shard);
    s.checkWritable();
    const offset = s.appender.appendOne(t, data, len);
    this.announce();
    return offset;
  }

  /** As {@link Walrus.batchAppend}. */
  batchAppend(topic: string, entries: readonly (Uint8Array | string)[]): number {
    this.checkOpen();
    if (typeof topic !== 'string') throw invalidArgType('topic', 'of type string', topic);
    const known = this.topics.get(topic);
    if (known === undefined) encodeTopic(topic);
    const { lens, ringBytes } = batchLengths(entries, this.handle.maxRecordBytes);
    const t = known ?? this.topicFor(topic);
    if (entries.length === 0) return this.dir.next(t.entry);
    const s = this.shard(t.shard);
    s.checkWritable();
    const first = s.appender.appendBatch(t, entries, lens, ringBytes);
    this.announce();
    return first;
  }

  /** As {@link Walrus.appendAndSync}. */
  async appendAndSync(topic: string, data: Uint8Array | string): Promise<number> {
    const offset = this.append(topic, data);
    await this.shard(this.topics.get(topic)!.shard).watermarks.waitDurable();
    return offset;
  }

  /** As {@link Walrus.sync}: every entry this producer appended before the call is durable. */
  async sync(): Promise<void> {
    this.checkOpen();
    await Promise.all(this.attached().map((s) => s.watermarks.waitDurable()));
  }

  /** As {@link Walrus.flush}. */
  async flush(): Promise<void> {
    this.checkOpen();
    await Promise.all(this.attached().map((s) => s.watermarks.waitWritten()));
  }

  /** As {@link Walrus.drain}: resolves when this producer's rings have room again. */
  async drain(): Promise<void> {
    this.checkOpen();
    await Promise.all(this.attached().map((s) => s.watermarks.waitRoom()));
  }

  /**
   * Makes everything this producer appended durable, then detaches it (its rings are
   * dropped once drained, its slot freed). Later calls throw ERR_WALRUS_CLOSED. Rejects with
   * the shard's failure, or ERR_WALRUS_CLOSED, when the log closed or failed before this
   * producer's entries were durable; resolves when the log's close made them durable.
   */
  close(): Promise<void> {
    this.closing ??= this.finish();
    return this.closing;
  }

  private async finish(): Promise<void> {
    const shards = this.attached();
    try {
      await Promise.all(
        shards.map(async (s) => {
          await s.settled();
          if (s.allDurable()) return;
          if (s.stopped() !== null) throw s.stopped();
          try {
            await s.watermarks.waitDurable();
          } catch (err) {
            // The shard may have gone from open to closed since settled() looked: its close
            // made everything published durable first.
            if (!s.allDurable()) throw err;
          }
        }),
      );
    } finally {
      for (const s of shards) if (s.stopped() === null) s.detach();
      if (this.exitMark !== null) native.cancelThreadExitMark(this.exitMark);
      releaseLedger(this.dir, this.ledger, this.token);
    }
  }

  private attached(): ProducerShard[] {
    return this.shards.filter((s): s is ProducerShard => s !== undefined);
  }
}
