// `npm install` of walrus-ts: makes sure the native addon is there, never failing the install.
// 1. A prebuilt addon for this platform ships in prebuilds/ (scripts/prebuild.mjs): if it
//    loads here, nothing is compiled.
// 2. Otherwise, on Linux (another architecture, another libc, a C library too old for the
//    prebuild, or a checkout of the repository, which has no prebuilds) the addon is
//    compiled with node-gyp.
// 3. If that fails too (no compiler, no Python), the install still succeeds: walrus-ts then
//    runs on its portable node:fs I/O path and says so once when it loads. On macOS and
//    Windows nothing is compiled (the addon is Linux-only): the portable path it is.
'use strict';
const { spawnSync } = require('node:child_process');
const { existsSync } = require('node:fs');
const { basename, join } = require('node:path');

const root = join(__dirname, '..');

/** The prebuild node-gyp-build picks for this platform, if it exists and loads. */
function prebuildLoads() {
  if (existsSync(join(root, 'build', 'Release', 'walrus.node'))) return false;
  try {
    const found = require('node-gyp-build').path(root);
    if (basename(found) === 'walrus_test.node') return false;
    require(found);
    return true;
  } catch (err) {
    if (existsSync(join(root, 'prebuilds'))) console.warn(`walrus-ts: the prebuilt addon does not load here (${String(err.message).split('\n')[0]}); compiling it`);
    return false;
  }
}

function compile() {
  // npm tells the scripts it runs where its own node-gyp is; else node-gyp from PATH.
  const gyp = process.env.npm_config_node_gyp;
  const r = gyp
    ? spawnSync(process.execPath, [gyp, 'rebuild'], { cwd: root, stdio: 'inherit' })
    : spawnSync('node-gyp', ['rebuild'], { cwd: root, stdio: 'inherit', shell: process.platform === 'win32' });
  return r.status === 0;
}

if (process.platform !== 'linux') {
  // The addon's sources are Linux's (io_uring, fallocate, memfd): nothing to compile here.
  console.warn(`walrus-ts: the native addon is Linux-only; on ${process.platform} walrus-ts uses its portable node:fs I/O path.`);
} else if (!prebuildLoads() && !compile()) {
  console.warn(
    'walrus-ts: no prebuilt addon fits this platform and compiling one failed (see above).\n' +
      'walrus-ts will use its portable node:fs I/O path (same format and guarantees; no io_uring, and no mmap or memory backend).\n' +
      'For the native path, install a C++ compiler, make and Python 3, then run `npm rebuild walrus-ts`.',
  );
}
