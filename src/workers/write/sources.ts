/**
 * The rings a shard worker drains: the opening thread's (the main ring, which also holds the
 * shard's control slots: State, Doorbell, WorkerSleeping) and one per producer thread that
 * appends to this shard (src/main/threads/). Each ring has its own Head, Tail and watermarks
 * (Written, Durable, SyncRequest, ExternalBytes) in its control area; the worker keeps, per
 * ring, how far it has consumed it and how far a collect in progress has taken it.
 */
import { PendingSeals } from '../../shared/format/frame.js';
import { IOV_SOURCE_RING, RECORD_HEADER_BYTES } from '../../shared/format/layout.js';
import { RingBig, RingSlot, addBig, loadBig, storeBig, type RingViews } from '../../shared/ring.js';
import type { ExternalGroup } from './batch.js';

export class RingSource {
  /** Ring position released to the producer (modulo 2^32), and the same as a logical position. */
  tail = 0;
  logicalTail = 0;
  /** Where the batch under construction has taken the ring to, and the bytes it took. */
  batchTail = 0;
  batchConsumed = 0;
  /** Bytes of External payloads the batch under construction writes from this ring. */
  batchExternalBytes = 0;
  /** Logical position made durable by the last fsync. */
  durableLogical = 0;
  /** The iovec source number of this ring's buffer in the batch under construction (-2: none yet). */
  batchSource = -2;
  /** Entries that travel beside this ring, by the logical ring position of their External record. */
  readonly externals = new Map<number, ExternalGroup>();
  /** Frames taken one at a time, salted when placed, their CRCs stored together. */
  readonly seals: PendingSeals;
  /** The whole SharedArrayBuffer as bytes (iovec offsets count from its start, as the main ring's do). */
  readonly whole: Uint8Array;
  /** Head as the last collect of this ring read it (see hasNewData). */
  seenHead = 0;
  /** The producer asked to detach: dropped once drained. */
  detaching = false;

  constructor(
    readonly ring: RingViews,
    /** The producer's ledger index in the directory; -1 for the main ring. */
    readonly producer: number,
    /** The ring's id (unique in the log; 0 for the main ring). */
    readonly ringId = 0,
  ) {
    this.seals = new PendingSeals(ring.data, ring.words, ring.size / RECORD_HEADER_BYTES + 1);
    this.whole = new Uint8Array(ring.sab);
  }

  get isMain(): boolean {
    return this.producer < 0;
  }

  /** Whether the ring holds published records the batch has not taken. */
  hasData(): boolean {
    return (Atomics.load(this.ring.ctl, RingSlot.Head) >>> 0) !== this.batchTail;
  }

  /** The logical ring position up to which records are published (Head as a logical position). */
  publishedLogical(): number {
    return this.logicalTail + ((Atomics.load(this.ring.ctl, RingSlot.Head) - this.tail) >>> 0);
  }

  /**
   * Whether records were published since the last collect read Head: what can unblock a
   * collect that stopped at a record waiting for an offset in another ring.
   */
  hasNewData(): boolean {
    return (Atomics.load(this.ring.ctl, RingSlot.Head) >>> 0) !== this.seenHead;
  }

  /** The iovec source of this ring for the batch: the addon's own ring, or an ext buffer. */
  iovSource(addExt: (b: Uint8Array) => number): number {
    if (this.isMain) return IOV_SOURCE_RING;
    if (this.batchSource === -2) this.batchSource = addExt(this.whole);
    return this.batchSource;
  }

  /** After the batch is written: releases the ring space it took and publishes Written. */
  release(): boolean {
    const { ctl, big } = this.ring;
    const consumed = this.batchConsumed;
    this.batchSource = -2;
    if (consumed === 0 && this.batchExternalBytes === 0) return false;
    this.tail = this.batchTail;
    this.logicalTail += consumed;
    this.batchConsumed = 0;
    // Space is released only now: until the write completed, the kernel read from it.
    Atomics.store(ctl, RingSlot.Tail, this.tail | 0);
    storeBig(big, RingBig.Written, this.logicalTail);
    if (this.batchExternalBytes > 0) addBig(big, RingBig.ExternalBytes, -this.batchExternalBytes);
    this.batchExternalBytes = 0;
    Atomics.add(ctl, RingSlot.TailGen, 1);
    Atomics.notify(ctl, RingSlot.TailGen);
    return true;
  }

  /** After an fsync: everything released so far is durable. */
  markDurable(): void {
    const { ctl, big } = this.ring;
    this.durableLogical = this.logicalTail;
    storeBig(big, RingBig.Durable, this.durableLogical);
    Atomics.add(ctl, RingSlot.DurableGen, 1);
    Atomics.notify(ctl, RingSlot.DurableGen);
  }

  /** Whether a sync() of this ring's producer waits for more than is durable. */
  syncRequested(): boolean {
    return loadBig(this.ring.big, RingBig.SyncRequest) > this.durableLogical;
  }

  /** Wakes whoever waits on this ring's watermarks (the shard failed or closed). */
  wakeAll(): void {
    const ctl = this.ring.ctl;
    Atomics.add(ctl, RingSlot.TailGen, 1);
    Atomics.notify(ctl, RingSlot.TailGen);
    Atomics.add(ctl, RingSlot.DurableGen, 1);
    Atomics.notify(ctl, RingSlot.DurableGen);
  }
}
