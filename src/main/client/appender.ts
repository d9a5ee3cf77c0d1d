/**
 * Appends as the ring sees them: every append (one entry, a batch, or entries too large for
 * the ring) goes through one framing sequence, `frame`: declare the topic if it is new,
 * claim and write the records, forget every claim if anything throws, publish, and only
 * then advance the topic. The worker side of the shard (its messages, failure and close) is
 * ShardClient's (shard.ts).
 */
import { setFrameOffset } from '../../shared/format/frame.js';
import { RECORD_HEADER_BYTES, RecordKind, recordFootprint } from '../../shared/format/layout.js';
import type { Publication, Sequencer } from '../../shared/producers/sequencer.js';
import type { ToWorker } from '../../shared/messages.js';
import { RingBig, RingSlot, addBig } from '../../shared/ring.js';
import { RingProducer, backpressureError, type ProducerTopic } from './producer.js';

/**
 * Least bound on beside-the-ring payload bytes in flight (the bound is the larger of this
 * and four rings): appends wait past it, so a fast producer of large entries cannot grow
 * memory without bound, while a small ring (four of which would hold less than one large
 * entry) still lets several large entries be in flight at once.
 */
const MIN_EXTERNAL_LIMIT_BYTES = 64 * 1024 * 1024;

/** What the appender needs from its shard's worker client. */
export interface AppenderShard {
  readonly index: number;
  /** The shard's failure, once the ring's State says it failed. */
  failureNow(): Error;
  /** Posts a message (an External record's payloads) to the worker. */
  post(msg: ToWorker, transfer: ArrayBuffer[]): void;
}

/**
 * A sequenced publication of this appender's ring (shared/producers/sequencer.ts): one
 * object per appender, filled in per append, so an append allocates nothing for it.
 */
class RingPublication implements Publication {
  entry = 0;
  shard = 0;
  count = 0;
  headBefore = 0;
  headAfter = 0;
  /** Ring positions of the records, in offset order (an External marker: one). */
  readonly positions: number[] = [];

  constructor(
    private readonly producer: RingProducer,
    private readonly appender: Appender,
  ) {}

  patch(first: number): void {
    const words = this.producer.v.words;
    for (let k = 0; k < this.positions.length; k++) setFrameOffset(words, this.positions[k]!, first + k);
  }

  publish(): void {
    this.producer.publishSequenced(this.headBefore);
  }

  checkOpen(): void {
    this.appender.checkShard();
  }
}

export class Appender {
  readonly producer: RingProducer;
  /** External payload bytes allowed in flight before appends wait. */
  private readonly externalLimit: number;

  /** Set once the log has a producer handle: appends of topics with an entry are sequenced through it. */
  private sequencer: Sequencer | null = null;
  private readonly pub: RingPublication;
  /** While a sequenced append writes its records: their positions go to `pub`. */
  private sequencing = false;
  /**
   * appendOne's entry while frame() runs: frame's `write` is null then, and writes this one
   * record (fields rather than a closure, so that a single append allocates nothing).
   */
  private oneData: Uint8Array | string = '';
  private oneLen = 0;
  private oneFootprint = 0;

  constructor(
    ring: SharedArrayBuffer,
    backpressureMs: number,
    private readonly shard: AppenderShard,
    /** A producer thread's ring: the shard's main ring, whose control slots it rings and reads State from. */
    shardRing?: SharedArrayBuffer,
    /** Tags the External payloads this appender posts (a producer thread's index), so the worker knows whose ring. */
    private readonly ringTag?: number,
  ) {
    this.producer = new RingProducer(ring, backpressureMs, shardRing);
    this.externalLimit = Math.max(MIN_EXTERNAL_LIMIT_BYTES, 4 * this.producer.v.size);
    this.pub = new RingPublication(this.producer, this);
  }

  /** From now on, topics with a directory entry are sequenced by `sequencer`. */
  share(sequencer: Sequencer): void {
    this.sequencer = sequencer;
  }

  /** Throws why the shard takes no more appends (it failed, or it is closing), if it does not. */
  checkShard(): void {
    if (Atomics.load(this.producer.shardCtl, RingSlot.State) !== 0) throw this.pressure();
  }

  /** Appends one entry whose payload length has been validated; the shard is writable. */
  appendOne(t: ProducerTopic, data: Uint8Array | string, len: number): number {
    const p = this.producer;
    const fp = recordFootprint(len);
    if (fp > p.externalThreshold) return this.appendExternal(t, [data], [len]);
    p.begin();
    this.oneData = data;
    this.oneLen = len;
    this.oneFootprint = fp;
    try {
      return this.frame(t, 1, null);
    } finally {
      this.oneData = '';
    }
  }

  /** Appends a validated, non-empty batch atomically; returns the first offset. */
  appendBatch(t: ProducerTopic, entries: readonly (Uint8Array | string)[], lens: number[], ringBytes: number): number {
    const p = this.producer;
    if (ringBytes > p.externalThreshold) return this.appendExternal(t, entries, lens);
    p.begin();
    const n = entries.length;
    // One frame, so one publish, for the whole batch: the worker never sees part of it.
    return this.frame(t, n, (first) => {
      for (let i = 0; i < n; i++) this.record(t, first + i, n - i, entries[i]!, lens[i]!);
    });
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
    // Begun here, not in frame: the wait for external room shares the claims' deadline.
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
    return this.frame(t, entries.length, (first) => {
      const pos = this.claim(RECORD_HEADER_BYTES);
      const logicalPos = p.position - RECORD_HEADER_BYTES;
      p.writeHeader(pos, RECORD_HEADER_BYTES, 0, t.id, RecordKind.External, first, entries.length);
      // The payload is posted before the marker is published, and messages arrive in order,
      // so the worker has it by the time it reaches the marker (or soon after).
      if (this.sequencing) this.pub.positions.push(pos);
      const msg: ToWorker = { type: 'external', pos: logicalPos, payload: data, lengths: Float64Array.from(lens) };
      if (this.ringTag !== undefined) msg.ring = this.ringTag;
      this.shard.post(msg, [data.buffer]);
      addBig(p.v.big, RingBig.ExternalBytes, total);
    });
  }

  /**
   * The one framing sequence of an append of `n` entries to `t`, in an operation already
   * begun (producer.begin): claims the topic's TopicDef record if it is new, then runs
   * `write(first)`, which claims (this.claim) and writes the entries' records (null:
   * appendOne's record, see oneData). Whatever
   * throws in between (backpressure, or an exception from the caller's data while it is
   * copied), every claim since the last publish is forgotten: the ring and the topic's
   * offsets are as before the call. Claimed bytes are never published half-framed (that once
   * left kind 0 records in the ring, issue 11 item 3). Returns the first entry's offset.
   */
  private frame(t: ProducerTopic, n: number, write: ((first: number) => void) | null): number {
    if (t.entry >= 0 && this.sequencer !== null) return this.frameSequenced(t, n, write);
    const p = this.producer;
    const first = t.next;
    try {
      if (!t.defined && !p.claimTopicDef(t)) throw this.pressure();
      this.writeRecords(t, first, write);
    } catch (err) {
      p.revert();
      throw err;
    }
    p.publish();
    t.defined = true;
    t.next = first + n;
    return first;
  }

  /**
   * frame() for a topic appended from several threads: the records are claimed and written
   * without offsets (and without any lock: claims may wait for space), then the sequencer
   * gives them their offsets and publishes them under the topic's lock. Each ring declares a
   * topic (TopicDef) before its first record of it, as the unsequenced path does.
   */
  private frameSequenced(t: ProducerTopic, n: number, write: ((first: number) => void) | null): number {
    const p = this.producer;
    const pub = this.pub;
    pub.positions.length = 0;
    try {
      // The topic's TopicDef first, in this ring, unless this ring declared it already: the
      // worker then knows the topic before any record of it from this ring.
      if (!t.defined && !p.claimTopicDef(t)) throw this.pressure();
      this.sequencing = true;
      this.writeRecords(t, 0, write);
      this.sequencing = false;
      pub.entry = t.entry;
      pub.shard = this.shard.index;
      pub.count = n;
      pub.headBefore = p.headBefore;
      pub.headAfter = p.headAfter;
      const first = this.sequencer!.sequence(pub);
      t.defined = true;
      return first;
    } catch (err) {
      this.sequencing = false;
      p.revert();
      throw err;
    }
  }

  private writeRecords(t: ProducerTopic, first: number, write: ((first: number) => void) | null): void {
    if (write === null) this.record(t, first, 1, this.oneData, this.oneLen, this.oneFootprint);
    else write(first);
  }

  /** Claims and writes the Entry record of entry `offset` of `t`, `remaining` from its batch's end. */
  private record(t: ProducerTopic, offset: number, remaining: number, data: Uint8Array | string, len: number, fp = recordFootprint(len)): void {
    const pos = this.claim(fp);
    if (this.sequencing) this.pub.positions.push(pos);
    this.producer.writeHeader(pos, fp, len, t.id, RecordKind.Entry, offset, remaining);
    if (len > 0) this.producer.writePayload(pos, data, len);
  }

  /** Claims `footprint` bytes of the ring, or throws why it could not (see pressure). */
  private claim(footprint: number): number {
    const pos = this.producer.claim(footprint);
    if (pos < 0) throw this.pressure();
    return pos;
  }

  /** Why a claim gave up: the shard's failure, or backpressure. */
  private pressure(): Error {
    const p = this.producer;
    if (Atomics.load(p.shardCtl, RingSlot.State) !== 0) return this.shard.failureNow();
    return backpressureError(this.shard.index, p.backpressureMs, p.stalled);
  }

  /** Whether the ring is at most half full and external payloads are at most half their bound. */
  hasRoom(): boolean {
    const p = this.producer;
    return p.inUse() <= p.v.size / 2 && p.externalBytes() <= this.externalLimit / 2;
  }
}
