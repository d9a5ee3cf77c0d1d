/**
 * The shipped addon, as `#walrus-addon` resolves it outside the test suite (package.json
 * "imports"): `build/Release/walrus.node` when `npm install` compiled it on this machine,
 * else the prebuild for this platform that the package ships
 * (`prebuilds/<platform>-<arch>/walrus-ts.<libc>.node`, made by scripts/prebuild.mjs with
 * prebuildify and found by node-gyp-build from the platform, architecture and libc).
 * Throws when neither exists or loads; src/shared/native.ts then decides what to do.
 */
import { existsSync } from 'node:fs';
import { basename, join } from 'node:path';

/** node-gyp-build's resolver (the package has no type declarations). */
const nodeGypBuild = require('node-gyp-build') as { path(dir: string): string };

const root = join(__dirname, '..', '..');
const compiled = join(root, 'build', 'Release', 'walrus.node');

function shippedAddonPath(): string {
  if (existsSync(compiled)) return compiled;
  let found: string;
  try {
    found = nodeGypBuild.path(root);
  } catch (err) {
    // node-gyp-build: "No native build was found for platform=... arch=... libc=..."
    const why = String((err as Error).message).split('\n')[0];
    throw new Error(`no ${compiled} and no prebuild for this platform in ${join(root, 'prebuilds')} (${why})`);
  }
  // node-gyp-build takes any .node file in build/Release; in a checkout where only the test
  // build exists, that would be the test build, which must never stand in for the shipped one.
  if (basename(found) === 'walrus_test.node') throw new Error(`walrus-ts: ${compiled} is missing (only the test build is there): run npm rebuild`);
  return found;
}

export = require(shippedAddonPath()) as unknown;
