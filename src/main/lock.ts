/**
 * The directory lock: one open instance per namespace directory, across threads, processes
 * and both I/O paths, released however its holder ends (kill -9 included). The reasoning is
 * in docs/DURABILITY.md, "The directory lock"; in short:
 *
 * - The kernel holds the lock wherever the thread can get one: the addon's
 *   flock(LOCK_EX|LOCK_NB) on `walrus.lock` (the native path); on Windows, `walrus.lock`
 *   opened with libuv's UV_FS_O_EXLOCK (share mode 0: a second open fails with EBUSY); on
 *   macOS and the BSDs, opened with O_EXLOCK|O_NONBLOCK (flock semantics). The kernel drops
 *   each with the holder's last descriptor.
 * - On Linux, node:fs has no such lock, so there the lock is also an *owner record*: a file
 *   `walrus.owner.<nonce>` naming its holder (pid, the process's start time from
 *   /proc/<pid>/stat, the boot id, the PID namespace, the host name and which path it uses).
 *   Both Linux paths write and check it, so a native and a portable process exclude each
 *   other both ways. A record is placed in two steps, each a rename of a complete file: as
 *   `walrus.claim.<nonce>`, then, once its writer has seen no other claim or record in the
 *   directory, renamed to `walrus.owner.<nonce>`. Two claimants cannot both see themselves
 *   alone (each wrote its own claim before looking), so at most one wins.
 * - A record whose holder is provably gone is removed by its own unique name, so a removal
 *   can never hit a newer record (no check-then-delete race). Provably gone: same boot id
 *   and PID namespace and no process with that pid, or one with another start time (the pid
 *   was reused); written by a native holder on this kernel while its flock is free; or
 *   written on this host before its last boot. Anything else (another PID namespace, i.e.
 *   another container; another host) cannot be judged from here: ERR_WALRUS_LOCKED names
 *   the holder and the file to delete by hand once it is known to be gone.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, constants as fsConstants, openSync, readdirSync, readFileSync, readlinkSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { WalrusError, ioError } from '../shared/errors.js';
import { type IoPath, ioPath, native } from '../shared/native.js';

export const LOCK_FILE = 'walrus.lock';
const OWNER_PREFIX = 'walrus.owner.';
const CLAIM_PREFIX = 'walrus.claim.';
const TMP_PREFIX = 'walrus.tmp.';

/** A held directory lock. */
export interface DirectoryLock {
  /** Releases it (removes this holder's owner record, closes the lock file). Idempotent. */
  release(): void;
}

/**
 * The open(2) flag that takes a kernel lock as the file is opened, on platforms whose libuv
 * has one (include/uv/win.h UV_FS_O_EXLOCK; O_EXLOCK of the BSDs' <fcntl.h>, which libuv
 * passes through), with `shared` for a reader's lock; null elsewhere (Linux).
 */
function openLockFlag(shared: boolean): number | null {
  switch (process.platform) {
    case 'win32':
      // Share mode 0 (src/win/fs.c fs__open): no second open of the file at all, so a reader
      // opens without it and is refused (EBUSY) while an instance holds it, and the reverse.
      return shared ? 0 : 0x10000000;
    case 'darwin':
    case 'freebsd':
    case 'openbsd':
    case 'netbsd':
      return (shared ? 0x10 /* O_SHLOCK */ : 0x20) /* O_EXLOCK */ | fsConstants.O_NONBLOCK;
    default:
      return null;
  }
}

function lockedError(ns: string, path: string, holder?: string): WalrusError {
  const by = holder === undefined ? 'by this or another process' : `by ${holder}`;
  return new WalrusError('ERR_WALRUS_LOCKED', `the log in ${ns} is already open (${by})`, { file: path });
}

/** The identity an owner record carries (null fields: not available on this system). */
interface Identity {
  path: IoPath;
  pid: number;
  start: string | null;
  boot: string | null;
  pidns: string | null;
  host: string;
}

function readOrNull(read: () => string): string | null {
  try {
    return read().trim();
  } catch {
    return null;
  }
}

/**
 * Start time of process `pid` (field 22 of /proc/<pid>/stat, clock ticks since boot), or
 * null when there is no such entry.
 */
function processStart(pid: number): string | null {
  const stat = readOrNull(() => readFileSync(`/proc/${pid}/stat`, 'latin1'));
  if (stat === null) return null;
  // "pid (comm) state ppid ...": comm may hold spaces and parentheses; fields restart after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return fields[19] ?? null;
}

function myIdentity(path: IoPath): Identity {
  return {
    path,
    pid: process.pid,
    start: processStart(process.pid),
    boot: readOrNull(() => readFileSync('/proc/sys/kernel/random/boot_id', 'latin1')),
    pidns: readOrNull(() => readlinkSync('/proc/self/ns/pid')),
    host: hostname(),
  };
}

function unjudgeable(ns: string, file: string, holder: string, why: string): WalrusError {
  return new WalrusError(
    'ERR_WALRUS_LOCKED',
    `the log in ${ns} may be open: ${file} names ${holder}, which cannot be checked from here (${why}). If that process is gone, delete ${file} and open again`,
    { file },
  );
}

type Verdict = { kind: 'gone' } | { kind: 'alive' } | { kind: 'unknown'; why: string };

function describeHolder(r: Identity): string {
  return `pid ${r.pid} on ${r.host} (${r.path} I/O path, PID namespace ${r.pidns ?? 'unknown'})`;
}

/**
 * Whether the holder of record `r` is provably gone, seen from `me`; `flockFree`: this
 * process holds the addon's flock on walrus.lock now (so no native holder on this kernel
 * holds it).
 */
function judge(r: Identity, me: Identity, flockFree: boolean): Verdict {
  if (r.boot !== null && me.boot !== null && r.boot !== me.boot) {
    if (r.host === me.host) return { kind: 'gone' }; // written before this machine restarted
    return { kind: 'unknown', why: `it was written on host ${r.host}, whose processes cannot be seen from here` };
  }
  if (r.boot === null || me.boot === null) return { kind: 'unknown', why: 'the boot id is not available here' };
  // Same kernel.
  if (flockFree && r.path === 'native') return { kind: 'gone' }; // a native holder would hold the flock
  if (r.pidns === null || r.pidns !== me.pidns) {
    return { kind: 'unknown', why: `its holder ran in another PID namespace (${r.pidns ?? 'unknown'}: another container)` };
  }
  const start = processStart(r.pid);
  if (start === null) {
    // No /proc entry: gone, unless /proc hides other users' processes (hidepid) and it lives.
    try {
      process.kill(r.pid, 0);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ESRCH') return { kind: 'gone' };
    }
    return { kind: 'unknown', why: `process ${r.pid} exists but /proc does not show its start time` };
  }
  if (r.start === null) return { kind: 'unknown', why: 'the record has no process start time' };
  return start === r.start ? { kind: 'alive' } : { kind: 'gone' }; // another start time: the pid was reused
}

function parseRecord(text: string): Identity | null {
  try {
    const r = JSON.parse(text) as Partial<Identity> & { walrus?: unknown };
    const str = (v: unknown): v is string | null => v === null || typeof v === 'string';
    if (r.walrus !== 'owner' || (r.path !== 'native' && r.path !== 'portable') || !Number.isInteger(r.pid) || typeof r.host !== 'string') return null;
    if (!str(r.start) || !str(r.boot) || !str(r.pidns)) return null;
    return { path: r.path, pid: r.pid!, start: r.start, boot: r.boot, pidns: r.pidns, host: r.host };
  } catch {
    return null;
  }
}

/** The record in `file`, without following a symlink; null when it is unreadable, undefined when it is gone. */
function readRecord(file: string): Identity | null | undefined {
  let fd = -1;
  try {
    fd = openSync(file, fsConstants.O_RDONLY | (fsConstants.O_NOFOLLOW ?? 0));
    return parseRecord(readFileSync(fd, 'utf8'));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    return null;
  } finally {
    if (fd >= 0) closeSync(fd);
  }
}

function removeIfPresent(file: string): void {
  try {
    unlinkSync(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

/** Blocks the thread for `ms` (only between attempts of two processes opening at once). */
function pause(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

const ATTEMPTS = 50;

/**
 * Places this process's owner record in `ns` (see the top of this file) or throws
 * ERR_WALRUS_LOCKED; returns the record's path.
 */
function placeRecord(ns: string, lockPath: string, me: Identity, flockFree: boolean): string {
  const nonce = randomBytes(8).toString('hex');
  const tmp = join(ns, TMP_PREFIX + nonce);
  const claim = join(ns, CLAIM_PREFIX + nonce);
  const owner = join(ns, OWNER_PREFIX + nonce);
  const body = `${JSON.stringify({ walrus: 'owner', ...me, since: new Date().toISOString() })}\n`;
  for (let attempt = 0; ; attempt++) {
    writeFileSync(tmp, body, { flag: 'wx', mode: 0o600 });
    renameSync(tmp, claim);
    let contended: { file: string; holder: string; why: string | null } | null = null;
    let refusal: WalrusError | null = null;
    for (const name of readdirSync(ns)) {
      const isOwner = name.startsWith(OWNER_PREFIX);
      if ((!isOwner && !name.startsWith(CLAIM_PREFIX)) || name === CLAIM_PREFIX + nonce) continue;
      const file = join(ns, name);
      const r = readRecord(file);
      if (r === undefined) continue; // removed meanwhile
      const verdict: Verdict = r === null ? { kind: 'unknown', why: 'the record cannot be read' } : judge(r, me, flockFree);
      if (verdict.kind === 'gone') {
        removeIfPresent(file); // by its unique name: only that record can go
        continue;
      }
      const holder = r === null ? 'an unknown holder' : describeHolder(r);
      const why = verdict.kind === 'unknown' ? verdict.why : null;
      if (!isOwner) {
        // Another open of this directory is under way: both back off and try again.
        contended = { file, holder, why };
        continue;
      }
      refusal = why === null ? lockedError(ns, lockPath, holder) : unjudgeable(ns, file, holder, why);
      break;
    }
    if (refusal === null && contended === null) {
      renameSync(claim, owner);
      return owner;
    }
    removeIfPresent(claim);
    if (refusal !== null) throw refusal;
    if (attempt + 1 >= ATTEMPTS) {
      // A claim that outlived every attempt: its writer died between claim and record.
      throw contended!.why === null ? lockedError(ns, lockPath, contended!.holder) : unjudgeable(ns, contended!.file, contended!.holder, contended!.why);
    }
    pause(1 + Math.floor(Math.random() * 10));
  }
}

/**
 * Takes the lock of namespace directory `ns` for this thread's I/O path; throws
 * ERR_WALRUS_LOCKED when it is held (or cannot be judged), ERR_WALRUS_IO when a file
 * operation fails.
 */
export function lockNamespace(ns: string): DirectoryLock {
  const path = join(ns, LOCK_FILE);
  const kernelFlag = ioPath === 'portable' ? openLockFlag(false) : null;
  const { O_RDWR, O_CREAT, O_CLOEXEC, O_NOFOLLOW } = native.constants;
  let fd: number;
  try {
    fd = native.open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | (kernelFlag ?? 0), 0o600);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (kernelFlag !== null && (code === 'EWOULDBLOCK' || code === 'EAGAIN' || code === 'EBUSY')) throw lockedError(ns, path);
    throw ioError(err, 'opening the lock file failed', path);
  }
  let record: string | null = null;
  const release = (): void => {
    if (record !== null) {
      const file = record;
      record = null;
      try {
        removeIfPresent(file);
      } catch {
        // Left behind, it names a process that is about to be judged gone.
      }
    }
    if (fd >= 0) {
      const f = fd;
      fd = -1;
      native.close(f);
    }
  };
  try {
    if (ioPath === 'native') {
      let locked: boolean;
      try {
        locked = native.flock(fd, true);
      } catch (err) {
        throw ioError(err, 'locking the data directory failed', path);
      }
      if (!locked) throw lockedError(ns, path);
    }
    if (process.platform === 'linux' || (ioPath === 'portable' && kernelFlag === null)) {
      try {
        record = placeRecord(ns, path, myIdentity(ioPath), ioPath === 'native');
      } catch (err) {
        throw err instanceof WalrusError ? err : ioError(err, 'writing the lock owner record failed', ns);
      }
    }
  } catch (err) {
    release();
    throw err;
  }
  return { release };
}

/**
 * For read-only tools (the CLI): a description of the live holder of `ns` according to its
 * owner records, or null when no record names a live or unjudgeable holder. Removes nothing.
 */
export function recordedHolder(ns: string): string | null {
  const me = myIdentity(ioPath);
  let names: string[];
  try {
    names = readdirSync(ns);
  } catch {
    return null;
  }
  for (const name of names) {
    if (!name.startsWith(OWNER_PREFIX)) continue;
    const r = readRecord(join(ns, name));
    if (r === undefined) continue;
    if (r === null) return 'an unreadable owner record';
    // A reader holds no flock, so native records are judged by their pid like the others.
    if (judge(r, me, false).kind !== 'gone') return describeHolder(r);
  }
  return null;
}

/** The reader's kernel lock flag of this platform for the portable path (see openLockFlag). */
export function readerLockFlag(): number | null {
  return ioPath === 'portable' ? openLockFlag(true) : null;
}
