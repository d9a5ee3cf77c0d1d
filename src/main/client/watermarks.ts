/**
 * Waiting for a shard worker's watermarks in its ring's control area: Durable (the main
 * side of group commit: one fsync releases every waiter up to it), Written, and the room
 * that the worker releases (Tail, external payload bytes). The worker bumps DurableGen or
 * TailGen and notifies whenever one moves. The worker itself (its liveness, its failure) is
 * ShardClient's (shard.ts).
 */
import { ShardState } from '../../shared/format/layout.js';
import { RingBig, RingSlot, loadBig, storeBig, wakeWorker } from '../../shared/ring.js';
import type { Appender } from './appender.js';
import { STALL_MS, type RingProducer } from './producer.js';

/**
 * Longest asynchronous wait on a ring control slot (TailGen, DurableGen) before its
 * condition is checked again: the worker notifies on every change, so this only bounds what
 * a missed notification costs (a quarter of a second, never a hang).
 */
const WAIT_RECHECK_MS = 250;

interface Waiter {
  target: number;
  resolve: () => void;
  reject: (e: Error) => void;
}

/** What the waits need from the shard's worker client. */
export interface WatermarkShard {
  /** Keeps the process alive while something waits on the shard; paired with release. */
  hold(): void;
  release(): void;
  /** Throws the shard's failure, if any. */
  checkWritable(): void;
  /** Why nothing more will be written: the shard's failure, or a closed error once its worker exited; else null. */
  stopped(): Error | null;
}

export class Watermarks {
  private readonly producer: RingProducer;
  private readonly durableWaiters: Waiter[] = [];
  private watching = false;

  constructor(
    private readonly appender: Appender,
    private readonly shard: WatermarkShard,
  ) {
    this.producer = appender.producer;
  }

  /**
   * Resolves once everything published so far is durable; forces a prompt fsync. Rejects
   * once the shard has failed, even when nothing was pending: a failed shard is reported
   * by every call until the log is reopened.
   */
  waitDurable(): Promise<void> {
    const target = this.producer.publishedLogical;
    const big = this.producer.v.big;
    // A closing shard still writes and fsyncs everything published (its close makes it
    // durable): the wait goes on, and watchDurable settles it once the shard has stopped.
    // A failed or closed one refuses at once.
    if (Atomics.load(this.producer.shardCtl, RingSlot.State) !== ShardState.Closing) {
      try {
        this.shard.checkWritable();
      } catch (err) {
        return Promise.reject(err);
      }
    }
    if (loadBig(big, RingBig.Durable) >= target) return Promise.resolve();
    if (loadBig(big, RingBig.SyncRequest) < target) storeBig(big, RingBig.SyncRequest, target);
    wakeWorker(this.producer.shardCtl);
    return new Promise<void>((resolve, reject) => {
      this.shard.hold();
      this.durableWaiters.push({ target, resolve, reject });
      if (!this.watching) void this.watchDurable();
    });
  }

  /** Resolves once everything published so far is written to the files (not necessarily durable). */
  async waitWritten(): Promise<void> {
    await this.waitWrittenTo(this.producer.publishedLogical);
  }

  /** Resolves once everything published up to ring position `target` is written to the files. */
  async waitWrittenTo(target: number): Promise<void> {
    await this.waitSlot(RingSlot.TailGen, () => loadBig(this.producer.v.big, RingBig.Written) >= target);
  }

  /**
   * Blocks the thread until everything published so far is written to the files, for a
   * process 'exit' listener (nothing asynchronous runs there, but the worker thread still
   * does until the listeners return). Gives up, returning false, once the shard has failed
   * or exited or its worker has written nothing for STALL_MS, so a broken shard cannot hang
   * the exit. Returns at once when the ring is empty.
   */
  writeAllSync(): boolean {
    if (this.producer.inUse() === 0) return true;
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
      // A close in progress (close() called and not awaited before process.exit()) writes
      // every ring before it stores Closed: wait for it as for any write. Giving up on
      // Closing, as this did, let the exit stop the worker in the middle of that last drain:
      // 1 run in 20 lost entries on mmap (122 and 637 of 20,000).
      const state = Atomics.load(this.producer.shardCtl, RingSlot.State);
      if (state === ShardState.Closed) return true;
      if (this.shard.stopped() !== null || state === ShardState.Failed) return false;
      if (now > written) {
        written = now;
        progressAt = Date.now();
      }
      const left = progressAt + STALL_MS - Date.now();
      if (left <= 0) return false;
      wakeWorker(this.producer.shardCtl);
      Atomics.wait(ctl, RingSlot.TailGen, gen, left);
    }
  }

  /** Resolves when the ring is at most half full and external payloads are below their bound. */
  async waitRoom(): Promise<void> {
    await this.waitSlot(RingSlot.TailGen, () => this.appender.hasRoom());
  }

  /** Rejects every durability waiter (the shard failed or its worker exited). */
  rejectAll(err: Error): void {
    for (const w of this.durableWaiters.splice(0)) {
      this.shard.release();
      w.reject(err);
    }
  }

  private async waitSlot(slot: number, done: () => boolean): Promise<void> {
    const ctl = this.producer.v.ctl;
    this.shard.hold();
    try {
      for (;;) {
        const gen = Atomics.load(ctl, slot);
        if (done()) return;
        const stopped = this.shard.stopped();
        if (stopped) throw stopped;
        wakeWorker(this.producer.shardCtl);
        const r = Atomics.waitAsync(ctl, slot, gen, WAIT_RECHECK_MS);
        if (r.async) await r.value;
      }
    } finally {
      this.shard.release();
    }
  }

  /**
   * Resolves every durability waiter up to `durable`. Targets are taken from a
   * non-decreasing position, so waiters are in target order: one fsync releases every waiter
   * up to its watermark at once.
   */
  private releaseUpTo(durable: number): void {
    while (this.durableWaiters.length > 0 && this.durableWaiters[0]!.target <= durable) {
      this.durableWaiters.shift()!.resolve();
      this.shard.release();
    }
  }

  private async watchDurable(): Promise<void> {
    const { ctl, big } = this.producer.v;
    this.watching = true;
    try {
      while (this.durableWaiters.length > 0) {
        const gen = Atomics.load(ctl, RingSlot.DurableGen);
        const durable = loadBig(big, RingBig.Durable);
        this.releaseUpTo(durable);
        if (this.durableWaiters.length === 0) break;
        // A producer thread hears of a failure or a close only through State (the worker
        // notifies DurableGen when it changes); the opening thread also through messages.
        const stopped = this.shard.stopped();
        if (stopped) {
          // The stop may have come right after a last fsync (a close makes everything
          // published durable first): what that covered resolves, the rest is rejected.
          this.releaseUpTo(loadBig(big, RingBig.Durable));
          this.rejectAll(stopped);
          break;
        }
        // A failure rejects every waiter through rejectAll, when the worker's 'failed'
        // message (which carries the error) arrives; until then keep waiting, boundedly.
        const r = Atomics.waitAsync(ctl, RingSlot.DurableGen, gen, WAIT_RECHECK_MS);
        if (r.async) await r.value;
      }
    } finally {
      this.watching = false;
    }
  }
}
