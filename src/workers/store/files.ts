/**
 * The open descriptors of one shard's segment files: at most MAX_OPEN_SEGMENTS at a time,
 * whatever the size of the log. A segment's descriptor is opened when something needs it
 * (a write, a sync, a read, recovery) and the least recently used one is closed when the
 * bound would be passed, so a log of thousands of segments holds a handful of descriptors.
 *
 * Rules that keep this safe:
 * - A descriptor the writer has handed to the addon is pinned for that writeBatch call
 *   (`pin`/`unpinAll`); writeBatch is synchronous (io_uring submissions are reaped before it
 *   returns), so no submission in flight can reference a descriptor this closes.
 * - A segment written since its last fdatasync (`seg.unsynced`) is closed only when no clean
 *   one can be: its durability obligation stays with the writer, which syncs it through a new
 *   descriptor. On Linux that covers writes made through the closed one: fsync(2) flushes "all
 *   modified in-core data of (i.e., modified buffer cache pages for) the file", the page cache
 *   of the inode, not of a descriptor; and a writeback error that no fsync has seen is reported
 *   to a descriptor opened after it (lib/errseq.c, errseq_sample, since Linux 4.17: "If there
 *   is an unseen error in @eseq, the caller of this function will see it the next time it
 *   checks for an error"). The close of such a descriptor is checked (a file system that
 *   reports writeback errors at close, NFS, fails the shard rather than lose the error).
 * - mmap backend: a segment's mappings go before its descriptor (`mapper.unmap`).
 * - Memory-backend segments (memfd) have no path to reopen: their store has no bound
 *   (`limit` Infinity), so they are never closed early; a memory log holds no files.
 */
import { ioError } from '../../shared/errors.js';
import { type BackgroundSync, type IoContext, native } from '../../shared/native.js';
import { constants as osConstants } from 'node:os';
import { type Segment } from './model.js';
import { OPEN_EXISTING } from '../../shared/file-io.js';
import { segmentBytes } from '../../shared/format/segment.js';

/**
 * Segment descriptors a shard holds open at most (disk backends): the current segment, the
 * spare, and a few older ones that topics still write into or that reads visit.
 */
export const MAX_OPEN_SEGMENTS = 8;

export class SegmentFiles {
  /** Open segments, least recently used first (a Set keeps insertion order). */
  private readonly open = new Set<Segment>();
  private readonly pinned = new Set<Segment>();
  /** Flags for reopening: read-write, or read-only for the CLI's inspection. */
  flags = OPEN_EXISTING;
  /** mmap backend: the context every open segment is registered with, else null. */
  mapper: IoContext | null = null;
  /** Descriptors opened and closed since the store was made (tests, diagnostics). */
  opened = 0;
  closed = 0;
  /**
   * Descriptors that detached threads hold for a while (a background sync opens the file
   * for itself: see native.ts datasyncInBackground): counted against the bound too.
   */
  private lent = 0;

  constructor(readonly limit: number) {}

  /** How many segment descriptors are open now. */
  get size(): number {
    return this.open.size;
  }

  /** The segment's descriptor, opened (and the least recently used one closed) if need be. */
  fd(seg: Segment): number {
    if (seg.fd >= 0) {
      this.open.delete(seg);
      this.open.add(seg);
      return seg.fd;
    }
    this.makeRoom();
    try {
      seg.fd = native.open(seg.path, this.flags, 0);
    } catch (err) {
      throw ioError(err, `opening segment ${seg.path} failed`, seg.path);
    }
    this.opened++;
    this.open.add(seg);
    if (this.mapper !== null) this.attach(seg);
    return seg.fd;
  }

  /**
   * Takes a segment whose descriptor the caller just opened (creation, recovery), having
   * called reserve() before opening it.
   */
  adopt(seg: Segment): void {
    seg.files = this;
    this.open.delete(seg);
    this.opened++;
    this.open.add(seg);
    if (this.mapper !== null) this.attach(seg);
  }

  /** Keeps the segment's descriptor open until unpinAll (one writeBatch call). */
  pin(seg: Segment): number {
    const fd = this.fd(seg);
    this.pinned.add(seg);
    return fd;
  }

  unpinAll(): void {
    this.pinned.clear();
  }

  /** Registers every open segment with `io` (mmap backend) and every one opened later. */
  useMapper(io: IoContext): void {
    this.mapper = io;
    for (const seg of this.open) this.attach(seg);
  }

  /**
   * Forgets the segment and hands its descriptor to the caller (deletion: the caller closes
   * it); its mappings are removed first. Returns -1 when it was not open.
   */
  release(seg: Segment): number {
    const fd = seg.fd;
    if (fd < 0) return -1;
    this.detach(seg);
    this.open.delete(seg);
    this.pinned.delete(seg);
    seg.fd = -1;
    this.closed++;
    return fd;
  }

  /** Closes every descriptor; throws the first failure after trying them all. */
  closeAll(): void {
    let error: unknown = null;
    for (const seg of [...this.open]) {
      try {
        this.detach(seg);
      } catch (err) {
        error ??= err;
      }
      try {
        native.close(seg.fd);
      } catch (err) {
        error ??= err;
      }
      seg.fd = -1;
      this.open.delete(seg);
    }
    this.pinned.clear();
    if (error !== null) throw error;
  }

  /** Closes descriptors until one more may be opened within the bound. */
  reserve(): void {
    this.makeRoom();
  }

  /**
   * datasyncInBackground(path, dir), with the descriptor its thread opens counted against the
   * bound until its result is taken (LentSync.result).
   */
  syncInBackground(path: string, dir?: string): LentSync {
    this.makeRoom();
    const handle = native.datasyncInBackground(path, dir);
    this.lent++;
    return new LentSync(handle, () => this.lent--);
  }

  private makeRoom(): void {
    while (this.open.size + this.lent >= this.limit) {
      const victim = this.pickVictim();
      if (victim === null) return; // everything pinned: one batch's files (bounded by the writer)
      this.evict(victim);
    }
  }

  /** The least recently used unpinned segment, a synced one if there is any. */
  private pickVictim(): Segment | null {
    let dirty: Segment | null = null;
    for (const seg of this.open) {
      if (this.pinned.has(seg)) continue;
      if (!seg.unsynced) return seg;
      dirty ??= seg;
    }
    return dirty;
  }

  private evict(seg: Segment): void {
    this.detach(seg);
    this.open.delete(seg);
    const fd = seg.fd;
    seg.fd = -1;
    this.closed++;
    try {
      native.close(fd);
    } catch (err) {
      throw ioError(err, `closing segment ${seg.path} failed`, seg.path);
    }
  }

  private attach(seg: Segment): void {
    try {
      // A segment written through a descriptor since closed still owes a sync that no window
      // knows about: the context then fdatasyncs it.
      this.mapper!.map(seg.fd, segmentBytes(seg.slots, seg.blockBytes), seg.unsynced);
    } catch (err) {
      throw ioError(err, `registering segment ${seg.path} with the mmap backend failed`, seg.path);
    }
  }

  private detach(seg: Segment): void {
    if (this.mapper === null || seg.fd < 0) return;
    try {
      this.mapper.unmap(seg.fd);
    } catch (err) {
      throw ioError(err, `unmapping segment ${seg.path} failed`, seg.path);
    }
  }
}

/** Errno names by this platform's numbers (os.constants.errno, which both I/O paths report in). */
const ERRNO_NAMES = new Map(Object.entries(osConstants.errno).map(([name, n]) => [n, name]));

/** A background sync started by SegmentFiles.syncInBackground. */
export class LentSync {
  private err = -1;

  constructor(
    readonly handle: BackgroundSync,
    private readonly giveBack: () => void,
  ) {}

  /** -1 while it runs (with `wait`, waits for it), else 0 or its errno; its descriptor counts no more. */
  result(wait: boolean): number {
    if (this.err >= 0) return this.err;
    const err = native.backgroundSyncResult(this.handle, wait);
    if (err >= 0) {
      this.err = err;
      this.giveBack();
    }
    return err;
  }

  /**
   * Its failure as the addon would have thrown it (code, errno, syscall), for ioError; null
   * when it did not fail, or never ran because its thread could not be made (the caller then
   * makes the sync itself). A sync that failed in the kernel failed for every descriptor of
   * the file (lib/errseq.c), so making it again would only fail again.
   */
  failure(): Error | null {
    if (this.err <= 0) return null;
    const syscall = native.backgroundSyncSyscall(this.handle);
    if (syscall === '') return null;
    const code = ERRNO_NAMES.get(this.err) ?? 'EIO';
    return Object.assign(new Error(`${code}: ${syscall} on a thread of its own failed`), { code, errno: this.err, syscall });
  }
}
