/**
 * The portable IoContext: writeBatch on node:fs (native.ts documents the contract). No
 * io_uring and no mappings: `uring` and `mapped` are false, a context asked for either
 * throws, and map/unmap/readMapped throw ERR_WALRUS_ADDON_REQUIRED.
 *
 * Each write operation is one writevSync of all its iovecs at its file position (short
 * writes completed), in the caller's order; then each distinct sync fd is fdatasync'd. The
 * first failure throws an addon-shaped error (`syscall` 'pwritev' or 'fdatasync') and nothing
 * after it runs, so nothing after a failed write is reported as done. Every argument is
 * checked before the first write, with the addon's TypeErrors and RangeErrors.
 */
import { fdatasyncSync } from 'node:fs';
import { IOV_FIELDS, IOV_SOURCE_RING, WRITE_OP_FIELDS } from '../format/layout.js';
import type { IoContext } from '../native.js';
import { fsError } from './errors.js';
import { addonRequired, errnoError, writeAll } from './files.js';
import { type ContextPlan, hooks } from './seams.js';
import { constants as osConstants } from 'node:os';

const INT_MAX = 0x7fffffff;
const MAX_SAFE = Number.MAX_SAFE_INTEGER;

function isIndex(v: number, max: number): boolean {
  return Number.isInteger(v) && v >= 0 && v <= max;
}

function index(value: unknown, max: number, name: string): number {
  if (typeof value !== 'number') throw new TypeError(`${name} must be a number`);
  if (!isIndex(value, max)) throw new RangeError(`${name} must be an integer from 0 to ${max}, got ${value}`);
  return value;
}

interface Piece {
  fd: number;
  position: number;
  views: Uint8Array[];
}

export class PortableIoContext implements IoContext {
  readonly uring = false;
  readonly mapped = false;
  readonly mappedBytes = 0;
  /** Test suite only (seams.ts): see IoContext.injectFault. */
  readonly injectFault?: IoContext['injectFault'];
  private ring: Uint8Array | null;
  private busy = false;
  private readonly plan: ContextPlan | null;

  constructor(ring: SharedArrayBuffer, useUring: boolean, queueDepth: number, mapped?: boolean) {
    if (!(ring instanceof SharedArrayBuffer)) throw new TypeError('ring must be a SharedArrayBuffer');
    if (typeof useUring !== 'boolean') throw new TypeError('useUring must be a boolean');
    index(queueDepth, 32768, 'queueDepth');
    if (queueDepth === 0) throw new RangeError('queueDepth must be an integer from 1 to 32768, got 0');
    if (mapped !== undefined && typeof mapped !== 'boolean') throw new TypeError('mapped must be a boolean');
    if (mapped === true) throw addonRequired("the 'mmap' backend");
    // Callers ask for io_uring only when uringSupported(), which is false here.
    if (useUring) throw errnoError(osConstants.errno.ENOSYS, 'io_uring_setup');
    this.ring = new Uint8Array(ring);
    this.plan = hooks === null ? null : hooks.newPlan();
    if (hooks !== null) {
      const h = hooks;
      const plan = this.plan!;
      this.injectFault = (kind, nth, errno, short) => {
        if (this.busy) throw new Error('injectFault called during writeBatch');
        h.inject(plan, kind, nth, errno, short);
      };
    }
  }

  map(): void {
    throw addonRequired("the 'mmap' backend");
  }

  unmap(): void {
    throw addonRequired("the 'mmap' backend");
  }

  readMapped(): number {
    throw addonRequired("the 'mmap' backend");
  }

  writeBatch(ops: Float64Array, opCount: number, iovs: Float64Array, ext: Uint8Array[], syncFds: Int32Array, syncCount: number): void {
    if (this.busy) throw new Error('writeBatch is already running on this IoContext');
    if (this.ring === null) throw errnoError(osConstants.errno.EBADF, 'pwritev');
    this.busy = true;
    try {
      const { pieces, fds } = this.build(ops, opCount, iovs, ext, syncFds, syncCount);
      for (const p of pieces) writeAll(p.fd, p.views, p.position, this.plan);
      for (const fd of fds) {
        if (hooks !== null && this.plan !== null) {
          const errno = hooks.sync(this.plan);
          if (errno !== 0) throw errnoError(errno, 'fdatasync');
        }
        try {
          fdatasyncSync(fd);
        } catch (err) {
          throw fsError(err, 'fdatasync');
        }
      }
    } finally {
      this.busy = false;
    }
  }

  /** Checks every argument and turns the descriptors into views (nothing is written yet). */
  private build(ops: Float64Array, opCount: number, iovs: Float64Array, ext: Uint8Array[], syncFds: Int32Array, syncCount: number): { pieces: Piece[]; fds: number[] } {
    if (!Array.isArray(ext)) throw new TypeError('ext must be an array of Uint8Array');
    for (const e of ext) if (!(e instanceof Uint8Array)) throw new TypeError('every element of ext must be a Uint8Array');
    if (!(ops instanceof Float64Array)) throw new TypeError('ops must be a Float64Array');
    index(opCount, Math.floor(ops.length / WRITE_OP_FIELDS), 'opCount');
    if (!(iovs instanceof Float64Array)) throw new TypeError('iovs must be a Float64Array');
    if (!(syncFds instanceof Int32Array)) throw new TypeError('syncFds must be an Int32Array');
    index(syncCount, syncFds.length, 'syncCount');
    const ring = this.ring!;
    const iovTotal = Math.floor(iovs.length / IOV_FIELDS);
    const pieces: Piece[] = [];
    for (let k = 0; k < opCount; k++) {
      const at = k * WRITE_OP_FIELDS;
      const fd = ops[at]!;
      const position = ops[at + 1]!;
      const first = ops[at + 2]!;
      const count = ops[at + 3]!;
      if (!isIndex(fd, INT_MAX)) throw new RangeError(`ops[${k}]: fd must be a file descriptor`);
      if (!isIndex(position, MAX_SAFE)) throw new RangeError(`ops[${k}]: position must be an integer from 0 to 2^53 - 1`);
      if (!isIndex(first, iovTotal) || !isIndex(count, iovTotal - first)) {
        throw new RangeError(`ops[${k}]: iovecs [firstIov, firstIov + iovCount) must lie inside iovs`);
      }
      const views: Uint8Array[] = [];
      let bytes = 0;
      for (let j = first; j < first + count; j++) {
        const v = j * IOV_FIELDS;
        const source = iovs[v]!;
        const offset = iovs[v + 1]!;
        const length = iovs[v + 2]!;
        let from: Uint8Array;
        if (source === IOV_SOURCE_RING) from = ring;
        else if (isIndex(source, ext.length) && source < ext.length) from = ext[source]!;
        else throw new RangeError(`iovs[${j}]: source must be -1 or an index of ext`);
        if (!isIndex(offset, from.length) || !isIndex(length, from.length - offset)) {
          throw new RangeError(`iovs[${j}]: [offset, offset + length) must lie inside its buffer`);
        }
        if (length > MAX_SAFE - position - bytes) throw new RangeError(`ops[${k}]: position + length exceeds 2^53 - 1`);
        if (length > 0) views.push(from.subarray(offset, offset + length));
        bytes += length;
      }
      if (bytes > 0) pieces.push({ fd, position, views });
    }
    const fds: number[] = [];
    for (let i = 0; i < syncCount; i++) {
      const fd = syncFds[i]!;
      if (fd < 0) throw new RangeError(`syncFds[${i}] must be a file descriptor, got ${fd}`);
      fds.push(fd);
    }
    fds.sort((a, b) => a - b);
    return { pieces, fds: fds.filter((fd, i) => i === 0 || fds[i - 1] !== fd) };
  }

  close(): void {
    if (this.busy) throw new Error('IoContext.close() called during writeBatch');
    this.ring = null;
  }
}
