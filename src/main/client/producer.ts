/**
 * The main thread's side of one shard ring: claims space, frames records into it and
 * publishes them. When the ring is full the producer blocks the thread until the worker
 * releases space: by default for as long as the worker keeps releasing some (a loop of
 * appends runs at the disk's pace, like fs.writeSync), with `backpressureMs` for at most that
 * long; either way it gives up with nothing published once the shard has failed or has
 * released nothing for STALL_MS.
 */
import { WalrusError } from '../../shared/errors.js';
import { encodeFrame, payloadStart, zeroFramePadding } from '../../shared/format/frame.js';
import {
  RECORD_HEADER_BYTES,
  RecordKind,
  recordFootprint,
} from '../../shared/format/layout.js';
import { RingBig, RingSlot, loadBig, ringViews, wakeWorker, type RingViews } from '../../shared/ring.js';

/**
 * How long a full ring may go without the worker releasing any space before an append gives
 * up (ERR_WALRUS_BACKPRESSURE) even with an unbounded `backpressureMs`: one write batch and
 * its fsync take milliseconds, so this only fires for a worker that is dead or stuck.
 */
export const STALL_MS = 10_000;

export interface ProducerTopic {
  id: number;
  /** Offset the next entry of this topic gets (while `entry` is -1: afterwards the directory's counter is). */
  next: number;
  /**
   * The topic's entry in the producer handle's directory once the log has one (appends from
   * several threads: sequenced through it, see shared/producers/sequencer.ts), else -1.
   */
  entry: number;
  /** Whether a TopicDef record for this topic has been published. */
  defined: boolean;
  nameBytes: Buffer;
}

export class RingProducer {
  readonly v: RingViews;
  /** Buffer over the ring data, for UTF-8 string writes. */
  private readonly buf: Buffer;
  /** Local head (claimed, maybe not yet published), modulo 2^32. */
  private head = 0;
  /** Logical position of `head` (bytes since open). */
  private logical = 0;
  private publishedHead = 0;
  /** Logical position of everything published; what sync() waits for. */
  publishedLogical = 0;
  /** Last Tail value read; refreshed only when space looks short. */
  private tailCache = 0;
  /** Records at most this large go through the ring; larger ones travel beside it. */
  readonly externalThreshold: number;
  /** When the current operation stops waiting for space (ms timestamp; 0 = not waited yet). */
  private deadline = 0;
  /** Why the last claim gave up: the deadline passed, or the worker released nothing for STALL_MS. */
  stalled = false;

  /**
   * The shard's control slots the producer reads and rings (State, WorkerSleeping,
   * Doorbell): its own ring's for the opening thread, the shard's main ring's for a ring of
   * a producer thread. Head, Tail and the watermarks are always the ring's own.
   */
  readonly shardCtl: Int32Array;

  constructor(
    sab: SharedArrayBuffer,
    /** Longest wait for space per operation; Infinity: as long as the worker makes progress. */
    readonly backpressureMs: number,
    shardRing?: SharedArrayBuffer,
  ) {
    this.v = ringViews(sab);
    this.shardCtl = shardRing === undefined ? this.v.ctl : ringViews(shardRing).ctl;
    this.buf = Buffer.from(sab, this.v.data.byteOffset, this.v.size);
    this.externalThreshold = this.v.size >>> 2;
  }

  /** Bytes claimed but not yet released by the worker. */
  inUse(): number {
    return (this.head - Atomics.load(this.v.ctl, RingSlot.Tail)) >>> 0;
  }

  /** Starts an operation: all its claims together wait at most backpressureMs. */
  begin(): void {
    this.deadline = 0;
    this.stalled = false;
  }

  /**
   * Claims `footprint` contiguous bytes and returns their ring offset, or -1 when the ring
   * stayed full until the operation's deadline.
   */
  claim(footprint: number): number {
    const size = this.v.size;
    let pos = this.head & this.v.mask;
    const toEnd = size - pos;
    const wraps = footprint > toEnd;
    const need = wraps ? footprint + toEnd : footprint;
    if (((this.head - this.tailCache) >>> 0) + need > size) {
      this.tailCache = Atomics.load(this.v.ctl, RingSlot.Tail) >>> 0;
      if (((this.head - this.tailCache) >>> 0) + need > size && !this.waitForSpace(need)) return -1;
    }
    if (wraps) {
      // A record never straddles the end of the ring. A remainder shorter than a header is
      // skipped by the consumer on its own; a longer one carries an explicit Wrap record.
      if (toEnd >= RECORD_HEADER_BYTES) encodeFrame(this.v.words, pos, 0, 0, RecordKind.Wrap, 0, 0, 0);
      this.advance(toEnd);
      pos = 0;
    }
    this.advance(footprint);
    return pos;
  }

  private advance(n: number): void {
    this.head = (this.head + n) >>> 0;
    this.logical += n;
  }

  /** Frames one record at ring offset `pos` (from claim). Payload bytes are written by the caller. */
  writeHeader(pos: number, footprint: number, len: number, topicId: number, kind: number, offset: number, remaining: number): void {
    zeroFramePadding(this.v.words, pos, footprint);
    // Salt 0 and CRC 0: the worker seals the frame once it knows its block.
    encodeFrame(this.v.words, pos, len, topicId, kind, offset, 0, remaining);
  }

  writePayload(pos: number, data: Uint8Array | string, len: number): void {
    if (typeof data === 'string') this.buf.write(data, payloadStart(pos), len, 'utf8');
    else this.v.data.set(data, payloadStart(pos));
  }

  /** Claims and writes the TopicDef record of `t` (not published). */
  claimTopicDef(t: ProducerTopic): boolean {
    const len = t.nameBytes.length;
    const fp = recordFootprint(len);
    const pos = this.claim(fp);
    if (pos < 0) return false;
    this.writeHeader(pos, fp, len, t.id, RecordKind.TopicDef, 0, 1);
    this.v.data.set(t.nameBytes, payloadStart(pos));
    return true;
  }

  /** Publishes everything claimed so far and wakes the worker if it sleeps. */
  publish(): void {
    // The record bytes were written with plain stores; this SeqCst store orders them before
    // the worker's Atomics.load of Head, so it never sees a half-written record.
    Atomics.store(this.v.ctl, RingSlot.Head, this.head | 0);
    this.publishedHead = this.head;
    this.publishedLogical = this.logical;
    wakeWorker(this.shardCtl);
  }

  /** Head as published, and as claimed (modulo 2^32): a sequenced publication's range. */
  get headBefore(): number {
    return this.publishedHead;
  }
  get headAfter(): number {
    return this.head;
  }

  /**
   * publish() for a sequenced publication (shared/producers/sequencer.ts): Head moves from
   * `before` by compareExchange, since the shard worker may have published these very records
   * already for a breaker that took the topic's lock while this thread stalled.
   */
  publishSequenced(before: number): void {
    Atomics.compareExchange(this.v.ctl, RingSlot.Head, before | 0, this.head | 0);
    this.publishedHead = this.head;
    this.publishedLogical = this.logical;
    wakeWorker(this.shardCtl);
  }

  /** Forgets every claim since the last publish. */
  revert(): void {
    this.logical -= (this.head - this.publishedHead) >>> 0;
    this.head = this.publishedHead;
  }

  /** Logical position the next claim starts at (the position of an External marker, say). */
  get position(): number {
    return this.logical;
  }

  /** Blocks the thread until `need` bytes are free (see waitUntil). */
  private waitForSpace(need: number): boolean {
    return this.waitUntil(() => {
      this.tailCache = Atomics.load(this.v.ctl, RingSlot.Tail) >>> 0;
      return ((this.head - this.tailCache) >>> 0) + need <= this.v.size;
    });
  }

  /**
   * Blocks the thread until `done()`, re-checked each time the worker releases space (it
   * bumps TailGen and notifies). Gives up (false) when the shard has failed, when the
   * operation's backpressureMs have passed, or when the worker released nothing for STALL_MS.
   */
  private waitUntil(done: () => boolean): boolean {
    const ctl = this.v.ctl;
    if (this.deadline === 0) this.deadline = Date.now() + this.backpressureMs;
    let lastGen = Atomics.load(ctl, RingSlot.TailGen);
    let progressAt = Date.now();
    for (;;) {
      // TailGen is read before the condition: a release after the check changes it, so the
      // wait below returns at once instead of missing that release.
      const gen = Atomics.load(ctl, RingSlot.TailGen);
      if (done()) return true;
      if (Atomics.load(this.shardCtl, RingSlot.State) !== 0) return false;
      const now = Date.now();
      if (gen !== lastGen) {
        lastGen = gen;
        progressAt = now;
      }
      if (this.deadline - now <= 0) return false;
      const stallLeft = progressAt + STALL_MS - now;
      if (stallLeft <= 0) {
        this.stalled = true;
        return false;
      }
      // Published records may still sit in the ring because the worker sleeps; make sure it
      // knows, then wait for it to release space.
      wakeWorker(this.shardCtl);
      Atomics.wait(ctl, RingSlot.TailGen, gen, Math.min(this.deadline - now, stallLeft));
    }
  }

  /** Bytes of beside-the-ring payloads not yet written by the worker. */
  externalBytes(): number {
    return loadBig(this.v.big, RingBig.ExternalBytes);
  }

  /** Blocks (as waitForSpace does) until external payloads in flight are at most `limit`. */
  waitForExternal(limit: number): boolean {
    return this.waitUntil(() => this.externalBytes() <= limit);
  }
}

export function backpressureError(shard: number, ms: number, stalled: boolean): WalrusError {
  const why = stalled
    ? `its ring is full and its worker has released no space for ${STALL_MS} ms`
    : `its ring stayed full for backpressureMs (${ms} ms)`;
  return new WalrusError('ERR_WALRUS_BACKPRESSURE', `shard ${shard} could not take the entry: ${why}; nothing was written (await wal.drain() and retry)`);
}
