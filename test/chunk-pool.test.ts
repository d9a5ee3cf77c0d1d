/**
 * The shard worker's pool of read buffers (src/workers/read/chunk-pool.ts): what it keeps,
 * what it hands out, and its bound. RecordBatch.release feeds it (test/fetch.test.ts checks
 * that reads into recycled buffers return exactly their entries).
 */
import { describe, expect, it } from 'vitest';
import { pooledBytes, recycleChunks, takeChunk } from '../dist/workers/read/chunk-pool.js';

const KiB = 1024;
const MiB = 1024 * KiB;

describe('the read buffer pool', () => {
  it('hands a kept buffer to a read of about its size, new memory otherwise; keeps at most 32 MiB of buffers of 64 KiB and more', () => {
    expect(pooledBytes()).toBe(0);
    const a = new ArrayBuffer(MiB);
    recycleChunks([a, new ArrayBuffer(16 * KiB)]); // too small to keep
    expect(pooledBytes()).toBe(MiB);
    // Too large for a 100 KiB read (more than twice plus 64 KiB), and too small for 2 MiB.
    expect(takeChunk(100 * KiB).buffer).not.toBe(a);
    expect(takeChunk(2 * MiB).buffer).not.toBe(a);
    const view = takeChunk(700 * KiB);
    expect(view.buffer).toBe(a);
    expect([view.byteOffset, view.length]).toEqual([0, 700 * KiB]);
    expect(pooledBytes()).toBe(0);
    // The bound: 40 buffers of 1 MiB, 32 kept.
    recycleChunks(Array.from({ length: 40 }, () => new ArrayBuffer(MiB)));
    expect(pooledBytes()).toBe(32 * MiB);
    for (let i = 0; i < 32; i++) takeChunk(MiB);
    expect(pooledBytes()).toBe(0);
    // A buffer transferred away since (detached) is not kept.
    const gone = new ArrayBuffer(MiB);
    structuredClone(gone, { transfer: [gone] });
    recycleChunks([gone]);
    expect(pooledBytes()).toBe(0);
  });
});
