/**
 * The log's identity, the first part of every forwarded message's deduplication id
 * (docs/DISTRIBUTION.md, "Message ids"). Nothing in a log's own files is stable for its
 * whole life (segment salts change as segment files are recycled), so the first forward
 * creates `walrus.id` beside `walrus.lock`: 32 random hex digits and a newline, written to
 * a temporary file, fdatasync'd, renamed into place, and the directory fsync'd, so a crash
 * leaves either no id file or a complete one. The caller holds the directory lock (an open
 * Walrus), so no other process writes it concurrently. A memory log has no directory: it
 * gets a fresh random id per instance (it is a new, empty log each time anyway).
 */
import { randomBytes } from 'node:crypto';
import { closeSync, fdatasyncSync, openSync, readFileSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { WalrusError, ioError } from '../shared/errors.js';
import { fsyncDir } from '../shared/file-io.js';

export const ID_FILE = 'walrus.id';
const ID_PATTERN = /^[0-9a-f]{32}$/;

/** The id stored in `dir`, created (durably) when there is none. */
export function logIdentity(dir: string | null): string {
  if (dir === null) return randomBytes(16).toString('hex');
  const path = join(dir, ID_FILE);
  const existing = readId(path);
  if (existing !== null) return existing;
  const id = randomBytes(16).toString('hex');
  const tmp = `${path}.tmp`;
  try {
    const fd = openSync(tmp, 'w', 0o600);
    try {
      writeSync(fd, `${id}\n`);
      fdatasyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } catch (err) {
    try {
      unlinkSync(tmp);
    } catch {
      // Never created, or already renamed: nothing to clean.
    }
    throw ioError(err, 'creating the log identity file failed', path);
  }
  fsyncDir(dir);
  return id;
}

function readId(path: string): string | null {
  let text: string;
  try {
    text = readFileSync(path, 'latin1');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw ioError(err, 'reading the log identity file failed', path);
  }
  const id = text.trim();
  if (!ID_PATTERN.test(id)) {
    throw new WalrusError('ERR_WALRUS_FORWARD', `${path} does not hold a log identity (32 hex digits): restore it, or delete it only if nothing was ever forwarded from this log`, { file: path });
  }
  return id;
}
