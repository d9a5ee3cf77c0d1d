/**
 * The addon's file operations (native/fileops.cc) on node:fs's synchronous calls. Each
 * passes through the thread's test fault plan first (seams.ts; nothing outside the test
 * suite) and reports failures in the addon's shape (errors.ts).
 *
 * What node:fs calls underneath is libuv's: on Linux `fdatasyncSync` is fdatasync(2) and
 * `fsyncSync` fsync(2); on macOS both are fcntl(F_FULLFSYNC) (falling back to
 * F_BARRIERFSYNC, then fsync, where the file system refuses it); on Windows both are
 * FlushFileBuffers (docs/DURABILITY.md, "The portable I/O path", cites the sources). Every
 * open adds O_CLOEXEC on Unix (libuv's uv__fs_open), and Windows handles are not inherited.
 */
import {
  closeSync,
  constants as fsConstants,
  fdatasyncSync,
  fstatSync,
  fsyncSync,
  ftruncateSync,
  openSync,
  readSync,
  renameSync,
  unlinkSync,
  writevSync,
} from 'node:fs';
import { constants as osConstants } from 'node:os';
import { getSystemErrorMap } from 'node:util';
import { WalrusError } from '../errors.js';
import type { BackgroundSync, FileFaultKind } from '../native.js';
import { fsError, sysError } from './errors.js';
import { type ContextPlan, hooks } from './seams.js';

/**
 * open(2) flags for this platform: node:fs's values. O_CLOEXEC is 0 because libuv sets it on
 * every open itself; O_NOFOLLOW and O_DIRECTORY are 0 where the platform has none (Windows).
 */
export const constants = Object.freeze({
  O_RDONLY: fsConstants.O_RDONLY,
  O_RDWR: fsConstants.O_RDWR,
  O_CREAT: fsConstants.O_CREAT,
  O_EXCL: fsConstants.O_EXCL,
  O_CLOEXEC: 0,
  O_NOFOLLOW: fsConstants.O_NOFOLLOW ?? 0,
  O_DIRECTORY: fsConstants.O_DIRECTORY ?? 0,
});

/**
 * Errno names by number. Aliases (ENOTSUP, EWOULDBLOCK, EDEADLOCK) give way to the name they
 * alias (EOPNOTSUPP, EAGAIN, EDEADLK), as in the addon and libuv.
 */
const ALIASES = new Set(['ENOTSUP', 'EWOULDBLOCK', 'EDEADLOCK']);
const errnoNames = new Map<number, string>();
for (const [name, value] of Object.entries(osConstants.errno as Record<string, number>)) {
  if (!errnoNames.has(value) || ALIASES.has(errnoNames.get(value)!)) errnoNames.set(value, name);
}
let descriptions: Map<string, string> | null = null;

/** An addon-shaped error for the positive errno `errno` of this platform (injected faults). */
export function errnoError(errno: number, syscall: string): Error {
  const code = errnoNames.get(errno) ?? 'UNKNOWN';
  if (descriptions === null) {
    descriptions = new Map();
    for (const [name, description] of getSystemErrorMap().values()) descriptions.set(name, description);
  }
  const err = sysError(code, syscall, descriptions.get(code) ?? 'unknown error') as NodeJS.ErrnoException;
  err.errno = errno;
  return err;
}

/** Fails the call when the thread's test fault plan says so (never outside the test suite). */
function injected(op: FileFaultKind, syscall: string): void {
  if (hooks === null) return;
  const errno = hooks.fileFault(op);
  if (errno !== 0) throw errnoError(errno, syscall);
}

/**
 * One node:fs call as the addon makes a system call: the thread's fault plan first (test build
 * only: `fault`, when the call is one a plan can fail), then the call, its failure rethrown
 * in the addon's shape (errno name, positive errno, `syscall`).
 */
function sys<T>(syscall: string, fault: FileFaultKind | null, call: () => T): T {
  if (fault !== null) injected(fault, syscall);
  try {
    return call();
  } catch (err) {
    throw fsError(err, syscall);
  }
}

/** The error of a backend or call that only the addon provides. */
export function addonRequired(what: string): WalrusError {
  return new WalrusError(
    'ERR_WALRUS_ADDON_REQUIRED',
    `${what} needs the native addon, and this thread uses the portable node:fs I/O path (docs/ARCHITECTURE.md, "The two I/O paths")`,
  );
}

export function open(path: string, flags: number, mode: number): number {
  return sys('open', 'open', () => openSync(path, flags, mode));
}

export function close(fd: number): void {
  sys('close', null, () => closeSync(fd));
}

/** Closes at once: node:fs has no detached close (the addon closes on a thread of its own). */
export function closeInBackground(fd: number, dir?: string): void {
  try {
    closeSync(fd);
  } catch {
    // As the addon: nobody is left to tell (the file is already unlinked).
  }
  if (dir === undefined || process.platform === 'win32') return;
  let d = -1;
  try {
    d = openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY);
    fsyncSync(d);
  } catch {
    // As the addon: recovery finishes a deletion whose unlink was lost.
  } finally {
    if (d >= 0) closeSync(d);
  }
}

/** A finished "background" sync: `err` is 0 or the positive errno of the call `syscall` names. */
interface PortableSync {
  err: number;
  syscall: string;
}
const syncs = new WeakSet<object>();

/**
 * Opens `path` on a descriptor of its own and fdatasyncs it *now*, in the calling thread
 * (node:fs has no detached thread to run it on), then with `dir` fsyncs that directory
 * (not on Windows, which cannot open one), and returns a handle whose result is already
 * known. So on this path the shard worker waits for this writeback where the addon would
 * not; the guarantees are the same. Windows opens read-write: FlushFileBuffers needs write
 * access.
 */
export function datasyncInBackground(path: string, dir?: string): BackgroundSync {
  if (typeof path !== 'string') throw new TypeError('path must be a string');
  if (dir !== undefined && typeof dir !== 'string') throw new TypeError('dir must be a string');
  const flags = process.platform === 'win32' ? constants.O_RDWR : constants.O_RDONLY | constants.O_NOFOLLOW;
  const handle: PortableSync = { err: 0, syscall: '' };
  let fd = -1;
  try {
    fd = sys('open', null, () => openSync(path, flags));
    // As the addon's: the test seam's plan counts this sync as an fdatasync call (and the
    // directory's as an fsync), and a planned failure becomes the handle's result.
    sys('fdatasync', 'fdatasync', () => fdatasyncSync(fd));
    if (dir !== undefined && process.platform !== 'win32') {
      closeInBackground(fd);
      fd = -1;
      fd = sys('open', null, () => openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY));
      sys('fsync', 'fsync', () => fsyncSync(fd));
    }
  } catch (err) {
    // In the addon's shape (positive errno, its syscall name): every call went through sys().
    const e = err as NodeJS.ErrnoException;
    handle.err = e.errno ?? osConstants.errno.EIO;
    handle.syscall = e.syscall ?? 'fdatasync';
  } finally {
    if (fd >= 0) closeInBackground(fd);
  }
  syncs.add(handle);
  return handle as unknown as BackgroundSync;
}

/** The call that failed in the handle's sync, or ''. */
export function backgroundSyncSyscall(handle: BackgroundSync): string {
  if (typeof handle !== 'object' || handle === null || !syncs.has(handle)) throw new TypeError('handle must come from datasyncInBackground');
  return (handle as unknown as PortableSync).syscall;
}

/** The handle's result (never -1 on this path: the sync has finished). */
export function backgroundSyncResult(handle: BackgroundSync, wait: boolean): number {
  if (typeof handle !== 'object' || handle === null || !syncs.has(handle)) throw new TypeError('handle must come from datasyncInBackground');
  if (typeof wait !== 'boolean') throw new TypeError('wait must be a boolean');
  return (handle as unknown as PortableSync).err;
}

/** Reads into `buf` from `position` until it is full or at end of file. */
export function pread(fd: number, buf: Uint8Array, position: number): number {
  return sys('pread', 'pread', () => {
    let done = 0;
    while (done < buf.length) {
      const n = readSync(fd, buf, done, buf.length - done, position + done);
      if (n === 0) break;
      done += n;
    }
    return done;
  });
}

function bytesOf(bufs: readonly Uint8Array[]): number {
  let n = 0;
  for (const b of bufs) n += b.length;
  return n;
}

/** `bufs` without their first `skip` bytes (and without empty views). */
function skipBytes(bufs: readonly Uint8Array[], skip: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (const b of bufs) {
    if (skip >= b.length) {
      skip -= b.length;
      continue;
    }
    out.push(skip > 0 ? b.subarray(skip) : b);
    skip = 0;
  }
  return out;
}

/** The first `limit` bytes of `bufs`. */
function firstBytes(bufs: readonly Uint8Array[], limit: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (const b of bufs) {
    if (limit === 0) break;
    out.push(b.length <= limit ? b : b.subarray(0, limit));
    limit -= Math.min(limit, b.length);
  }
  return out;
}

/**
 * Writes every byte of `bufs` at `position` with writevSync, completing short writes (one
 * writev call per attempt, all of the views at once); `plan` is the calling write context's
 * test fault plan. Returns the bytes written.
 */
export function writeAll(fd: number, bufs: readonly Uint8Array[], position: number, plan: ContextPlan | null): number {
  let rest = skipBytes(bufs, 0);
  let written = 0;
  while (rest.length > 0) {
    let chunk = rest;
    if (hooks !== null && plan !== null) {
      const verdict = hooks.write(plan, bytesOf(rest));
      if (verdict !== null && 'fail' in verdict) throw errnoError(verdict.fail, 'pwritev');
      if (verdict !== null) chunk = firstBytes(rest, verdict.limit);
      if (chunk.length === 0) continue;
    }
    const n = sys('pwritev', null, () => writevSync(fd, chunk, position));
    // A regular file never takes zero bytes of a non-empty request without an error:
    // reporting EIO beats spinning forever (as the addon does).
    if (n === 0) throw errnoError(osConstants.errno.EIO, 'pwritev');
    position += n;
    written += n;
    rest = skipBytes(rest, n);
  }
  return written;
}

export function pwritev(fd: number, bufs: Uint8Array[], position: number): number {
  if (!Array.isArray(bufs)) throw new TypeError('bufs must be an array of Uint8Array');
  for (const b of bufs) if (!(b instanceof Uint8Array)) throw new TypeError('every element of bufs must be a Uint8Array');
  injected('pwritev', 'pwritev');
  return writeAll(fd, bufs, position, null);
}

export function fdatasync(fd: number): void {
  sys('fdatasync', 'fdatasync', () => fdatasyncSync(fd));
}

export function fsync(fd: number): void {
  sys('fsync', 'fsync', () => fsyncSync(fd));
}

/**
 * node:fs has no fallocate: always EOPNOTSUPP (after the fault plan, which may fail it with
 * another errno), which callers take as "extend with ftruncate" (workers/store/segments.ts
 * `allocate`). Space is then reserved as blocks are written, not ahead: a full disk shows
 * up as ENOSPC from a write or fdatasync instead of from fallocate.
 */
export function fallocate(_fd: number, _offset: number, _length: number): void {
  injected('fallocate', 'fallocate');
  throw errnoError(osConstants.errno.EOPNOTSUPP ?? osConstants.errno.ENOTSUP, 'fallocate');
}

export function ftruncate(fd: number, length: number): void {
  sys('ftruncate', 'ftruncate', () => ftruncateSync(fd, length));
}

export function fstatSize(fd: number): number {
  return sys('fstat', null, () => fstatSync(fd).size);
}

export function rename(from: string, to: string): void {
  sys('rename', 'rename', () => renameSync(from, to));
}

export function unlink(path: string): void {
  sys('unlink', 'unlink', () => unlinkSync(path));
}

/** node:fs has no flock: ENOSYS. The directory lock does not call it on this path (main/lock.ts). */
export function flock(_fd: number, _exclusive: boolean): boolean {
  throw errnoError(osConstants.errno.ENOSYS, 'flock');
}
