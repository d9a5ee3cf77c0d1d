import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Walrus, FsyncSchedule } from '../dist/index.js';
import { collect, tempDir } from './helpers.js';

/** Mounts a tmpfs of `kib` KiB, or returns why it cannot (not root, no mount permission). */
function mountTinyTmpfs(kib: number): { dir: string } | { skip: string } {
  if (process.getuid?.() !== 0) return { skip: 'needs root to mount a tmpfs' };
  const dir = join(tempDir('walrus-enospc-'), 'fs');
  mkdirSync(dir);
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${kib}k`, 'tmpfs', dir], { stdio: 'pipe' });
  } catch (err) {
    return { skip: `mount failed: ${String((err as { stderr?: Buffer }).stderr ?? err).trim()}` };
  }
  mounted.push(dir);
  return { dir };
}

const mounted: string[] = [];
afterEach(() => {
  for (const d of mounted.splice(0)) execFileSync('umount', ['-l', d]);
});

describe('a real ENOSPC on a tiny tmpfs', () => {
  it('fails the shard with ERR_WALRUS_IO (ENOSPC), acknowledges nothing after, and a reopen keeps what was durable', async (ctx) => {
    const m = mountTinyTmpfs(256);
    if ('skip' in m) {
      console.warn(`skipped: ${m.skip}`);
      ctx.skip();
      return;
    }
    const opts = { dir: m.dir, shards: 1, fsync: FsyncSchedule.NoFsync, blockBytes: 4096, segmentBlocks: 4, backpressureMs: 2000 };
    const wal = await Walrus.open(opts);
    const payload = Buffer.alloc(1000, 7);
    let durable = 0;
    let failure: { code?: string; errnoCode?: string; syscall?: string } | undefined;
    try {
      for (let i = 0; i < 2000 && failure === undefined; i++) {
        try {
          await wal.appendAndSync('t', payload);
          durable = i + 1;
        } catch (e) {
          failure = e as typeof failure;
        }
      }
      expect(failure).toMatchObject({ code: 'ERR_WALRUS_IO', errnoCode: 'ENOSPC', syscall: expect.any(String) });
      // The shard refuses everything afterwards.
      expect(() => wal.append('t', 'more')).toThrow(expect.objectContaining({ code: 'ERR_WALRUS_IO' }));
      await expect(wal.sync()).rejects.toMatchObject({ code: 'ERR_WALRUS_IO' });
    } finally {
      await wal.close().catch(() => {});
    }
    expect(durable).toBeGreaterThan(10);
    // Reopen on the same full file system: every acknowledged entry is there.
    const again = await Walrus.open({ ...opts, backpressureMs: 100 });
    try {
      const got = await collect(again.iterate('t'));
      expect(got.length).toBeGreaterThanOrEqual(durable);
      for (const e of got) expect(Buffer.compare(e.data, payload)).toBe(0);
    } finally {
      await again.close().catch(() => {});
    }
  });
});
