/**
 * A read-only view of a log on disk, for the CLI: every shard scanned by the engine's own
 * recovery scan (src/workers/recovery/index.ts `scanShard`, 'inspect' mode), which opens segment
 * files read-only and never writes, removes or truncates anything.
 *
 * The lock: if `walrus.lock` exists, the view takes a *shared* lock on it (opened read-only)
 * for as long as it is open, so no instance can open the log in the middle of a scan (its
 * exclusive lock fails with ERR_WALRUS_LOCKED): with the addon a shared flock; on the
 * portable path the platform's open-time lock where there is one (O_SHLOCK on macOS and the
 * BSDs; on Windows any open, which an instance's share-nothing open refuses). When an
 * instance holds the log open (its lock, or on Linux a live owner record: src/main/lock.ts),
 * the view is *live* and is a best-effort snapshot of files that are changing under it. On
 * Linux without the addon the view takes no lock, so an instance may open the log during a
 * scan; the scan still changes nothing.
 */
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { LOCK_FILE, readerLockFlag, recordedHolder } from '../main/lock.js';
import { sanitizeKey } from '../main/namespace.js';
import { ioPath, native } from '../shared/native.js';
import { type ShardScan, scanShard } from '../workers/recovery/index.js';
import { listSegments, shardsOnDisk } from '../shared/format/segment.js';
import { ShardStore } from '../workers/store/store.js';
import { CliError, EXIT } from './args.js';

export interface ShardView {
  shard: number;
  store: ShardStore;
  scan: ShardScan;
}

export interface LogView {
  /** The namespace directory. */
  dir: string;
  /** Another process holds the log open. */
  live: boolean;
  shards: ShardView[];
  close(): void;
}

/** `<dir>` or `<dir>/<sanitized key>`, as Walrus.open resolves it, without creating it. */
export function namespacePath(dir: string, key: string): string {
  return key === '' ? dir : join(dir, sanitizeKey(key));
}

export interface LockState {
  live: boolean;
  /** The shared lock held while the view is open (-1: none). */
  fd: number;
}

/** Checks that `ns` holds a log and takes the shared lock described above. */
export function lockForReading(ns: string): LockState {
  let st;
  try {
    st = statSync(ns);
  } catch {
    throw new CliError(`no such directory: ${ns}`, EXIT.noInput);
  }
  if (!st.isDirectory()) throw new CliError(`not a directory: ${ns}`, EXIT.noInput);
  const lockPath = join(ns, LOCK_FILE);
  if (!existsSync(lockPath)) {
    if (shardsOnDisk(ns).length === 0) throw new CliError(`no walrus log in ${ns} (no ${LOCK_FILE}, no segment files)`, EXIT.noInput);
    return { live: false, fd: -1 };
  }
  const { O_RDONLY, O_CLOEXEC, O_NOFOLLOW } = native.constants;
  const flag = readerLockFlag();
  let fd: number;
  try {
    fd = native.open(lockPath, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | (flag ?? 0), 0);
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (flag !== null && (code === 'EWOULDBLOCK' || code === 'EAGAIN' || code === 'EBUSY')) return { live: true, fd: -1 };
    throw err;
  }
  if ((ioPath === 'native' && !native.flock(fd, false)) || recordedHolder(ns) !== null) {
    native.close(fd);
    return { live: true, fd: -1 };
  }
  return { live: false, fd };
}

/**
 * Scans every shard of the log in `ns`. `progress` is told the bytes of each block read.
 * Throws CliError for an expected failure (no log, unreadable files).
 */
export function openLogView(ns: string, lock: LockState, progress?: (bytes: number) => void): LogView {
  const shards: ShardView[] = [];
  const stores: ShardStore[] = [];
  const release = (): void => {
    for (const s of stores) s.closeFiles();
    if (lock.fd >= 0) native.close(lock.fd);
  };
  try {
    for (const shard of shardsOnDisk(ns)) {
      // Geometry 0/0: a scan never allocates blocks or creates segments.
      const store = new ShardStore(ns, shard, 0, 0);
      stores.push(store);
      shards.push({ shard, store, scan: scanShard(store, 'inspect', progress) });
    }
    return { dir: ns, live: lock.live, shards, close: release };
  } catch (err) {
    release();
    const e = err as NodeJS.ErrnoException;
    if (typeof e.code === 'string' && typeof e.syscall === 'string') {
      const hint = lock.live ? ' (the log is open by another process and changed during the scan; try again)' : '';
      throw new CliError(`reading the log failed: ${e.message}${hint}`, EXIT.ioErr);
    }
    throw err;
  }
}

/** Sum of the segment files' sizes: the most a scan reads (the total progress counts to). */
export function segmentFilesBytes(ns: string): number {
  let n = 0;
  for (const shard of shardsOnDisk(ns)) for (const f of listSegments(ns, shard)) n += statSync(f.path).size;
  return n;
}
