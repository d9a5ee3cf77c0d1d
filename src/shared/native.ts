/**
 * The addon's surface, typed, and the choice, once per thread, of what provides it: the C++
 * addon, or the portable I/O path (src/shared/portable/: the same surface on node:fs, for
 * where the addon cannot load). C++ stays thin: it performs system calls and checksums and
 * reports every failure; policy, defaults and argument validation live in TypeScript.
 *
 * Every failing system call throws an `Error` whose `code` is the errno name (`'EIO'`),
 * `errno` the positive errno number and `syscall` the call that failed (`'pwritev'`,
 * `'fdatasync'`, `'io_uring_enter'`, ...). Callers wrap it with `ioError()` (errors.ts).
 */
import { createRequire } from 'node:module';
import { workerData } from 'node:worker_threads';
import { WalrusError } from './errors.js';
import type { ShardInit } from './messages.js';
import { portableBinding } from './portable/index.js';

export interface IoContext {
  /** True when this context submits through io_uring, false when it uses pwritev or mappings. */
  readonly uring: boolean;
  /**
   * True for the mmap backend's context: writeBatch copies each write into a mapped window of
   * its fd (a RangeError, before anything is copied, when a write or sync names an fd that is
   * not registered with map() or falls outside its length) and makes a sync fd durable with
   * one msync(MS_SYNC) over the range written since its last sync when that range lies in one
   * live window, else with fdatasync.
   */
  readonly mapped: boolean;
  /**
   * Mapped contexts only: registers fd as a file of `length` bytes that writes may target.
   * Nothing is mapped here: writeBatch maps windows (at most 8 of 2 MiB per context, the
   * least recently used one unmapped first) over the ranges it writes, each only after
   * fallocate of exactly its range succeeded (a mapping over unallocated bytes could raise
   * SIGBUS); a write fails with that errno (EOPNOTSUPP where the file system cannot
   * allocate, ENOSPC when it has no room) otherwise. `unsynced` (default false): the file has
   * writes made through another descriptor and not yet synced, so its next sync is an
   * fdatasync rather than an msync of a window. Throws EINVAL when fd is registered.
   */
  map(fd: number, length: number, unsynced?: boolean): void;
  /** Unmaps fd's windows and forgets it (munmap); throws EBADF when fd is not registered. */
  unmap(fd: number): void;
  /**
   * Copies from fd at `position` into `buf` (from a live window when the range lies in one,
   * else pread); returns bytes copied (fewer at the end of the file or of its registered length).
   */
  readMapped(fd: number, buf: Uint8Array, position: number): number;
  /** Bytes mapped by this context now: at most 16 MiB (8 windows of 2 MiB). */
  readonly mappedBytes: number;
  /**
   * Writes a batch and optionally makes it durable, synchronously.
   *
   * `ops` holds `opCount` write operations of WRITE_OP_FIELDS doubles each:
   * `[fd, filePosition, firstIov, iovCount]`; each writes its iovecs back to back starting at
   * `filePosition`. `iovs` holds IOV_FIELDS doubles per iovec: `[source, offset, length]`,
   * where source IOV_SOURCE_RING (-1) means the ring SharedArrayBuffer given to the
   * constructor (offset from its byte 0) and source k >= 0 means `ext[k]` (offset from the
   * view's first byte). After every write has completed in full, each of the first
   * `syncCount` fds in `syncFds` is fdatasync'd. With io_uring all of it goes in one
   * submission (each fd's writes linked to its fdatasync); short writes are completed;
   * the first failure throws, and nothing after a failed write is reported as done.
   */
  writeBatch(
    ops: Float64Array,
    opCount: number,
    iovs: Float64Array,
    ext: Uint8Array[],
    syncFds: Int32Array,
    syncCount: number,
  ): void;
  /** Releases the io_uring instance and every mapping. Idempotent. */
  close(): void;
  /**
   * Test build only (`walrus_test.node`, see {@link NativeBinding.testSeams}); undefined in
   * the shipped addon. Makes the `nth` (1-based, counted from this call) write or fdatasync
   * performed by this context's writeBatch fail with `errno`. A write is one pwritev call or
   * one io_uring WRITEV completion, an fsync one fdatasync call or FSYNC completion; io_uring
   * completions are rewritten as they are reaped, so the normal handling of failed, short
   * and cancelled completions runs. With `short` (writes only), that write writes (pwritev)
   * or reports (io_uring) only half of its bytes, and the next pwritev, the attempt to
   * complete it, fails with `errno`. `nth = 0` clears the plan. On a mapped context no write
   * call exists (writes are copies), 'fsync' counts msync calls and 'map' counts mmap calls.
   */
  injectFault?(kind: 'write' | 'fsync' | 'map', nth: number, errno: number, short: boolean): void;
}

/** A markOnThreadExit hook (opaque). */
export interface ThreadExitMark {
  readonly __threadExitMark: unique symbol;
}

/** A background fdatasync started by `datasyncInBackground` (an opaque addon handle). */
export interface BackgroundSync {
  readonly __backgroundSync: unique symbol;
}

/** The file operations a test fault can fail (`TestSeams.fileFault`). */
export type FileFaultKind = 'open' | 'pwritev' | 'fdatasync' | 'fsync' | 'fallocate' | 'ftruncate' | 'rename' | 'unlink' | 'pread';

/**
 * The fault and power-loss seams of the test build of the addon (docs/DURABILITY.md). Only
 * `build/Release/walrus_test.node` has them: it is built by `npm run build:test-addon` (never
 * by `npm install`) and loaded in place of `walrus.node` by a process run with
 * `--conditions=walrus-test`. The shipped addon has no such code, so the variables below
 * mean nothing to it.
 */
export interface TestSeams {
  /**
   * A shard worker calls it before recovery touches a file, with its `process.env`: reads
   * `WALRUS_TEST_FAULT` and `WALRUS_TEST_POWERLOSS` (a TypeError when either is malformed),
   * turns on the power-loss journal, and applies a file fault to the calling thread. Returns
   * what it did, for the worker's debug log.
   */
  beforeRecovery(env: NodeJS.ProcessEnv): string[];
  /** Applies a context fault of `WALRUS_TEST_FAULT` in `env` to each of `contexts` (injectFault). */
  onContexts(env: NodeJS.ProcessEnv, contexts: IoContext[]): string[];
  /**
   * Simulated power loss: from now on, for the whole process, the addon journals in
   * `journalDir` the pre-image of every sector (`sectorBytes`: 512 or 4096) each write dirties
   * for the first time since its file's last sync, every file and directory sync, and every
   * directory entry created, removed or renamed. With `skipSync`, fdatasync and fsync report
   * success without syncing (the negative control).
   */
  powerLoss(journalDir: string, sectorBytes: number, skipSync: boolean): void;
  /**
   * Makes the `nth` (1-based, counted from this call) call of that file operation in this
   * thread fail with `errno` before it reaches the kernel. One plan per thread; `nth = 0`
   * clears it.
   */
  fileFault(kind: FileFaultKind, nth: number, errno: number): void;
}

export interface NativeBinding {
  /** CRC32C (Castagnoli) of `data`, continuing from `seed` (a previous result; default 0). */
  crc32c(data: Uint8Array, seed?: number): number;
  /** Whether crc32c uses the SSE4.2 (x86-64) or CRC (arm64) instructions. */
  crc32cHardware(): boolean;
  /**
   * For each of the first `count` byte positions in `positions`, computes the record CRC of
   * the frame at that position of `buf` (length read from its header) and stores it in the
   * frame's CRC field.
   */
  sealFrames(buf: Uint8Array, positions: Uint32Array, count: number): void;
  /**
   * Walks frames from `start` while each has a length that fits before `end` (the whole
   * footprint, padding to RECORD_ALIGN included) and a matching CRC; returns the position of
   * the first frame that fails either check, or the position where the walk reached `end` (or
   * fewer than RECORD_HEADER_BYTES remained). The result is always in [start, end].
   */
  verifyFrames(buf: Uint8Array, start: number, end: number): number;

  /**
   * The drain's hot loop: from `start`, takes Entry frames of `topic` with offsets
   * continuing from `offset`, while each fits before `limit` and the run within `room`
   * bytes; stamps `salt` into each and seals its CRC. Returns the bytes taken; fills
   * `out[0]` = frames, `out[1]` = offset after the last frame whose remaining is 1 (-1 if
   * none), `out[2]` = index pairs written from `out[RUN_OUT_FIELDS]` as (offset, position
   * relative to start) for offsets indexBase + k*indexEvery.
   */
  sealRun(
    buf: Uint8Array,
    start: number,
    limit: number,
    topic: number,
    offset: number,
    salt: number,
    room: number,
    out: Float64Array,
    indexBase: number,
    indexEvery: number,
  ): number;

  open(path: string, flags: number, mode: number): number;
  /**
   * memfd_create(name, MFD_CLOEXEC): an anonymous file with no path (the 'memory' backend's
   * segments). `name` only shows in /proc/<pid>/fd.
   */
  memfdCreate(name: string): number;
  close(fd: number): void;
  /**
   * Closes `fd` on a detached thread (for unlinked files whose last close frees blocks), then
   * with `dir` fsyncs that directory there; errors are not reported.
   */
  closeInBackground(fd: number, dir?: string): void;
  /**
   * Opens `path` read-only on a detached thread (an open file description of its own) and
   * fdatasyncs it, then with `dir` fsyncs that directory; returns a handle for
   * backgroundSyncResult. Makes a segment's next allocation step, or a new segment and its
   * directory entry, durable without stalling the worker on the writeback of dirty data.
   * Every write of the file the caller made must have completed when it calls.
   */
  datasyncInBackground(path: string, dir?: string): BackgroundSync;
  /** -1 while that sync runs (with `wait`, blocks until it is done), else 0 or its errno. */
  backgroundSyncResult(handle: BackgroundSync, wait: boolean): number;
  /**
   * The call of that sync that failed (`'open'`, `'fdatasync'`, `'fsync'`), or `''`: none
   * did, it still runs, or its thread could not be started (its result is then that error).
   */
  backgroundSyncSyscall(handle: BackgroundSync): string;
  /** Reads into `buf` from `position` until it is full or at end of file; returns bytes read. */
  pread(fd: number, buf: Uint8Array, position: number): number;
  /** Writes every byte of `bufs` at `position`, completing short writes; returns bytes written. */
  pwritev(fd: number, bufs: Uint8Array[], position: number): number;
  fdatasync(fd: number): void;
  fsync(fd: number): void;
  /** fallocate(fd, 0, offset, length); throws EOPNOTSUPP where the file system lacks it. */
  fallocate(fd: number, offset: number, length: number): void;
  ftruncate(fd: number, length: number): void;
  fstatSize(fd: number): number;
  rename(from: string, to: string): void;
  unlink(path: string): void;
  /** flock(fd, LOCK_EX|LOCK_NB or LOCK_SH|LOCK_NB); false when another holder has it. */
  flock(fd: number, exclusive: boolean): boolean;
  /** Pins the calling thread to `cpu`; false where the kernel refuses. */
  setAffinity(cpu: number): boolean;
  /**
   * Arms a hook that runs when the calling thread ends (Node-API environment cleanup, which
   * also runs for worker.terminate()): it stores `mark` into `words[index]` if that still
   * holds `token`. Null on the portable path, which has no such hook.
   */
  markOnThreadExit(words: Int32Array, index: number, token: number, mark: number): ThreadExitMark | null;
  /** Disarms a markOnThreadExit hook; a second call does nothing. */
  cancelThreadExitMark(handle: ThreadExitMark): void;
  /** True when io_uring_setup works here and supports what writeBatch needs. */
  uringSupported(): boolean;
  /** `mapped`: the mmap backend's context (useUring must then be false). */
  IoContext: new (ring: SharedArrayBuffer, useUring: boolean, queueDepth: number, mapped?: boolean) => IoContext;
  /** open(2) flag values of this platform. */
  constants: Readonly<Record<'O_RDONLY' | 'O_RDWR' | 'O_CREAT' | 'O_EXCL' | 'O_CLOEXEC' | 'O_NOFOLLOW' | 'O_DIRECTORY', number>>;
  /** The layout constants the addon was compiled with (see NATIVE_LAYOUT). */
  layout: Readonly<Record<string, number>>;
  /** Test build only: the fault and power-loss seams. Undefined in the shipped addon. */
  readonly testSeams?: TestSeams;
}

/**
 * Which implementation of NativeBinding a thread uses: `'native'`, the addon
 * (build/Release/walrus.node), or `'portable'`, src/shared/portable/ on node:fs.
 */
export type IoPath = 'native' | 'portable';

/**
 * The key of a shard worker's workerData (messages.ts ShardInit) that names the I/O path
 * its log resolved at open: a worker uses exactly that one, never its own fallback.
 */
export const WORKER_IO_PATH_KEY = 'walrusIoPath' satisfies keyof ShardInit;

const requireNative = createRequire(import.meta.url);
let addonLoad: { binding: NativeBinding } | { error: unknown } | undefined;

/**
 * The addon, loaded at most once per thread (Node loads a context-aware addon per isolate),
 * or null when it cannot load here (no build, another platform or C library). The
 * package's `imports` map resolves `#walrus-addon` to `build/Release/walrus.node`, or, in a
 * process run with `--conditions=walrus-test` (the test suite; worker threads inherit it), to
 * the test build `walrus_test.node` (see {@link TestSeams}).
 */
function loadAddon(): NativeBinding | null {
  if (addonLoad === undefined) {
    try {
      addonLoad = { binding: requireNative('#walrus-addon') as NativeBinding };
    } catch (error) {
      addonLoad = { error };
    }
  }
  return 'binding' in addonLoad ? addonLoad.binding : null;
}

/** Why the addon did not load, on one line. */
function addonFailure(): string {
  const error = addonLoad !== undefined && 'error' in addonLoad ? addonLoad.error : undefined;
  const text = error instanceof Error ? error.message : String(error);
  return text.split('\n')[0]!.trim();
}

function requestedByWorker(): IoPath | undefined {
  const data = workerData as Record<string, unknown> | null | undefined;
  const path = typeof data === 'object' && data !== null ? data[WORKER_IO_PATH_KEY] : undefined;
  return path === 'native' || path === 'portable' ? path : undefined;
}

/**
 * This thread's choice. A shard worker uses the path its log resolved (workerData). Any
 * other thread: the portable path when `WALRUS_NATIVE=0`, else the addon when it loads,
 * else the portable path, announced by one line on stderr (unless `WALRUS_QUIET=1`).
 */
function choose(): { binding: NativeBinding; path: IoPath } {
  const requested = requestedByWorker() ?? (process.env.WALRUS_NATIVE === '0' ? 'portable' : undefined);
  if (requested === 'portable') return { binding: portableBinding, path: 'portable' };
  const addon = loadAddon();
  if (addon !== null) return { binding: addon, path: 'native' };
  if (requested === 'native') {
    // The log's thread loaded the addon, this worker cannot: nothing to fall back to
    // (the log was promised the native path).
    throw new WalrusError('ERR_WALRUS_ADDON_REQUIRED', `the native addon did not load in a shard worker: ${addonFailure()}`);
  }
  if (process.env.WALRUS_QUIET !== '1') {
    process.stderr.write(
      `walrus-ts: the native addon did not load (${addonFailure()}); using the portable node:fs I/O path (no io_uring, 'mmap' or 'memory' backend). WALRUS_NATIVE=0 selects it without this line, WALRUS_QUIET=1 hides it.\n`,
    );
  }
  return { binding: portableBinding, path: 'portable' };
}

const chosen = choose();

/**
 * The binding this thread uses, chosen once when this module is first evaluated in the
 * thread, before any module that imports it runs (see `choose` above and docs/ARCHITECTURE.md,
 * "The two I/O paths"): modules may read it at load time (file-io.ts takes its `constants`).
 */
export const native: NativeBinding = chosen.binding;

/** The path {@link native} is in this thread. */
export const ioPath: IoPath = chosen.path;

/**
 * The I/O path of a log opened with the `io` option `requested`, for its shard workers:
 * `'portable'` when WALRUS_NATIVE=0 (the variable wins over the option, as
 * WALRUS_DISABLE_IO_URING does over `ioUring`) or when asked; `'auto'`: this thread's path;
 * `'native'`: the addon, or ERR_WALRUS_ADDON_REQUIRED when it does not load here.
 */
export function resolveIoPath(requested: 'auto' | IoPath): IoPath {
  if (process.env.WALRUS_NATIVE === '0' || requested === 'portable') return 'portable';
  if (requested === 'auto') return ioPath;
  if (loadAddon() !== null) return 'native';
  throw new WalrusError('ERR_WALRUS_ADDON_REQUIRED', `options.io is 'native' but the native addon did not load: ${addonFailure()}`);
}
