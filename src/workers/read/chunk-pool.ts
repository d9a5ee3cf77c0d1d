/**
 * Read buffers to reuse. Every read fills its chunks with pread, and a chunk in new memory
 * costs a page fault per 4 KiB the first time it is written (4-7 us each on the development
 * VM: about 5 ms per 4 MiB, more than the read and its checksums), so buffers come back here
 * from the main thread (RecordBatch.release, 'recycle' messages) and from the worker's own
 * reads that did not hand theirs over (copied out, or holding no entry), and later reads
 * fill them again. One pool per shard worker (module state: a worker serves one shard).
 */

/** Most bytes the pool keeps: beyond that, buffers given back are left to the collector. */
const POOL_MAX_BYTES = 32 * 1024 * 1024;
/** Smallest buffer worth keeping (smaller reads are cheap to allocate). */
const POOL_MIN_BYTES = 64 * 1024;

const free: ArrayBuffer[] = [];
let freeBytes = 0;

/** Buffers the pool may reuse: nothing else may hold a view of them any more. */
export function recycleChunks(buffers: readonly ArrayBuffer[]): void {
  for (const b of buffers) {
    // A buffer detached since (a transfer) reads as 0 bytes.
    if (b.byteLength < POOL_MIN_BYTES || freeBytes + b.byteLength > POOL_MAX_BYTES) continue;
    free.push(b);
    freeBytes += b.byteLength;
  }
}

/**
 * `length` bytes to read into: a view of a pooled buffer at least that long and at most
 * twice as long (plus 64 KiB), else new memory (not zeroed: the caller writes every byte).
 */
export function takeChunk(length: number): Uint8Array {
  for (let k = free.length - 1; k >= 0; k--) {
    const b = free[k]!;
    if (b.byteLength < length || b.byteLength > 2 * length + POOL_MIN_BYTES) continue;
    free[k] = free[free.length - 1]!;
    free.pop();
    freeBytes -= b.byteLength;
    return new Uint8Array(b, 0, length);
  }
  return Buffer.allocUnsafeSlow(length);
}

/** Bytes the pool holds (tests). */
export function pooledBytes(): number {
  return freeBytes;
}
