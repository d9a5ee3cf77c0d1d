/**
 * Namespace directories (their lock is lock.ts).
 *
 * A key becomes one directory name, injectively: ASCII letters, digits, '_' and '-' stay as
 * they are, every other UTF-8 byte becomes '%' and two upper-case hex digits ('%' itself
 * included). So a sanitized key never contains '.', '/' or NUL, cannot be '.' or '..', and
 * never equals a file name of the default namespace (those all contain a '.'). A name that
 * would exceed 200 bytes keeps its first 150 and ends with '~' and the SHA-256 of the key;
 * '~' never appears in a name that was not shortened.
 */
import { createHash } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { ioError } from '../shared/errors.js';
import { fsyncDir } from '../shared/file-io.js';

const SAFE = /^[A-Za-z0-9_-]$/;
const MAX_NAME = 200;

export function sanitizeKey(key: string): string {
  let out = '';
  for (const byte of Buffer.from(key, 'utf8')) {
    const ch = String.fromCharCode(byte);
    out += byte < 0x80 && SAFE.test(ch) ? ch : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  if (out.length <= MAX_NAME) return out;
  return `${out.slice(0, 150)}~${createHash('sha256').update(key, 'utf8').digest('hex')}`;
}

/**
 * Creates `<dir>` and the namespace directory (mode 0700) and returns the latter. Each
 * directory it creates is made durable in its parent (fsync of the parent): otherwise a power
 * loss could take a new namespace directory away with every segment in it, although those
 * were fsynced in it.
 */
export function namespaceDir(dir: string, key: string): string {
  const ns = key === '' ? dir : join(dir, sanitizeKey(key));
  try {
    const first = mkdirSync(ns, { recursive: true, mode: 0o700 });
    if (first !== undefined) {
      for (let d = ns; ; d = dirname(d)) {
        fsyncDir(dirname(d));
        if (d === first || dirname(d) === d) break;
      }
    }
  } catch (err) {
    throw ioError(err, 'creating the data directory failed', ns);
  }
  return ns;
}
