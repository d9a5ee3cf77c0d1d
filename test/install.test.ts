/**
 * Installing walrus-ts as a user does: `npm pack`, then `npm install <tarball>` into a fresh
 * app, in three settings (issue 13):
 *   a. normally: the prebuilt addon loads, nothing is compiled;
 *   b. with no compiler, make or Python on PATH: the same (the prebuild needs none);
 *   c. from a tarball without the prebuild and with no compiler: the install still succeeds,
 *      says why, and walrus-ts runs on its portable node:fs path, every API working.
 * Each app runs fixtures/install-app.mjs, which opens a log, uses the API and reopens it.
 * The tarball must hold no test-only code and stay small (PACKED_BOUND).
 *
 * Dependencies come from npm's cache when it has them (--prefer-offline: CI's `npm ci` has
 * just filled it), else from the registry.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, realpathSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { tmpdir } from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from './helpers.js';

const ROOT = resolve('.');
const PREBUILD = join(ROOT, 'prebuilds', 'linux-x64', 'walrus-ts.glibc.node');
/** The packed tarball's bound: 314 kB before the prebuild and the portable path; 434 kB with them, walrus-ts/jetstream and named consumers, source maps left out (they point at src/, which is not packed) (2026-12-03). */
const PACKED_BOUND = 512 * 1024;

/** npm's CLI script, so that npm can run with a PATH that holds nothing but node. */
function npmCli(): string {
  const candidates = [process.env.npm_execpath, join(dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'bin', 'npm-cli.js')];
  const onPath = spawnSync('sh', ['-c', 'command -v npm'], { encoding: 'utf8' }).stdout.trim();
  if (onPath) candidates.push(join(dirname(realpathSync(onPath)), 'npm-cli.js'));
  const found = candidates.find((c) => c !== undefined && c.endsWith('npm-cli.js') && existsSync(c));
  if (!found) throw new Error(`npm's CLI script not found among ${candidates.join(', ')}`);
  return found;
}

/**
 * The environment of a nested npm: the outer npm's variables (npm_config_*, set when this
 * runs under `npm test`) would configure it as if it ran in this checkout, except where
 * npm's cache and Node's headers are.
 */
function npmEnv(path: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (k.toLowerCase().startsWith('npm_') && !['npm_config_cache', 'npm_config_nodedir', 'npm_config_userconfig', 'npm_config_registry'].includes(k.toLowerCase())) continue;
    env[k] = v;
  }
  env.PATH = path;
  return env;
}

/**
 * A directory holding only `node` and `sh` (npm runs install scripts with sh): no compiler,
 * make or Python (they live in /usr/bin).
 */
function bareBin(): string {
  const bin = tempDir('walrus-bin-');
  symlinkSync(process.execPath, join(bin, 'node'));
  symlinkSync('/bin/sh', join(bin, 'sh'));
  return bin;
}

interface Installed {
  seconds: number;
  output: string;
  app: string;
}

function install(tarball: string, path: string): Installed {
  const app = tempDir('walrus-app-');
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'walrus-install-check', private: true, type: 'module' }));
  const started = process.hrtime.bigint();
  const r = spawnSync(process.execPath, [npmCli(), 'install', tarball, '--no-audit', '--no-fund', '--prefer-offline', '--foreground-scripts'], {
    cwd: app,
    env: npmEnv(path),
    encoding: 'utf8',
    timeout: 240_000,
  });
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const output = `${r.stdout}${r.stderr}`;
  expect(r.status, `npm install failed:\n${output}`).toBe(0);
  return { seconds, output, app };
}

interface AppReport {
  /** stats().io: how the shards write ('portable' on the node:fs path). */
  io: string;
  /** What the app checked, in order. */
  checks: string[];
  stderr: string;
}

/** Runs the API walk-through in the installed app, with nothing in its environment but PATH and HOME. */
function runApp(app: string, path: string): AppReport {
  const script = join(app, 'app.mjs');
  cpSync(resolve('test/fixtures/install-app.mjs'), script);
  const dir = tempDir('walrus-app-log-');
  const r = spawnSync(process.execPath, [script, dir], { cwd: app, env: { PATH: path, HOME: process.env.HOME ?? '/tmp' }, encoding: 'utf8', timeout: 120_000 });
  expect(r.status, `the app failed:\n${r.stdout}${r.stderr}`).toBe(0);
  const report = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as Omit<AppReport, 'stderr'>;
  return { ...report, stderr: r.stderr };
}

function packedFiles(tarball: string): string[] {
  return execFileSync('tar', ['-tzf', tarball], { encoding: 'utf8' }).trim().split('\n');
}

/** Made once for the file (tempDir's are removed after each test): the tarballs. */
const packDir = mkdtempSync(join(tmpdir(), 'walrus-pack-'));
let tarball = '';
let bareTarball = '';
const timings: string[] = [];

describe('install as a user', () => {
  beforeAll(() => {
    if (!existsSync(PREBUILD)) execFileSync(process.execPath, ['scripts/prebuild.mjs'], { stdio: 'ignore', timeout: 240_000 });
    const out = packDir;
    // --ignore-scripts: dist/ and the prebuild are made above and by `npm test` (prepack
    // would make them again).
    const packed = execFileSync(process.execPath, [npmCli(), 'pack', '--ignore-scripts', '--pack-destination', out], { cwd: ROOT, env: npmEnv(process.env.PATH ?? ''), encoding: 'utf8' });
    tarball = join(out, packed.trim().split('\n').at(-1)!);
    // The same package without its prebuild.
    const unpacked = join(packDir, 'unpacked');
    mkdirSync(unpacked);
    execFileSync('tar', ['-xzf', tarball, '-C', unpacked]);
    rmSync(join(unpacked, 'package', 'prebuilds'), { recursive: true, force: true });
    bareTarball = join(out, 'walrus-ts-no-prebuild.tgz');
    execFileSync('tar', ['-czf', bareTarball, '-C', unpacked, 'package']);
  }, 300_000);

  afterAll(() => rmSync(packDir, { recursive: true, force: true }));

  it('the tarball holds the prebuild and no test-only code, and stays small', () => {
    const files = packedFiles(tarball);
    const size = statSync(tarball).size;
    timings.push(`tarball: ${(size / 1024).toFixed(0)} kB packed, ${files.length} files`);
    expect(files).toContain('package/prebuilds/linux-x64/walrus-ts.glibc.node');
    expect(files.filter((f) => f.endsWith('.node'))).toEqual(['package/prebuilds/linux-x64/walrus-ts.glibc.node']);
    // native/seams.h ships: the shipped sources include it, and without WALRUS_TEST_SEAMS
    // every hook in it is empty. What implements the seams lives in native/test/ and, for the
    // portable path, test/portable-faults.cjs; the package's stand-in for the latter,
    // dist/shared/portable/no-faults.cjs, does nothing.
    expect(files.filter((f) => /native\/test\/|walrus_test|powerloss|portable-faults|faults\.cc/.test(f))).toEqual([]);
    expect(files.filter((f) => f.startsWith('package/test/') || f.startsWith('package/bench/'))).toEqual([]);
    expect(size).toBeLessThan(PACKED_BOUND);
  });

  it('a. installs without compiling: the prebuilt addon loads and the native path runs', () => {
    const r = install(tarball, process.env.PATH ?? '');
    timings.push(`a. normal install: ${r.seconds.toFixed(1)} s`);
    expect(existsSync(join(r.app, 'node_modules', 'walrus-ts', 'build'))).toBe(false);
    const app = runApp(r.app, process.env.PATH ?? '');
    expect(app.io).not.toBe('portable');
    expect(app.stderr).toBe('');
  }, 300_000);

  it('b. installs and runs natively with no compiler, make or Python on PATH', () => {
    const bin = bareBin();
    for (const tool of ['cc', 'c++', 'g++', 'make', 'python3']) expect(spawnSync(tool, ['--version'], { env: { PATH: bin } }).error).toBeDefined();
    const r = install(tarball, bin);
    timings.push(`b. no compiler: ${r.seconds.toFixed(1)} s`);
    const app = runApp(r.app, bin);
    expect(app.io).not.toBe('portable');
    expect(app.stderr).toBe('');
  }, 300_000);

  it('c. without the prebuild and with no compiler: the install succeeds, says why, and the portable path serves every API', () => {
    const bin = bareBin();
    const r = install(bareTarball, bin);
    timings.push(`c. no prebuild, no compiler: ${r.seconds.toFixed(1)} s`);
    expect(r.output).toMatch(/walrus-ts will use its portable node:fs I\/O path/);
    const release = join(r.app, 'node_modules', 'walrus-ts', 'build', 'Release');
    expect(existsSync(release) && readdirSync(release).some((f) => f.endsWith('.node'))).toBe(false);
    const app = runApp(r.app, bin);
    expect(app.io).toBe('portable');
    // One line on stderr says that the portable path is in use.
    expect(app.stderr.trim().split('\n')).toHaveLength(1);
    expect(app.stderr).toMatch(/portable/);
    console.log(`install as a user:\n  ${timings.join('\n  ')}`);
  }, 300_000);
});
