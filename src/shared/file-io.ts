/**
 * File-system details every thread that touches the log's directory shares: the open flags
 * of segment files, their mode, and the directory fsync that makes a created or removed file
 * survive power loss.
 */
import { ioError } from './errors.js';
import { native } from './native.js';

const { O_RDWR, O_CREAT, O_EXCL, O_CLOEXEC, O_NOFOLLOW, O_RDONLY, O_DIRECTORY } = native.constants;
export const OPEN_EXISTING = O_RDWR | O_CLOEXEC | O_NOFOLLOW;
/** For tools that must never change a log (the CLI's verify, inspect and dump). */
export const OPEN_READ_ONLY = O_RDONLY | O_CLOEXEC | O_NOFOLLOW;
export const CREATE_NEW = O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW;
export const FILE_MODE = 0o600;

/**
 * fsync of a directory, so a file created or removed in it survives power loss. Not on
 * Windows, where a directory cannot be opened as a file (node:fs: EISDIR) and NTFS journals
 * its directory changes itself (docs/DURABILITY.md, "The portable I/O path").
 */
export function fsyncDir(dir: string): void {
  if (process.platform === 'win32') return;
  let fd = -1;
  try {
    fd = native.open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
    native.fsync(fd);
  } catch (err) {
    throw ioError(err, 'fsync of the data directory failed', dir);
  } finally {
    if (fd >= 0) native.close(fd);
  }
}

