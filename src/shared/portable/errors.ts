/**
 * System-call errors of the portable I/O path, shaped like the addon's (native.ts): an
 * `Error` whose `code` is the errno name, `errno` the positive errno number of this platform
 * and `syscall` the name the addon would give the call (`'pwritev'` for a write, `'pread'`
 * for a read, ...), with the message `"<code>: <description>, <syscall>"`.
 *
 * node:fs reports the same failures with a negative `errno` (libuv's `-code`; on Windows a
 * libuv number unrelated to the C runtime's) and its own syscall names (`'write'`, `'read'`):
 * {@link fsError} rewrites them, so callers' `ioError()` (errors.ts) sees one shape whichever
 * path is in use.
 */
import { constants as osConstants } from 'node:os';

const ERRNO = osConstants.errno as Readonly<Record<string, number>>;

/** An addon-shaped error for `code` in `syscall`, with Node's wording of `description`. */
export function sysError(code: string, syscall: string, description: string): Error {
  const err = new Error(`${code}: ${description}, ${syscall}`) as NodeJS.ErrnoException;
  err.code = code;
  const errno = ERRNO[code];
  if (errno !== undefined) err.errno = errno;
  err.syscall = syscall;
  return err;
}

/**
 * Rewrites an error thrown by node:fs during `syscall` as an addon-shaped one (see the top
 * of this file); the original is kept as `cause`. Anything that is not a system-call error
 * (a TypeError about an argument) is returned as it is.
 */
export function fsError(err: unknown, syscall: string): Error {
  const e = err as NodeJS.ErrnoException;
  if (typeof e !== 'object' || e === null || typeof e.code !== 'string' || typeof e.errno !== 'number') return err as Error;
  const code = e.code;
  // Node's message: "<code>: <description>, <its syscall>[ '<path>'[ -> '<dest>']]".
  const text = typeof e.message === 'string' ? e.message : '';
  const body = text.startsWith(`${code}: `) ? text.slice(code.length + 2) : text;
  const comma = typeof e.syscall === 'string' ? body.lastIndexOf(`, ${e.syscall}`) : -1;
  const description = comma > 0 ? body.slice(0, comma) : body;
  const out = sysError(code, syscall, description) as NodeJS.ErrnoException;
  if (out.errno === undefined) out.errno = Math.abs(e.errno);
  out.cause = err;
  return out;
}
