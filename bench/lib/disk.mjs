// Temporary directories and disk settling for the benchmarks: one root under os.tmpdir(),
// a fresh directory per scenario run, removed at exit (also on SIGINT/SIGTERM/SIGHUP), and a
// bounded wait for the block device to go quiet between runs.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';

/**
 * Creates the temporary root and registers its removal. `onSignal(sig)` runs before the
 * removal when a signal ends the process.
 */
export function makeTmpRoot(prefix, onSignal = () => {}) {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  let cleaned = false;
  let seq = 0;
  const cleanup = () => {
    if (cleaned) return;
    cleaned = true;
    try {
      fs.rmSync(root, { recursive: true, force: true });
    } catch {
      // best effort
    }
  };
  process.on('exit', cleanup);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.on(sig, () => {
      onSignal(sig);
      process.stderr.write(`\ninterrupted (${sig}); removed ${root}\n`);
      cleanup();
      process.exit(130);
    });
  }
  const freshDir = (name) => {
    const d = path.join(root, `${String(++seq).padStart(3, '0')}-${name}`);
    fs.mkdirSync(d);
    return d;
  };
  return { root, freshDir, cleanup };
}

/** The /proc/diskstats key ("major minor ") of the device holding `p`, or null. */
function diskstatsKey(p) {
  try {
    const dev = fs.statSync(p).dev;
    const major = (dev >> 8) & 0xfff;
    const minor = (dev & 0xff) | ((dev >> 12) & 0xfff00);
    return `${major} ${minor} `;
  } catch {
    return null;
  }
}

/** A function returning the I/Os in flight on the device holding `p` (0 when unknown). */
export function ioInFlightOf(p) {
  const key = diskstatsKey(p);
  return () => {
    if (key === null) return 0;
    try {
      const line = fs.readFileSync('/proc/diskstats', 'utf8').split('\n').find((l) => l.trimStart().startsWith(key));
      return line ? Number(line.trim().split(/\s+/)[11]) : 0;
    } catch {
      return 0;
    }
  };
}

/** fsync of a directory (commits creations and removals in it); best effort. */
export function fsyncDir(dir) {
  try {
    const fd = fs.openSync(dir, 'r');
    try {
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    // best effort
  }
}

/** Waits (at most `maxMs`) until `inFlight()` has read 0 three times in a row, 5 ms apart. */
export async function waitQuiet(inFlight, maxMs = 1000) {
  const until = performance.now() + maxMs;
  let quiet = 0;
  while (quiet < 3 && performance.now() < until) {
    quiet = inFlight() === 0 ? quiet + 1 : 0;
    await new Promise((r) => setTimeout(r, 5));
  }
}

export function readText(p) {
  try {
    return fs.readFileSync(p, 'utf8').trim();
  } catch {
    return '?';
  }
}

export function fsType(p) {
  try {
    const t = fs.statfsSync(p).type;
    const known = { 0xef53: 'ext2/3/4', 0x58465342: 'xfs', 0x9123683e: 'btrfs', 0x01021994: 'tmpfs', 0x794c7630: 'overlayfs' };
    return known[t] ?? `0x${t.toString(16)}`;
  } catch {
    return '?';
  }
}

/**
 * Between runs: remove a run's files, commit that (fsync of `root`) and wait (at most
 * `maxMs`) until the disk has no I/O in flight, so deleting hundreds of MB (ext4 with
 * `discard` trims at commit) does not land on the next scenario. On a disk that other
 * processes keep busy the wait always lasts `maxMs`.
 */
export async function removeAndSettle(dir, root, inFlight, maxMs = 1000) {
  fs.rmSync(dir, { recursive: true, force: true });
  fsyncDir(root);
  await waitQuiet(inFlight, maxMs);
}

/** "device on mountpoint, options" of the mount holding `p` (from /proc/mounts), or '?'. */
export function mountOf(p) {
  try {
    const real = fs.realpathSync(p);
    let best = null;
    for (const line of fs.readFileSync('/proc/mounts', 'utf8').split('\n')) {
      const [dev, mnt, , opts] = line.split(' ');
      if (!mnt || !(real === mnt || real.startsWith(mnt.endsWith('/') ? mnt : `${mnt}/`))) continue;
      if (best === null || mnt.length >= best.mnt.length) best = { dev, mnt, opts };
    }
    if (best === null) return '?';
    const dev = path.basename(best.dev);
    const rotational = readText(`/sys/block/${dev.replace(/p?\d+$/, '')}/queue/rotational`);
    return `${best.dev} on ${best.mnt} (${best.opts}${rotational === '?' ? '' : `; rotational ${rotational}`})`;
  } catch {
    return '?';
  }
}
