/**
 * A full ring: by default append waits for the worker (a loop of appends runs at the disk's
 * pace and never throws for it); `backpressureMs` bounds the wait; a failed shard ends it.
 */
import { Worker } from 'node:worker_threads';
import { describe, expect, it, vi } from 'vitest';
import { FsyncSchedule, Walrus } from '../dist/index.js';
import { resolveOptions } from '../dist/main/options.js';
import { RingProducer } from '../dist/main/client/producer.js';
import { RingSlot, createRing } from '../dist/shared/ring.js';
import { ShardState } from '../dist/shared/format/layout.js';
import { tempDir } from './helpers.js';

const RING = 4096;

/** What the stand-in worker does, in order (see standIn). */
type Step = { do: 'blocked' } | { do: 'advance'; ms: number } | { do: 'settle' } | { do: 'release' } | { do: 'fail' };

/**
 * A stand-in for a shard worker, run against a producer whose ring is full, with a fake clock:
 * while it runs, this thread's Date.now() (which the producer's deadlines read) returns a
 * fixed base plus the milliseconds the stand-in has advanced it by, so time passes only
 * when a step says so. The producer announces each wait by ringing the doorbell (the stand-in
 * poses as a sleeping worker), which orders the steps with the producer's decisions:
 * - blocked: waits until the producer has rung since the stand-in was made, i.e. is about
 *   to wait for space;
 * - advance: moves the clock forward;
 * - settle: proves that the producer looked at the clock as it is now and chose to wait on:
 *   wakes it (notify, TailGen unchanged: no progress) until it rings again, twice, because
 *   the first ring may come from a round that read the clock before the last advance;
 * - release: frees the whole ring, as the real worker does (Tail = Head, bump TailGen);
 * - fail: marks the shard failed and wakes the producer.
 * After its steps the stand-in waits for `finished` (set by the test once claim returned);
 * only if that takes 10 s does it release the ring, so that a producer which never gives up
 * fails the test instead of blocking this thread for good. A producer that gives up before a
 * settle step never rings again: the stand-in then throws (after 10 s), rejecting the promise.
 */
function standIn(sab: SharedArrayBuffer, steps: Step[]): { done: Promise<number>; clock: Int32Array; finished: Int32Array } {
  const source = `
    const { workerData: { sab, clock, finished, steps, slots, failed, rungAtStart } } = require('node:worker_threads');
    const ctl = new Int32Array(sab, 0, 16);
    const time = new Int32Array(clock);
    const end = new Int32Array(finished);
    const wake = (slot) => Atomics.notify(ctl, slot);
    const ring = (nudge, seen = Atomics.load(ctl, slots.Doorbell)) => {
      for (let waited = 0; Atomics.load(ctl, slots.Doorbell) === seen; waited += 5) {
        if (waited > 10000) throw new Error('the producer stopped waiting (no doorbell for 10 s)');
        if (nudge) wake(slots.TailGen);
        Atomics.wait(ctl, slots.Doorbell, seen, 5);
      }
    };
    const release = () => {
      Atomics.store(ctl, slots.Tail, Atomics.load(ctl, slots.Head));
      Atomics.add(ctl, slots.TailGen, 1);
      wake(slots.TailGen);
    };
    for (const step of steps) {
      if (step.do === 'blocked') ring(false, rungAtStart);
      else if (step.do === 'advance') Atomics.add(time, 0, step.ms);
      else if (step.do === 'settle') { ring(true); ring(true); }
      else if (step.do === 'release') release();
      else if (step.do === 'fail') {
        Atomics.store(ctl, slots.State, failed);
        Atomics.add(ctl, slots.TailGen, 1);
        wake(slots.TailGen);
      }
    }
    if (Atomics.wait(end, 0, 0, 10000) === 'timed-out') release();
  `;
  const slots = { Head: RingSlot.Head, Tail: RingSlot.Tail, TailGen: RingSlot.TailGen, State: RingSlot.State, Doorbell: RingSlot.Doorbell, WorkerSleeping: RingSlot.WorkerSleeping };
  const clock = new Int32Array(new SharedArrayBuffer(4));
  const finished = new Int32Array(new SharedArrayBuffer(4));
  // Posing as a sleeping worker from the start: the producer rings from its first wait on,
  // which may come before the stand-in thread runs.
  const ctl = new Int32Array(sab, 0, 16);
  Atomics.store(ctl, RingSlot.WorkerSleeping, 1);
  const rungAtStart = Atomics.load(ctl, RingSlot.Doorbell);
  const workerData = { sab, clock: clock.buffer, finished: finished.buffer, steps, slots, failed: ShardState.Failed, rungAtStart };
  const worker = new Worker(source, { eval: true, workerData });
  const done = new Promise<number>((resolve, reject) => {
    worker.once('error', reject);
    worker.once('exit', resolve);
  });
  return { done, clock, finished };
}

/** Runs `claim` with Date.now() reading the stand-in's clock; then lets the stand-in end. */
function withClock<T>(clock: Int32Array, finished: Int32Array, claim: () => T): T {
  const base = Date.now();
  const now = vi.spyOn(Date, 'now').mockImplementation(() => base + Atomics.load(clock, 0));
  try {
    return claim();
  } finally {
    now.mockRestore();
    Atomics.store(finished, 0, 1);
    Atomics.notify(finished, 0);
  }
}

/** A producer whose ring is full (published, not released). */
function fullProducer(backpressureMs: number): { p: RingProducer; sab: SharedArrayBuffer } {
  const sab = createRing(RING);
  const p = new RingProducer(sab, backpressureMs);
  p.begin();
  expect(p.claim(RING)).toBe(0);
  p.publish();
  return { p, sab };
}

describe('a full ring', () => {
  it('by default makes append wait for a worker far slower than the old 100 ms bound, instead of throwing', async () => {
    const { backpressureMs } = resolveOptions(undefined, 'fd');
    expect(backpressureMs).toBe(Number.POSITIVE_INFINITY);
    const { p, sab } = fullProducer(backpressureMs);
    // 9 s without a release (the stall rule gives up after 10 s), then the ring is freed.
    const { done, clock, finished } = standIn(sab, [{ do: 'blocked' }, { do: 'advance', ms: 9000 }, { do: 'settle' }, { do: 'release' }]);
    p.begin();
    // Blocks until the stand-in releases the ring; with the old default (100 ms) it gave up.
    expect(withClock(clock, finished, () => p.claim(64))).toBe(0);
    expect(p.stalled).toBe(false);
    expect(await done).toBe(0);
  });

  it('with backpressureMs gives up once that much time has passed, not before', async () => {
    const { p, sab } = fullProducer(50);
    const { done, clock, finished } = standIn(sab, [{ do: 'blocked' }, { do: 'advance', ms: 49 }, { do: 'settle' }, { do: 'advance', ms: 1 }]);
    p.begin();
    expect(withClock(clock, finished, () => p.claim(64))).toBe(-1);
    expect(p.stalled).toBe(false);
    expect(await done).toBe(0);
  });

  it('stops waiting once the shard fails, whatever backpressureMs says', async () => {
    const { p, sab } = fullProducer(Number.POSITIVE_INFINITY);
    const { done, clock, finished } = standIn(sab, [{ do: 'blocked' }, { do: 'fail' }]);
    p.begin();
    expect(withClock(clock, finished, () => p.claim(64))).toBe(-1);
    expect(await done).toBe(0);
  });

  it('a loop of 200,000 appends into a small ring on a syncing disk completes, every entry kept', async () => {
    const dir = tempDir();
    const n = 200_000;
    const opts = { dir, shards: 1, ringBytes: 64 * 1024, fsync: FsyncSchedule.SyncEach };
    const wal = await Walrus.open(opts);
    try {
      for (let i = 0; i < n; i++) wal.append('t' + (i % 5), 'y'.repeat(100));
    } finally {
      await wal.close();
    }
    const again = await Walrus.open(opts);
    try {
      let count = 0;
      for (let k = 0; k < 5; k++) for await (const e of again.iterate('t' + k)) count += e.data.length === 100 ? 1 : 0;
      expect(count).toBe(n);
    } finally {
      await again.close();
    }
  }, 120_000);
});
