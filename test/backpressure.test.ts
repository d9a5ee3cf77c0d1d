/**
 * A full ring: by default append waits for the worker (a loop of appends runs at the disk's
 * pace and never throws for it); `backpressureMs` bounds the wait; a failed shard ends it.
 */
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { FsyncSchedule, Walrus } from '../dist/index.js';
import { resolveOptions } from '../dist/main/options.js';
import { RingProducer } from '../dist/main/producer.js';
import { RingSlot, createRing } from '../dist/shared/ring.js';
import { ShardState } from '../dist/shared/layout.js';
import { tempDir } from './helpers.js';

const RING = 4096;

/**
 * A stand-in for a shard worker that is slower than the producer: after `delayMs` it releases
 * the whole ring (or, with `fail`, marks the shard failed), bumping TailGen as the real
 * worker does.
 */
function slowConsumer(sab: SharedArrayBuffer, delayMs: number, fail: boolean): Promise<number> {
  const source = `
    const { workerData: { sab, delayMs, fail, slots, failed } } = require('node:worker_threads');
    const ctl = new Int32Array(sab, 0, 16);
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, delayMs);
    if (fail) Atomics.store(ctl, slots.State, failed);
    else Atomics.store(ctl, slots.Tail, Atomics.load(ctl, slots.Head));
    Atomics.add(ctl, slots.TailGen, 1);
    Atomics.notify(ctl, slots.TailGen);
  `;
  const slots = { Head: RingSlot.Head, Tail: RingSlot.Tail, TailGen: RingSlot.TailGen, State: RingSlot.State };
  const worker = new Worker(source, { eval: true, workerData: { sab, delayMs, fail, slots, failed: ShardState.Failed } });
  return new Promise((resolve, reject) => {
    worker.once('error', reject);
    worker.once('exit', resolve);
  });
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
  it('by default makes append wait for a worker slower than the old 100 ms bound, instead of throwing', async () => {
    const { backpressureMs } = resolveOptions(undefined, 'fd');
    expect(backpressureMs).toBe(Number.POSITIVE_INFINITY);
    const { p, sab } = fullProducer(backpressureMs);
    const done = slowConsumer(sab, 300, false);
    p.begin();
    // Blocks until the stand-in releases the ring; with the old default (100 ms) it gave up.
    expect(p.claim(64)).toBe(0);
    expect(p.stalled).toBe(false);
    await done;
  });

  it('with backpressureMs gives up when the worker takes longer than that', async () => {
    const { p, sab } = fullProducer(50);
    const done = slowConsumer(sab, 1000, false);
    p.begin();
    expect(p.claim(64)).toBe(-1);
    expect(p.stalled).toBe(false);
    await done;
  });

  it('stops waiting once the shard fails, whatever backpressureMs says', async () => {
    const { p, sab } = fullProducer(Number.POSITIVE_INFINITY);
    const done = slowConsumer(sab, 200, true);
    p.begin();
    expect(p.claim(64)).toBe(-1);
    await done;
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
