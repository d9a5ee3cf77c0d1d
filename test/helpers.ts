/** Shared test helpers: temporary directories that are always removed. */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach } from 'vitest';

const made: string[] = [];

afterEach(() => {
  for (const d of made.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A fresh temporary directory (under `parent`, default os.tmpdir()), removed after the current test. */
export function tempDir(prefix = 'walrus-test-', parent = tmpdir()): string {
  const d = mkdtempSync(join(parent, prefix));
  made.push(d);
  return d;
}

/**
 * A fresh temporary directory on a RAM file system (/dev/shm) where there is one, else like
 * tempDir(). For tests that check recovery logic over thousands of files and opens, not the
 * disk: there an fdatasync costs nothing instead of ~2 ms on the shared virtual disk, which
 * made such a sweep take longer than the test timeout while other work used the disk.
 */
export function ramTempDir(prefix = 'walrus-test-'): string {
  return tempDir(prefix, existsSync('/dev/shm') ? '/dev/shm' : tmpdir());
}

/**
 * Resolves once the shard of `topic` has answered every read this thread posted to it before
 * the call that finds nothing (a caught-up subscriber's or live read stream's), and the work
 * those answers started here has run: such a reader is then waiting for an append. Proved by
 * order, not by a delay: one event-loop turn first lets reads posted from promise
 * continuations go out; then a peek (it moves no cursor) is answered after them, because a
 * shard worker answers reads that hold nothing back in the order it receives them, and Node
 * runs the microtasks one message starts before it delivers the next. (A StrictlyAtOnce read
 * that returns entries is answered after its fsync, possibly after a later peek.)
 */
export async function readersCaughtUp(wal: { readNext(topic: string, checkpoint: boolean): Promise<unknown> }, topic: string): Promise<void> {
  await new Promise((r) => setImmediate(r));
  await wal.readNext(topic, false);
}

/** Collects an async iterator into an array. */
export async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

/** Deterministic pseudo-random bytes (shared with the child processes' fixtures). */
export { pseudoRandom } from './fixtures/payload.mjs';

/**
 * The 'portable' project (vitest.config.ts): every thread uses the portable I/O path, which
 * has the 'fd' backend only ('mmap' and 'memory' fail with ERR_WALRUS_ADDON_REQUIRED, which
 * test/portable.test.ts checks), and no power-loss journal (the addon's test build has it).
 */
export const PORTABLE = process.env.WALRUS_NATIVE === '0';

/**
 * Backends whose semantics the semantic suites (append, consumer, ring, streams, typed
 * records) check: each suite runs once per backend with `describe.each`. The disk backend is
 * the one the vitest project selects (WALRUS_TEST_BACKEND, test/setup-backend.ts), so the
 * 'mmap' project runs these suites on mmap; the memory backend runs once, in the 'fd'
 * project (not in the 'portable' one, which has no memory backend). Durability and crash suites are about files and stay on the disk backends.
 */
export type SemanticBackend = 'fd' | 'mmap' | 'memory';
export const SEMANTIC_BACKENDS: readonly SemanticBackend[] =
  process.env.WALRUS_TEST_BACKEND === 'mmap' ? ['mmap'] : PORTABLE ? ['fd'] : ['fd', 'memory'];
