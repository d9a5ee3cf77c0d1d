/** A temporary project whose node_modules/walrus-ts is this package, so code can name it as users do. */
import { mkdirSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tempDir } from './helpers.js';

/** The package root (where package.json and its exports map are). */
export const PACKAGE_ROOT = fileURLToPath(new URL('..', import.meta.url));

/** A fresh directory (removed after the test) in which `walrus-ts` resolves to this package. */
export function projectDir(): string {
  const dir = tempDir('walrus-project-');
  mkdirSync(join(dir, 'node_modules'));
  symlinkSync(PACKAGE_ROOT, join(dir, 'node_modules', 'walrus-ts'), 'dir');
  return dir;
}
