// Installs the benchmark-only packages (bench/package.json: the peers, tinybench, the chart
// renderer) when bench/node_modules is missing or was installed from another
// package.json / lock file. The library's own `npm install` never installs them, so
// `npm test` does not pay for them.
//
// better-sqlite3 12.x has no prebuilt binary that this machine can download: its install
// tries one first (prebuild-install) and only then compiles SQLite (about 2 minutes on 2
// cores). npm_config_build_from_source=better-sqlite3 makes prebuild-install skip the
// download outright, so an unreachable download host can never stall the install; lmdb and
// classic-level ship their binaries inside registry packages and are unaffected.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const benchDir = path.dirname(fileURLToPath(import.meta.url));
const modules = path.join(benchDir, 'node_modules');
const stampFile = path.join(modules, '.walrus-bench-installed');

function fingerprint() {
  const h = createHash('sha256');
  for (const f of ['package.json', 'package-lock.json']) {
    const p = path.join(benchDir, f);
    h.update(f).update(fs.existsSync(p) ? fs.readFileSync(p) : '');
  }
  h.update(process.version.split('.')[0]); // native addons are built per Node major
  return h.digest('hex');
}

export function peersInstalled() {
  try {
    return fs.readFileSync(stampFile, 'utf8').trim() === fingerprint();
  } catch {
    return false;
  }
}

export function ensurePeers() {
  if (peersInstalled()) return;
  // `npm ci`: exactly what the lock file says (it holds every platform's optional binaries
  // of msgpackr-extract; test/lockfiles.test.ts keeps it in sync with package.json).
  const cmd = 'ci';
  process.stderr.write(`bench: installing the benchmark packages (npm ${cmd} in bench/; better-sqlite3 compiles SQLite, about 2 minutes) ...\n`);
  const t0 = Date.now();
  const res = spawnSync('npm', [cmd, '--no-audit', '--no-fund', '--loglevel=error'], {
    cwd: benchDir,
    stdio: ['ignore', 'inherit', 'inherit'],
    env: { ...process.env, npm_config_build_from_source: 'better-sqlite3' },
  });
  if (res.status !== 0) throw new Error(`npm ${cmd} in ${benchDir} failed (exit ${res.status ?? res.signal})`);
  fs.writeFileSync(stampFile, fingerprint() + '\n');
  process.stderr.write(`bench: benchmark packages installed in ${((Date.now() - t0) / 1000).toFixed(0)} s\n`);
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    ensurePeers();
  } catch (e) {
    console.error(e instanceof Error ? e.message : e);
    process.exitCode = 1;
  }
}
