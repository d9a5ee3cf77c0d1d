// Makes the prebuilt addon the package ships: prebuilds/<platform>-<arch>/walrus-ts.<libc>.node,
// an N-API build (one file serves every Node version walrus-ts supports), stripped, made by
// prebuildify and found at run time by node-gyp-build (src/shared/addon.cts).
//
// prebuildify runs node-gyp in the directory it is given and empties its build/, so it runs
// on a copy of the sources in a temporary directory: this checkout's build/ (the compiled
// addon, and the test build the test suite loads) is never touched, even while tests run.
//
// Usage: node scripts/prebuild.mjs        (npm pack runs it through "prepack")
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * node-gyp as npm runs it (npm_config_node_gyp, set for scripts npm runs), else the one npm
 * bundles next to the running Node, else the one on PATH; and Node's headers from the running Node's own installation when npm has no nodedir
 * (the addon uses only N-API, so any supported Node's headers build it; without a nodedir
 * node-gyp would download headers for the Node version prebuildify targets).
 */
function buildEnv() {
  const env = { ...process.env };
  const prefix = resolve(process.execPath, '..', '..');
  const bundled = join(prefix, 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
  env.PREBUILD_NODE_GYP ??= env.npm_config_node_gyp ?? (existsSync(bundled) ? bundled : 'node-gyp');
  if (!env.npm_config_nodedir && existsSync(join(prefix, 'include', 'node', 'node_api.h'))) env.npm_config_nodedir = prefix;
  return env;
}

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const work = mkdtempSync(join(tmpdir(), 'walrus-prebuild-'));
try {
  cpSync(join(root, 'binding.gyp'), join(work, 'binding.gyp'));
  cpSync(join(root, 'native'), join(work, 'native'), { recursive: true, filter: (src) => !src.startsWith(join(root, 'native', 'test')) });
  // prebuildify names the file after the package; binding.gyp finds node-addon-api through node_modules.
  writeFileSync(join(work, 'package.json'), JSON.stringify({ name: 'walrus-ts', private: true }));
  symlinkSync(join(root, 'node_modules'), join(work, 'node_modules'), 'dir');
  const prebuildify = join(root, 'node_modules', 'prebuildify', 'bin.js');
  const r = spawnSync(process.execPath, [prebuildify, '--napi', '--strip', '--tag-libc'], { cwd: work, env: buildEnv(), stdio: ['ignore', 'inherit', 'inherit'] });
  if (r.status !== 0) throw new Error(`prebuildify failed (exit ${r.status ?? r.signal})`);
  for (const platform of readdirSync(join(work, 'prebuilds'))) {
    const out = join(root, 'prebuilds', platform);
    mkdirSync(out, { recursive: true });
    for (const f of readdirSync(join(work, 'prebuilds', platform))) {
      cpSync(join(work, 'prebuilds', platform, f), join(out, f));
      console.log(`prebuilds/${platform}/${f}`);
    }
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}
