/**
 * The shard ring: a single-producer single-consumer byte ring in a SharedArrayBuffer.
 *
 * The main thread (producer) copies records, already in their on-disk framing, to `Head`;
 * the shard worker (consumer) writes them to disk straight from the ring and then releases
 * them by advancing `Tail`. Both counters count bytes modulo 2^32 and the ring size is a
 * power of two <= 2^30, so `(head - tail) >>> 0` is always the number of bytes in use.
 *
 * A record never wraps: when it does not fit before the end of the ring, the producer writes
 * a Wrap record (or, if fewer than RECORD_HEADER_BYTES remain, nothing: the consumer skips
 * such a short remainder by itself) and continues at ring offset 0.
 */
import { RING_BIG_BASE, RING_CONTROL_BYTES, RingBig, RingSlot } from './format/layout.js';

export const MIN_RING_BYTES = 4096;
export const MAX_RING_BYTES = 2 ** 30;

export interface RingViews {
  sab: SharedArrayBuffer;
  /** Int32 control slots (RingSlot). */
  ctl: Int32Array;
  /** BigInt64 control slots (RingBig). */
  big: BigInt64Array;
  /** The ring data. */
  data: Uint8Array;
  /** The ring data as Int32 words (records are 8-byte aligned). */
  words: Int32Array;
  size: number;
  mask: number;
}

export function createRing(size: number): SharedArrayBuffer {
  return new SharedArrayBuffer(RING_CONTROL_BYTES + size);
}

export function ringViews(sab: SharedArrayBuffer): RingViews {
  const size = sab.byteLength - RING_CONTROL_BYTES;
  return {
    sab,
    ctl: new Int32Array(sab, 0, RING_BIG_BASE / 4),
    big: new BigInt64Array(sab, RING_BIG_BASE, (RING_CONTROL_BYTES - RING_BIG_BASE) / 8),
    data: new Uint8Array(sab, RING_CONTROL_BYTES, size),
    words: new Int32Array(sab, RING_CONTROL_BYTES, size / 4),
    size,
    mask: size - 1,
  };
}

/** Reads a BigInt64 control slot as a number (logical positions stay far below 2^53). */
export function loadBig(big: BigInt64Array, slot: number): number {
  return Number(Atomics.load(big, slot));
}

export function storeBig(big: BigInt64Array, slot: number, value: number): void {
  Atomics.store(big, slot, BigInt(value));
}

export function addBig(big: BigInt64Array, slot: number, delta: number): void {
  Atomics.add(big, slot, BigInt(delta));
}

/**
 * Wakes the worker if it sleeps. Pairs with the worker's sleep protocol (shard-worker.ts):
 * the worker reads Doorbell, then sets WorkerSleeping, then re-checks for work, then waits on
 * Doorbell. The producer has already stored Head (or SyncRequest) before calling this, so
 * either it sees WorkerSleeping = 1 and bumps Doorbell after the worker read it (the wait
 * returns at once or is notified), or the worker's re-check comes after the store and sees
 * the new work. Atomics are sequentially consistent, which is what makes this Dekker-style
 * handshake correct.
 */
export function wakeWorker(ctl: Int32Array): void {
  if (Atomics.load(ctl, RingSlot.WorkerSleeping) === 1) {
    Atomics.add(ctl, RingSlot.Doorbell, 1);
    Atomics.notify(ctl, RingSlot.Doorbell);
  }
}

export { RingBig, RingSlot };
