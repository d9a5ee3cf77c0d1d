/** Options of Walrus.open: the public type, defaults and validation. */
import { availableParallelism } from 'node:os';
import { resolve } from 'node:path';
import { debuglog } from 'node:util';
import { invalidArgType, invalidArgValue, outOfRange } from '../shared/errors.js';
import { MAX_RING_BYTES, MIN_RING_BYTES } from '../shared/ring.js';
import { FsyncSchedule, ReadConsistency, isFsyncSchedule, isReadConsistency } from '../shared/schedule.js';

/**
 * Storage backend: `'fd'` (pwritev/io_uring on segment files), `'mmap'` (memory-mapped
 * segment files) or `'memory'` (no files at all: the same engine over anonymous memory,
 * gone at close; see the `backend` option).
 */
export type Backend = 'fd' | 'mmap' | 'memory';

/** Options of {@link Walrus.open}; every one has a default (README, "Options"). */
export interface WalrusOptions {
  /** Root data directory, created if missing. Default: `$WALRUS_DATA_DIR`, else `./wal_files`. */
  dir?: string;
  /** Namespace: files live in `<dir>/<sanitized key>/`. Default: `$WALRUS_INSTANCE_KEY`, else none. */
  key?: string;
  /** Cursor persistence. Default: `ReadConsistency.StrictlyAtOnce`. */
  consistency?: ReadConsistency;
  /** When appended data is made durable. Default: `FsyncSchedule.milliseconds(200)`. */
  fsync?: FsyncSchedule;
  /**
   * Worker threads that own the files, from 1 to 64. Default: one per available core beyond
   * the first, at least 1, at most 16. Each shard is a thread with its own ring (`ringBytes`)
   * and at most 9 descriptors (8 segment files and an io_uring instance), and more shards
   * than cores add no throughput.
   */
  shards?: number;
  /**
   * Storage backend. Default: `'fd'` (or what enableFdBackend/disableFdBackend chose).
   * `'fd'`: write batches through pwritev/io_uring, durability by fdatasync.
   * `'mmap'`: segment files mapped by the shard workers, writes copied into the mappings,
   * durability by msync(MS_SYNC); same format and guarantees (docs/ARCHITECTURE.md, "The
   * mmap backend"; refused on file systems where it could raise SIGBUS).
   * `'memory'` keeps everything in anonymous memory: no directory is created and no lock is
   * taken (`dir` and `key` are ignored, every open is a new, independent, empty log), and
   * nothing survives `close()` or the process. The semantics are the disk backends' (same
   * engine), except durability: `sync()` and `appendAndSync()` resolve without anything to
   * make durable.
   */
  backend?: Backend;
  /** Largest payload accepted, in bytes. Default: 16 MiB; at most 2 GiB. */
  maxRecordBytes?: number;
  /** Bytes of each shard's ring, a power of two from 4 KiB to 1 GiB. Default: 16 MiB. */
  ringBytes?: number;
  /** Size of a block slot in segment files, a multiple of 4 KiB from 4 KiB to 256 MiB. Default: 1 MiB. */
  blockBytes?: number;
  /** Block slots per segment file. Default: 64 (64 MiB segments with the default blockBytes). */
  segmentBlocks?: number;
  /**
   * What `append`/`batchAppend` do when the shard's ring is full (the disk is slower than
   * the appends). Default: `Infinity`: they block the thread until the shard's worker has
   * written enough to make room, as `fs.writeSync` blocks on a slow disk: a loop of appends
   * runs at the disk's pace and never throws for it. A number (0 to 60,000) bounds that
   * wait, for servers that must never block long: past it the call throws
   * ERR_WALRUS_BACKPRESSURE with nothing written (`await wal.drain()`, then retry); `0`
   * throws at once. In every case the call throws once the shard has failed, or when its
   * worker has released no space for 10 s (a dead or stuck worker), rather than block forever.
   */
  backpressureMs?: number;
  /**
   * io_uring use, where the kernel allows it: `'auto'` (default) submits a write batch through
   * io_uring when it writes or syncs more than one file (their fdatasyncs then run in parallel)
   * and through pwritev otherwise (measured faster for one file: no hand-off to a kernel
   * worker); `true` uses io_uring for every batch; `false` never. WALRUS_DISABLE_IO_URING=1
   * forces false. The mmap backend does not use it (it has no write system calls).
   */
  ioUring?: boolean | 'auto';
  /**
   * How the shard workers reach the files (docs/ARCHITECTURE.md, "The two I/O paths"):
   * `'native'`, the C++ addon (io_uring or pwritev, and the 'mmap' and 'memory' backends);
   * `'portable'`, node:fs only (writev and fdatasync through libuv; 'fd' backend only: the
   * others then fail with ERR_WALRUS_ADDON_REQUIRED); `'auto'` (default): the addon when it
   * loads in this process, else the portable path. `'native'` where the addon does not load
   * fails with ERR_WALRUS_ADDON_REQUIRED. WALRUS_NATIVE=0 forces `'portable'`.
   * `stats().io` says which path a log uses.
   */
  io?: 'auto' | 'native' | 'portable';
  /** Pin each shard worker to its own CPU. Default: false. */
  pinWorkers?: boolean;
  /**
   * Size bound for topics nobody consumes: when the segment files of the log exceed this
   * many bytes (each shard keeps its share), the oldest segment is deleted even if it holds
   * unconsumed entries, and cursors behind it jump to the first entry still stored.
   * Default: none (only consumed segments are deleted).
   */
  retentionBytes?: number;
  /**
   * Age bound, in ms: a segment that stopped taking new blocks longer ago than this is
   * deleted even if it holds unconsumed entries (cursors behind it jump forward).
   * Default: none.
   */
  retentionMs?: number;
  /**
   * Read-ahead: once a consumer's read of a topic (`readNext`, `batchRead`, `fetch`,
   * `subscribe`, a read stream) is answered, its shard worker reads and checksums the
   * consumer's next read of the topic, with the same limits, so that a consumer draining a
   * topic finds its next batch read while it handles the last one. A read-ahead never moves a
   * cursor and is used only when it is exactly what the next read returns. Reads of more than
   * 4 MiB of payload are not read ahead; a shard holds at most 16 MiB of read-aheads, 8 MiB per
   * consumer and topic. Default: true. `stats().shards[i].readAhead` counts them.
   */
  readAhead?: boolean;
}

export interface ResolvedOptions {
  dir: string;
  key: string;
  consistency: ReadConsistency;
  fsync: FsyncSchedule;
  shards: number;
  backend: Backend;
  maxRecordBytes: number;
  ringBytes: number;
  blockBytes: number;
  segmentBlocks: number;
  backpressureMs: number;
  ioUring: boolean | 'auto';
  io: 'auto' | 'native' | 'portable';
  pinWorkers: boolean;
  retentionBytes: number;
  retentionMs: number;
  readAhead: boolean;
  debug: boolean;
}

export const DEFAULT_MAX_RECORD_BYTES = 16 * 1024 * 1024;
/**
 * Most shards a log may have. A shard is a worker thread (a V8 isolate of its own, about
 * 10 MB) with its ring (16 MiB by default) and up to 9 descriptors: 64 of them already cost
 * over a gigabyte of memory and ~577 descriptors before any data, and beyond the core count
 * more shards only add that cost (the default is cores - 1, at most 16).
 */
export const MAX_SHARDS = 64;
export const MAX_MAX_RECORD_BYTES = 2 ** 31;
const KNOWN = new Set([
  'dir',
  'key',
  'consistency',
  'fsync',
  'shards',
  'backend',
  'maxRecordBytes',
  'ringBytes',
  'blockBytes',
  'segmentBlocks',
  'backpressureMs',
  'ioUring',
  'io',
  'pinWorkers',
  'retentionBytes',
  'retentionMs',
  'readAhead',
]);

function int(o: Record<string, unknown>, name: string, min: number, max: number, dflt: number): number {
  const v = o[name];
  if (v === undefined) return dflt;
  if (typeof v !== 'number') throw invalidArgType(`options.${name}`, 'of type number', v);
  if (!Number.isInteger(v) || v < min || v > max) throw outOfRange(`options.${name}`, `an integer >= ${min} and <= ${max}`, v);
  return v;
}

function bool<D>(o: Record<string, unknown>, name: string, dflt: D): boolean | D {
  const v = o[name];
  if (v === undefined) return dflt;
  if (typeof v !== 'boolean') throw invalidArgType(`options.${name}`, dflt === 'auto' ? "of type boolean or 'auto'" : 'of type boolean', v);
  return v;
}

/** backpressureMs: Infinity (the default: wait while the worker makes progress) or 0 to 60,000 ms. */
function backpressure(o: Record<string, unknown>): number {
  const v = o.backpressureMs;
  if (v === undefined || v === Number.POSITIVE_INFINITY) return Number.POSITIVE_INFINITY;
  if (typeof v !== 'number') throw invalidArgType('options.backpressureMs', 'of type number', v);
  if (!Number.isInteger(v) || v < 0 || v > 60_000) throw outOfRange('options.backpressureMs', 'an integer >= 0 and <= 60000, or Infinity', v);
  return v;
}

export function resolveOptions(options: unknown, defaultBackend: Backend): ResolvedOptions {
  if (options === undefined) options = {};
  if (typeof options !== 'object' || options === null || Array.isArray(options)) throw invalidArgType('options', 'of type object', options);
  const o = options as Record<string, unknown>;
  for (const k of Object.keys(o)) if (!KNOWN.has(k)) throw invalidArgValue('options', k, `has an unknown option ${JSON.stringify(k)}`);

  const dir = o.dir ?? process.env.WALRUS_DATA_DIR ?? './wal_files';
  if (typeof dir !== 'string') throw invalidArgType('options.dir', 'of type string', dir);
  if (dir.length === 0 || dir.includes('\0')) throw invalidArgValue('options.dir', dir, 'must be a non-empty path without NUL');
  const key = o.key ?? process.env.WALRUS_INSTANCE_KEY ?? '';
  if (typeof key !== 'string') throw invalidArgType('options.key', 'of type string', key);
  if (!key.isWellFormed()) throw invalidArgValue('options.key', key, 'must not contain lone surrogates');

  const consistency = o.consistency ?? ReadConsistency.StrictlyAtOnce;
  if (!isReadConsistency(consistency)) throw invalidArgType('options.consistency', 'a ReadConsistency value', consistency);
  const fsync = o.fsync ?? FsyncSchedule.milliseconds(200);
  if (!isFsyncSchedule(fsync)) throw invalidArgType('options.fsync', 'an FsyncSchedule value', fsync);

  const backend = o.backend ?? defaultBackend;
  if (backend !== 'fd' && backend !== 'mmap' && backend !== 'memory') throw invalidArgValue('options.backend', backend, "must be 'fd', 'mmap' or 'memory'");

  const ringBytes = int(o, 'ringBytes', MIN_RING_BYTES, MAX_RING_BYTES, 16 * 1024 * 1024);
  if ((ringBytes & (ringBytes - 1)) !== 0) throw invalidArgValue('options.ringBytes', ringBytes, 'must be a power of two');
  const blockBytes = int(o, 'blockBytes', 4096, 256 * 1024 * 1024, 1024 * 1024);
  if (blockBytes % 4096 !== 0) throw invalidArgValue('options.blockBytes', blockBytes, 'must be a multiple of 4096');

  const ioUring = o.ioUring === 'auto' ? 'auto' : bool<'auto'>(o, 'ioUring', 'auto');
  const io = o.io ?? 'auto';
  if (io !== 'auto' && io !== 'native' && io !== 'portable') throw invalidArgValue('options.io', io, "must be 'auto', 'native' or 'portable'");
  const debug = debuglog('walrus').enabled && process.env.WALRUS_QUIET !== '1';
  return {
    dir: resolve(dir),
    key,
    consistency,
    fsync,
    shards: int(o, 'shards', 1, MAX_SHARDS, Math.max(1, Math.min(16, availableParallelism() - 1))),
    backend,
    maxRecordBytes: int(o, 'maxRecordBytes', 0, MAX_MAX_RECORD_BYTES, DEFAULT_MAX_RECORD_BYTES),
    ringBytes,
    blockBytes,
    segmentBlocks: int(o, 'segmentBlocks', 1, 1 << 20, 64),
    backpressureMs: backpressure(o),
    // Validated first, so a bad value is reported even when the variable is set.
    ioUring: process.env.WALRUS_DISABLE_IO_URING === '1' ? false : ioUring,
    // WALRUS_NATIVE=0 is applied where the path is resolved (native.ts resolveIoPath).
    io,
    pinWorkers: bool(o, 'pinWorkers', false) === true,
    retentionBytes: int(o, 'retentionBytes', 1, Number.MAX_SAFE_INTEGER, Number.POSITIVE_INFINITY),
    retentionMs: int(o, 'retentionMs', 1, Number.MAX_SAFE_INTEGER, Number.POSITIVE_INFINITY),
    readAhead: bool(o, 'readAhead', true) === true,
    debug,
  };
}

/** The default backend for later `open` calls (enableFdBackend / disableFdBackend). */
let defaultBackend: Backend = 'fd';

/** The backend of an `open` whose options name none. */
export function backendDefault(): Backend {
  return defaultBackend;
}

/** Makes `'fd'` the default backend of later `Walrus.open` calls. */
export function enableFdBackend(): void {
  defaultBackend = 'fd';
}

/**
 * Selects the `'mmap'` backend as the default of later `Walrus.open` calls: those whose
 * options name no `backend` (an explicit `backend` still wins). That is all it does; it
 * turns nothing off: instances already open keep their backend and `'fd'` stays available
 * by name. The default is a setting of the loaded module (one per thread that imports
 * walrus-ts), not of an instance, and holds until {@link enableFdBackend} selects `'fd'`.
 */
export function disableFdBackend(): void {
  defaultBackend = 'mmap';
}
