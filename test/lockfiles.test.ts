/**
 * The lock files stay usable by `npm ci` (what CI systems and the README run): npm ci refuses
 * a lock file out of sync with its package.json, and npm 11 counts a missing optional
 * binary of another platform (msgpackr-extract's) as out of sync, which once made both the
 * README's command and the benchmark setup fall back to `npm install`. Checked with
 * `npm ci --dry-run` on a copy of each package.json and lock file: it validates the lock
 * and resolves the tree without downloading or installing anything.
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { tempDir } from './helpers.js';

const PACKAGES = [
  ['the library', resolve('.')],
  ['the benchmarks', resolve('bench')],
] as const;

describe('lock files', () => {
  it.each(PACKAGES)('%s: npm ci accepts package-lock.json as it is committed', (_, dir) => {
    const copy = tempDir('walrus-lock-');
    copyFileSync(join(dir, 'package.json'), join(copy, 'package.json'));
    copyFileSync(join(dir, 'package-lock.json'), join(copy, 'package-lock.json'));
    let out = '';
    try {
      out = execFileSync('npm', ['ci', '--dry-run', '--ignore-scripts', '--no-audit', '--no-fund'], { cwd: copy, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 120_000 });
    } catch (e) {
      const err = e as { stdout?: string; stderr?: string };
      throw new Error(`npm ci refused the lock file of ${dir}:\n${err.stderr ?? ''}${err.stdout ?? ''}`);
    }
    expect(out).toMatch(/added \d+ packages/);
    expect(existsSync(join(copy, 'node_modules'))).toBe(false);
  }, 150_000);
});
