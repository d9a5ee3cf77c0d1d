/**
 * The test seams stay out of the shipped addon (docs/DURABILITY.md, "Test builds"): the fault
 * plans and the power-loss journal exist only in build/Release/walrus_test.node, which a
 * process loads only under --conditions=walrus-test. The shipped walrus.node holds none of
 * their code, and their variables (WALRUS_TEST_FAULT, WALRUS_TEST_POWERLOSS, whose `:nosync`
 * turns every fdatasync into a no-op in the test build) change nothing in a process that runs
 * it. Each check is run against the test build too, where it must see the seams: so the
 * check on the shipped build is one that can fail.
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TEST_ADDON_FLAG } from './fixtures/test-addon.mjs';
import { tempDir } from './helpers.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SHIPPED = join(ROOT, 'build', 'Release', 'walrus.node');
const TEST_BUILD = join(ROOT, 'build', 'Release', 'walrus_test.node');
const CHILD = fileURLToPath(new URL('./fixtures/seams-child.mjs', import.meta.url));
const SHIM_SOURCE = fileURLToPath(new URL('./fixtures/sync-counter.c', import.meta.url));

/** Strings every piece of seam code leaves in a binary: names of symbols, exports, messages. */
const SEAM_MARKERS = ['WALRUS_TEST', 'powerloss', 'power-loss', 'journal', 'testSeams', 'injectFault', 'fileFault', 'ContextFaults', 'InterceptWrite', 'BatchFault', 'BatchScope'];

/** The markers found in the binary at `path` (symbol table and data alike). */
function markersIn(path: string): string[] {
  const bytes = readFileSync(path);
  return SEAM_MARKERS.filter((m) => bytes.includes(m));
}

/** The demangled symbols of the binary at `path` that belong to the seams' namespaces. */
function seamSymbols(path: string): string[] {
  const symbols = execFileSync('nm', ['-C', path], { encoding: 'utf8', maxBuffer: 64 << 20 }).split('\n');
  return symbols.filter((s) => /walrus::(seam|powerloss)::/.test(s));
}

describe('the shipped addon', () => {
  it('holds no fault-injection or power-loss code, and exports no seam; the test build has them all', () => {
    expect(markersIn(SHIPPED)).toEqual([]);
    expect(seamSymbols(SHIPPED)).toEqual([]);
    expect(markersIn(TEST_BUILD)).toEqual(SEAM_MARKERS);
    expect(seamSymbols(TEST_BUILD).length).toBeGreaterThan(0);
    const require = createRequire(import.meta.url);
    const shipped = require(SHIPPED) as Record<string, unknown> & { IoContext: { prototype: object } };
    const test = require(TEST_BUILD) as Record<string, unknown> & { IoContext: { prototype: object } };
    expect(shipped.testSeams).toBeUndefined();
    expect('injectFault' in shipped.IoContext.prototype).toBe(false);
    expect(Object.keys(test.testSeams as object).sort()).toEqual(['beforeRecovery', 'fileFault', 'onContexts', 'powerLoss']);
    expect('injectFault' in test.IoContext.prototype).toBe(true);
  });
});

describe('WALRUS_TEST_FAULT and WALRUS_TEST_POWERLOSS', () => {
  const N = 40;
  let shim = '';

  interface ChildResult {
    testBuild: boolean;
    acknowledged: number;
    appendSyncs: number;
    error: { code: string; errno: number; syscall: string } | null;
    readBack: number;
    reopenError: unknown;
  }

  let shimDir = '';

  beforeAll(() => {
    // A C compiler is present wherever the addon builds. (The shim creates SYNC_COUNT_FILE as
    // it is loaded: a child that could not preload it fails reading the count.)
    shimDir = mkdtempSync(join(tmpdir(), 'walrus-shim-'));
    shim = join(shimDir, 'sync-counter.so');
    execFileSync(process.env.CC ?? 'cc', ['-shared', '-fPIC', '-O2', '-o', shim, SHIM_SOURCE]);
  });
  afterAll(() => rmSync(shimDir, { recursive: true, force: true }));

  /** Runs seams-child.mjs (`testBuild`: under the walrus-test condition) with `vars` set. */
  async function run(
    testBuild: boolean,
    vars: (journal: string) => Record<string, string>,
    hostFlags: string[] = [],
  ): Promise<{ result: ChildResult; journal: string[] }> {
    const base = tempDir('walrus-seams-');
    const journal = join(base, 'journal');
    mkdirSync(journal);
    const env = { ...process.env, ...vars(journal), LD_PRELOAD: shim, SYNC_COUNT_FILE: join(base, 'syncs') };
    const child = spawn(process.execPath, [...hostFlags, ...(testBuild ? [TEST_ADDON_FLAG] : []), CHILD, join(base, 'data'), String(N)], { stdio: ['ignore', 'pipe', 'pipe'], env });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const code = await new Promise((resolve) => child.on('close', resolve));
    expect({ code, err }).toEqual({ code: 0, err: '' });
    return { result: JSON.parse(out) as ChildResult, journal: readdirSync(journal) };
  }

  const both = (journal: string) => ({ WALRUS_TEST_FAULT: 'fsync:1:5', WALRUS_TEST_POWERLOSS: `${journal}:4096:nosync` });

  it('change nothing with the shipped addon: every appendAndSync is an fdatasync, none fails, all read back', async () => {
    const { result, journal } = await run(false, both);
    expect(result).toMatchObject({ testBuild: false, acknowledged: N, error: null, readBack: N, reopenError: null });
    expect(result.appendSyncs).toBeGreaterThanOrEqual(N);
    expect(journal).toEqual([]);
  });

  it('act with the test build: the same variables fail the first fdatasync', async () => {
    const { result } = await run(true, both);
    expect(result).toMatchObject({ testBuild: true, acknowledged: 0, error: { code: 'ERR_WALRUS_IO', errno: 5, syscall: 'fdatasync' } });
  });

  it('act with the test build in the shard workers too when a host flag is refused for workers', async () => {
    // `--expose-gc` is refused for worker threads on Node 20 (ERR_WORKER_INVALID_EXEC_ARGV):
    // the workers then start without the host's flags, and once lost the condition with them,
    // loading the shipped addon and ignoring every seam (this test failed: 40 acknowledged).
    const { result } = await run(true, both, ['--expose-gc']);
    expect(result).toMatchObject({ testBuild: true, acknowledged: 0, error: { code: 'ERR_WALRUS_IO', errno: 5, syscall: 'fdatasync' } });
  });

  it('act with the test build: :nosync acknowledges every append without its fdatasync, and keeps a journal', async () => {
    const { result, journal } = await run(true, (j) => ({ WALRUS_TEST_POWERLOSS: `${j}:4096:nosync` }));
    expect(result).toMatchObject({ testBuild: true, acknowledged: N, error: null, readBack: N, reopenError: null });
    expect(result.appendSyncs).toBeLessThan(N);
    expect(journal.some((f) => f.startsWith('journal-'))).toBe(true);
  });
});
