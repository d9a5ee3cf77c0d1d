/**
 * Security and resource limits: file and directory modes, symlinks planted in the data
 * directory, descriptors not leaked into child processes, crafted length fields and
 * geometry, memory under a producer that outruns the disk, and the directory lock across
 * processes.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, readlinkSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { Walrus, FsyncSchedule } from '../dist/index.js';
import { ShardStore } from '../dist/workers/store/store.js';
import { recover } from '../dist/workers/recovery/index.js';
import { encodeSegmentHeader, segmentName } from '../dist/shared/format/segment.js';
import { native } from '../dist/shared/native.js';
import { REC_LEN, SEGMENT_DATA_START } from '../dist/shared/format/layout.js';
import { collect, pseudoRandom, tempDir } from './helpers.js';

const ELOOP = 40;
const EEXIST = 17;

async function smallLog(dir: string, entries = 5): Promise<void> {
  const wal = await Walrus.open({ dir, shards: 1, blockBytes: 4096, segmentBlocks: 4 });
  for (let i = 0; i < entries; i++) wal.append('t', `entry ${i}`);
  await wal.close();
}

describe('file modes', () => {
  it('creates directories 0700 and files 0600 whatever the umask', async () => {
    const outer = tempDir('walrus-modes-');
    const dir = join(outer, 'a', 'b');
    const saved = process.umask(0);
    try {
      const wal = await Walrus.open({ dir, key: 'ns', shards: 2, blockBytes: 4096, segmentBlocks: 4 });
      wal.append('t', 'x');
      wal.append('u', 'y');
      await wal.close();
    } finally {
      process.umask(saved);
    }
    for (const d of [join(outer, 'a'), dir, join(dir, 'ns')]) expect((statSync(d).mode & 0o777).toString(8), d).toBe('700');
    const files = readdirSync(join(dir, 'ns'));
    expect(files.filter((f) => f.endsWith('.seg')).length).toBeGreaterThanOrEqual(1);
    expect(files).toContain('walrus.lock');
    for (const f of files) expect((statSync(join(dir, 'ns', f)).mode & 0o777).toString(8), f).toBe('600');
  });
});

describe('symlinks planted in the data directory are never followed', () => {
  it('a symlink at the lock file: open fails with ELOOP, the target is untouched', async () => {
    const dir = tempDir('walrus-link-');
    const victim = join(tempDir('walrus-victim-'), 'victim');
    writeFileSync(victim, 'precious');
    symlinkSync(victim, join(dir, 'walrus.lock'));
    await expect(Walrus.open({ dir, shards: 1 })).rejects.toMatchObject({ code: 'ERR_WALRUS_IO', errno: ELOOP, syscall: 'open' });
    expect(readFileSync(victim, 'utf8')).toBe('precious');
  });

  it('a symlink named like a segment: recovery refuses it with ELOOP, the target is untouched', async () => {
    const dir = tempDir('walrus-link-');
    await smallLog(dir);
    const victim = join(tempDir('walrus-victim-'), 'victim');
    writeFileSync(victim, 'precious');
    symlinkSync(victim, join(dir, segmentName(0, 99)));
    await expect(Walrus.open({ dir, shards: 1, blockBytes: 4096, segmentBlocks: 4 })).rejects.toMatchObject({ code: 'ERR_WALRUS_IO', errno: ELOOP, syscall: 'open' });
    expect(readFileSync(victim, 'utf8')).toBe('precious');
  });

  it('a symlink planted where the next segment will be created: the shard fails, nothing is followed', async () => {
    const dir = tempDir('walrus-link-');
    const victim = join(tempDir('walrus-victim-'), 'victim');
    writeFileSync(victim, 'precious');
    const wal = await Walrus.open({ dir, shards: 1, blockBytes: 4096, segmentBlocks: 2 });
    // Planted while the log runs: the names of the next segments, one link dangling.
    for (let seq = 2; seq <= 6; seq++) symlinkSync(seq === 3 ? join(dir, 'nowhere') : victim, join(dir, segmentName(0, seq)));
    let failure: { code?: string; errno?: number; syscall?: string } | undefined;
    try {
      for (let i = 0; i < 40 && failure === undefined; i++) {
        await wal.appendAndSync('t', pseudoRandom(i, 3000)).catch((e: typeof failure) => {
          failure = e;
        });
      }
    } finally {
      await wal.close().catch(() => {});
    }
    // O_CREAT | O_EXCL | O_NOFOLLOW: an existing name, link or not, is never opened.
    expect(failure).toMatchObject({ code: 'ERR_WALRUS_IO', errno: EEXIST, syscall: 'open' });
    expect(readFileSync(victim, 'utf8')).toBe('precious');
    expect(readdirSync(dir)).not.toContain('nowhere');
  });

  it('descriptors are close-on-exec: a child process inherits none of the log files', async () => {
    const dir = tempDir('walrus-cloexec-');
    const wal = await Walrus.open({ dir, shards: 2, blockBytes: 4096, segmentBlocks: 4 });
    try {
      await wal.appendAndSync('t', 'x');
      await wal.appendAndSync('u', 'y');
      // This process holds them (so the check below can fail) ...
      const mine = readdirSync('/proc/self/fd').map((fd) => {
        try {
          return readlinkSync(`/proc/self/fd/${fd}`);
        } catch {
          return '';
        }
      });
      expect(mine.filter((l) => l.startsWith(dir)).length).toBeGreaterThanOrEqual(3);
      // ... and a child started now sees none of them.
      const child = spawnSync('sh', ['-c', 'ls -l /proc/$$/fd/'], { encoding: 'utf8' });
      expect(child.stdout).toContain('->');
      const inherited = child.stdout.split('\n').filter((l) => l.includes(dir) || l.includes('io_uring'));
      expect(inherited).toEqual([]);
    } finally {
      await wal.close();
    }
  });
});

describe('crafted length fields and geometry', () => {
  /** Recovers `dir` in this process; returns the error (or null) and the growth of ArrayBuffer memory. */
  function recoverMeasured(dir: string): { error: { code?: string; file?: string; offset?: number } | null; grew: number } {
    const store = new ShardStore(dir, 0, 4096, 4);
    const before = process.memoryUsage().arrayBuffers;
    let peak = before;
    try {
      recover(store, () => {
        peak = Math.max(peak, process.memoryUsage().arrayBuffers);
      });
      return { error: null, grew: Math.max(peak, process.memoryUsage().arrayBuffers) - before };
    } catch (e) {
      return { error: e as { code?: string }, grew: Math.max(peak, process.memoryUsage().arrayBuffers) - before };
    } finally {
      store.closeFiles();
    }
  }

  it('a record whose length prefix is huge is corruption in durable data, found without allocating it', async () => {
    const dir = tempDir('walrus-len-');
    await smallLog(dir, 20);
    const seg = readdirSync(dir).find((f) => f.endsWith('.seg'))!;
    const bytes = readFileSync(join(dir, seg));
    // The first record of the topic's block: its length becomes 4 GiB - 16.
    const at = bytes.indexOf('entry 0') - 32;
    expect(at).toBeGreaterThan(SEGMENT_DATA_START);
    bytes.writeUInt32LE(0xfffffff0, at + REC_LEN);
    writeFileSync(join(dir, seg), bytes);
    const { error, grew } = recoverMeasured(dir);
    expect(error).toMatchObject({ code: 'ERR_WALRUS_CORRUPT', file: join(dir, seg) });
    expect(grew).toBeLessThan(8 << 20);
    await expect(Walrus.open({ dir, shards: 1, blockBytes: 4096, segmentBlocks: 4 })).rejects.toMatchObject({ code: 'ERR_WALRUS_CORRUPT' });
  });

  it('a segment header claiming a huge geometry (valid checksum) is refused at once, not probed or allocated', () => {
    const dir = tempDir('walrus-geo-');
    const path = join(dir, segmentName(0, 1));
    // 2^32-1 slots of 256 MiB in a 20 KiB file: before the size check, recovery probed every
    // slot (four billion reads past the end of the file).
    const file = Buffer.alloc(5 * 4096);
    Buffer.from(encodeSegmentHeader(0, 1, 0xffffffff, 256 * 1024 * 1024, 12345)).copy(file, 0);
    file[4096] = 1; // not a creation cut short: something is in it
    writeFileSync(path, file);
    const { error, grew } = recoverMeasured(dir);
    expect(error).toMatchObject({ code: 'ERR_WALRUS_CORRUPT', file: path, offset: file.length });
    expect(grew).toBeLessThan(8 << 20);
  });

  it('records above maxRecordBytes are refused at append, before anything is framed', async () => {
    const dir = tempDir('walrus-max-');
    const wal = await Walrus.open({ dir, shards: 1, maxRecordBytes: 1000 });
    try {
      expect(() => wal.append('t', Buffer.alloc(1001))).toThrow(expect.objectContaining({ code: 'ERR_WALRUS_RECORD_TOO_LARGE' }));
      expect(wal.append('t', Buffer.alloc(1000))).toBe(0);
    } finally {
      await wal.close();
    }
  });
});

describe('memory under a producer that outruns the disk', () => {
  it.each([
    { what: 'ring records (1 KiB)', size: 1024, count: 120_000 },
    { what: 'records beside the ring (48 KiB)', size: 48 * 1024, count: 8_000 },
  ])('$what: backpressure, drain, and RSS bounded while $count records go through a 64 KiB ring with an fsync per write', async ({ size, count }) => {
    const dir = tempDir('walrus-rss-');
    const wal = await Walrus.open({ dir, shards: 1, ringBytes: 64 * 1024, backpressureMs: 0, fsync: FsyncSchedule.SyncEach, maxRecordBytes: 1 << 20 });
    const payload = pseudoRandom(7, size);
    let refused = 0;
    let accepted = 0;
    global.gc?.();
    const base = process.memoryUsage().rss;
    let peak = base;
    try {
      while (accepted < count) {
        try {
          wal.append('bp', payload);
          accepted++;
        } catch (e) {
          expect((e as { code?: string }).code).toBe('ERR_WALRUS_BACKPRESSURE');
          refused++;
          await wal.drain();
          peak = Math.max(peak, process.memoryUsage().rss);
        }
      }
      await wal.sync();
      peak = Math.max(peak, process.memoryUsage().rss);
    } finally {
      await wal.close();
    }
    console.log(`backpressure (${size} B records): ${accepted} appended (${((accepted * size) / 2 ** 20).toFixed(0)} MiB), ${refused} refusals, RSS grew ${((peak - base) / 2 ** 20).toFixed(1)} MiB`);
    expect(refused).toBeGreaterThan(0);
    // The bound: the ring, plus at most 64 MiB of records travelling beside it (their cap),
    // plus garbage the runtime has not collected yet: far below what was appended (117 MiB
    // of ring records, 375 MiB of large ones), which is what an unbounded queue would hold.
    expect(peak - base).toBeLessThan((size > 16 * 1024 ? 160 : 64) * 2 ** 20);
    const again = await Walrus.open({ dir, shards: 1, maxRecordBytes: 1 << 20 });
    try {
      let n = 0;
      for await (const e of again.iterate('bp')) {
        if (n % 997 === 0) expect(Buffer.compare(e.data, payload)).toBe(0);
        n++;
      }
      expect(n).toBe(count);
    } finally {
      await again.close();
    }
  }, 300_000);
});

describe('the directory lock across processes', () => {
  const INDEX = pathToFileURL(join(process.cwd(), 'dist', 'index.js')).href;
  /** A child that opens `dir`, prints "open" or the error code, and holds it until stdin closes. */
  function child(dir: string) {
    const script = `
      import { Walrus } from ${JSON.stringify(INDEX)};
      try {
        const wal = await Walrus.open({ dir: ${JSON.stringify(dir)}, shards: 1 });
        process.stdout.write('open\\n');
        process.stdin.resume();
        process.stdin.on('end', async () => { await wal.close(); process.exit(0); });
      } catch (e) {
        process.stdout.write((e.code ?? 'error') + '\\n');
        process.exit(0);
      }`;
    const p = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['pipe', 'pipe', 'inherit'] });
    const first = new Promise<string>((resolve, reject) => {
      let out = '';
      p.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('\n')) resolve(out.trim());
      });
      p.on('error', reject);
      p.on('exit', () => resolve(out.trim()));
    });
    return { p, first };
  }

  it('a second process is refused while the first holds the directory, and gets it once the first is gone', async () => {
    const dir = tempDir('walrus-lock-');
    mkdirSync(dir, { recursive: true });
    const a = child(dir);
    expect(await a.first).toBe('open');
    const b = child(dir);
    expect(await b.first).toBe('ERR_WALRUS_LOCKED');
    // This process is refused too.
    await expect(Walrus.open({ dir, shards: 1 })).rejects.toMatchObject({ code: 'ERR_WALRUS_LOCKED' });
    // kill -9 of the holder releases it (the kernel drops the flock with the process).
    const gone = new Promise((r) => a.p.on('exit', r));
    a.p.kill('SIGKILL');
    await gone;
    const wal = await Walrus.open({ dir, shards: 1 });
    try {
      // ... and while this process holds it, a child is refused.
      const c = child(dir);
      expect(await c.first).toBe('ERR_WALRUS_LOCKED');
    } finally {
      await wal.close();
    }
  }, 60_000);
});

describe('host flags', () => {
  it('a host flag that workers refuse (--expose-gc) does not stop Walrus.open', () => {
    const dir = tempDir('walrus-flags-');
    const index = pathToFileURL(join(process.cwd(), 'dist', 'index.js')).href;
    const script = `import { Walrus } from ${JSON.stringify(index)};
      const wal = await Walrus.open({ dir: ${JSON.stringify(dir)}, shards: 2 });
      await wal.appendAndSync('t', 'x');
      await wal.close();
      process.stdout.write(String(typeof globalThis.gc));`;
    const r = spawnSync(process.execPath, ['--expose-gc', '--input-type=module', '-e', script], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('function');
  });
});
