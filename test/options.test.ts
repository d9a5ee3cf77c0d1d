import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Walrus, FsyncSchedule, ReadConsistency, enableFdBackend, disableFdBackend } from '../dist/index.js';
import { sanitizeKey } from '../dist/main/namespace.js';
import { tempDir } from './helpers.js';

async function openError(options: Record<string, unknown>): Promise<{ code?: string; message: string; name: string }> {
  try {
    const wal = await Walrus.open(options as never);
    await wal.close();
  } catch (e) {
    return e as { code?: string; message: string; name: string };
  }
  throw new Error('open succeeded');
}

describe('option validation', () => {
  const cases: [string, Record<string, unknown>, string, string][] = [
    ['options', { dir: 42 }, 'ERR_INVALID_ARG_TYPE', 'options.dir'],
    ['key type', { key: 7 }, 'ERR_INVALID_ARG_TYPE', 'options.key'],
    ['key surrogate', { key: 'a\ud800' }, 'ERR_INVALID_ARG_VALUE', 'options.key'],
    ['consistency', { consistency: 'strict' }, 'ERR_INVALID_ARG_TYPE', 'options.consistency'],
    ['fsync', { fsync: 200 }, 'ERR_INVALID_ARG_TYPE', 'options.fsync'],
    ['shards type', { shards: '2' }, 'ERR_INVALID_ARG_TYPE', 'options.shards'],
    ['shards range', { shards: 0 }, 'ERR_OUT_OF_RANGE', 'options.shards'],
    ['shards integer', { shards: 1.5 }, 'ERR_OUT_OF_RANGE', 'options.shards'],
    ['backend', { backend: 'disk' }, 'ERR_INVALID_ARG_VALUE', 'options.backend'],
    ['maxRecordBytes', { maxRecordBytes: -1 }, 'ERR_OUT_OF_RANGE', 'options.maxRecordBytes'],
    ['maxRecordBytes max', { maxRecordBytes: 2 ** 31 + 1 }, 'ERR_OUT_OF_RANGE', 'options.maxRecordBytes'],
    ['ringBytes pow2', { ringBytes: 5000 }, 'ERR_INVALID_ARG_VALUE', 'options.ringBytes'],
    ['ringBytes range', { ringBytes: 1024 }, 'ERR_OUT_OF_RANGE', 'options.ringBytes'],
    ['blockBytes', { blockBytes: 5000 }, 'ERR_INVALID_ARG_VALUE', 'options.blockBytes'],
    ['segmentBlocks', { segmentBlocks: 0 }, 'ERR_OUT_OF_RANGE', 'options.segmentBlocks'],
    ['backpressureMs', { backpressureMs: -5 }, 'ERR_OUT_OF_RANGE', 'options.backpressureMs'],
    ['backpressureMs max', { backpressureMs: 60_001 }, 'ERR_OUT_OF_RANGE', 'or Infinity'],
    ['backpressureMs type', { backpressureMs: '100' }, 'ERR_INVALID_ARG_TYPE', 'options.backpressureMs'],
    ['ioUring', { ioUring: 'yes' }, 'ERR_INVALID_ARG_TYPE', 'options.ioUring'],
    ['pinWorkers', { pinWorkers: 1 }, 'ERR_INVALID_ARG_TYPE', 'options.pinWorkers'],
    ['readAhead', { readAhead: 'yes' }, 'ERR_INVALID_ARG_TYPE', 'options.readAhead'],
    ['unknown', { fsyncMs: 5 }, 'ERR_INVALID_ARG_VALUE', 'fsyncMs'],
  ];
  it.each(cases)('%s', async (_name, opts, code, mention) => {
    const err = await openError({ dir: tempDir(), ...opts });
    expect(err.code).toBe(code);
    expect(err.message).toContain(mention);
  });

  it('validates schedule and consistency constructors', () => {
    expect(() => FsyncSchedule.milliseconds(0)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(() => FsyncSchedule.milliseconds('5' as never)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    expect(() => ReadConsistency.atLeastOnce(0)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(FsyncSchedule.milliseconds(5)).toEqual({ kind: 'milliseconds', ms: 5 });
    expect(ReadConsistency.atLeastOnce(10)).toEqual({ kind: 'atLeastOnce', persistEvery: 10 });
  });

  it('disableFdBackend() makes mmap the default of later opens, enableFdBackend() fd again; an explicit backend wins', async () => {
    const ioOf = async (options: Record<string, unknown>) => {
      const wal = await Walrus.open({ dir: tempDir(), shards: 1, ...options });
      try {
        return wal.stats().io;
      } finally {
        await wal.close();
      }
    };
    const initial = process.env.WALRUS_TEST_BACKEND === 'mmap' ? 'mmap' : 'fd';
    try {
      disableFdBackend();
      expect(await ioOf({})).toBe('mmap');
      expect(await ioOf({ backend: 'fd' })).not.toBe('mmap');
      enableFdBackend();
      expect(await ioOf({})).not.toBe('mmap');
      expect(await ioOf({ backend: 'mmap' })).toBe('mmap');
      // The switch applies to opens after it, not to instances already open.
      const wal = await Walrus.open({ dir: tempDir(), shards: 1 });
      try {
        disableFdBackend();
        expect(wal.stats().io).not.toBe('mmap');
      } finally {
        await wal.close();
      }
    } finally {
      // Leave the default this test file started with (test/setup-backend.ts).
      if (initial === 'mmap') disableFdBackend();
      else enableFdBackend();
    }
  });

  it('takes dir and key from WALRUS_DATA_DIR and WALRUS_INSTANCE_KEY', async () => {
    const dir = tempDir();
    const saved = [process.env.WALRUS_DATA_DIR, process.env.WALRUS_INSTANCE_KEY];
    process.env.WALRUS_DATA_DIR = dir;
    process.env.WALRUS_INSTANCE_KEY = 'svc-a';
    try {
      const wal = await Walrus.open();
      wal.append('t', 'x');
      await wal.close();
      expect(readdirSync(join(dir, 'svc-a')).some((f) => f.endsWith('.seg'))).toBe(true);
    } finally {
      if (saved[0] === undefined) delete process.env.WALRUS_DATA_DIR;
      else process.env.WALRUS_DATA_DIR = saved[0];
      if (saved[1] === undefined) delete process.env.WALRUS_INSTANCE_KEY;
      else process.env.WALRUS_INSTANCE_KEY = saved[1];
    }
  });
});

describe('namespace keys', () => {
  it('sanitizes injectively and never leaves the data directory', () => {
    const keys = ['', 'a', 'A', '..', '.', '/', 'a/b', 'a%2Fb', '%', '%25', 'é', '\0', 'walrus.lock', '~', 'x'.repeat(300), 'x'.repeat(301)];
    const names = keys.map(sanitizeKey);
    expect(new Set(names).size).toBe(keys.length);
    for (const n of names.slice(1)) {
      expect(n).not.toMatch(/[./\0]/);
      expect(n.length).toBeLessThanOrEqual(255);
    }
  });

  it('keeps hostile keys inside dir', async () => {
    const dir = tempDir();
    for (const key of ['..', '../x', '/etc', 'a\0b', '🦭']) {
      const wal = await Walrus.open({ dir, key, shards: 1 });
      wal.append('t', key);
      await wal.close();
    }
    const entries = readdirSync(dir);
    expect(entries.length).toBe(5);
    for (const e of entries) expect(e).toMatch(/^[A-Za-z0-9_%-]+$/);
  });
});

describe('diagnostics', () => {
  const script = (dir: string) => `
    import { Walrus } from ${JSON.stringify(new URL('../dist/index.js', import.meta.url).href)};
    const wal = await Walrus.open({ dir: ${JSON.stringify(dir)}, shards: 1 });
    wal.append('t', 'x');
    await wal.close();
  `;
  const run = (env: Record<string, string>) =>
    spawnSync(process.execPath, ['--input-type=module', '-e', script(tempDir())], { env: { ...process.env, ...env }, encoding: 'utf8' });

  it('are off by default, on with NODE_DEBUG=walrus, and WALRUS_QUIET=1 forces them off', () => {
    const quietEnv = { NODE_DEBUG: '', WALRUS_QUIET: '' };
    const off = run(quietEnv);
    expect(off.status).toBe(0);
    expect(off.stderr).not.toContain('WALRUS');
    const on = run({ ...quietEnv, NODE_DEBUG: 'walrus' });
    expect(on.status).toBe(0);
    expect(on.stderr).toContain('WALRUS');
    expect(on.stderr).toContain('recovered');
    const forcedOff = run({ NODE_DEBUG: 'walrus', WALRUS_QUIET: '1' });
    expect(forcedOff.status).toBe(0);
    expect(forcedOff.stderr).not.toContain('WALRUS');
  });
});
