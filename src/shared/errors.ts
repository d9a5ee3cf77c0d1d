/**
 * Errors. Every failure the library reports on purpose is a `WalrusError` with a stable `code`
 * (documented in docs/ERRORS.md); misuse gets Node's usual TypeError / RangeError with the
 * argument's name in the message.
 */

/** The codes of {@link WalrusError}; docs/ERRORS.md says what each means. */
export type WalrusErrorCode =
  | 'ERR_WALRUS_CLOSED'
  | 'ERR_WALRUS_LOCKED'
  | 'ERR_WALRUS_RECORD_TOO_LARGE'
  | 'ERR_WALRUS_BATCH_LIMIT'
  | 'ERR_WALRUS_INVALID_TOPIC'
  | 'ERR_WALRUS_INVALID_CONSUMER'
  | 'ERR_WALRUS_CONSUMER_LIMIT'
  | 'ERR_WALRUS_CORRUPT'
  | 'ERR_WALRUS_IO'
  | 'ERR_WALRUS_BACKPRESSURE'
  | 'ERR_WALRUS_DECODE'
  | 'ERR_WALRUS_ADDON_REQUIRED'
  | 'ERR_WALRUS_FORWARD'
  | 'ERR_WALRUS_TOO_MANY_TOPICS'
  | 'ERR_WALRUS_TOO_MANY_PRODUCERS';

/** Extra fields of a {@link WalrusError}, by code (the constructor's third argument). */
export interface WalrusErrorDetails {
  /** ERR_WALRUS_IO: the errno name of the failing call, e.g. 'EIO'. */
  errnoCode?: string;
  /** ERR_WALRUS_IO: the positive errno number. */
  errno?: number;
  /** ERR_WALRUS_IO: the system call that failed. */
  syscall?: string;
  /** ERR_WALRUS_CORRUPT / ERR_WALRUS_IO: the file concerned. */
  file?: string;
  /** ERR_WALRUS_DECODE: the topic of the entry that could not be decoded. */
  topic?: string;
  /**
   * ERR_WALRUS_CORRUPT: byte offset in `file` of the first bad byte. ERR_WALRUS_DECODE: the
   * offset of the entry in its topic.
   */
  offset?: number;
  /** The underlying error, as `Error.cause`. */
  cause?: unknown;
}

/**
 * Every failure walrus-ts reports on purpose: an `Error` with a stable string `code`
 * (docs/ERRORS.md describes each). Misuse of the API throws Node's usual TypeError /
 * RangeError instead.
 */
export class WalrusError extends Error {
  /** The stable code: what happened, independent of the message's wording. */
  readonly code: WalrusErrorCode;
  /** ERR_WALRUS_IO: the positive errno number of the failing call. */
  declare readonly errno?: number;
  /** ERR_WALRUS_IO: the system call that failed (`'pwritev'`, `'fdatasync'`, ...). */
  declare readonly syscall?: string;
  /** ERR_WALRUS_IO: the errno's name (`'EIO'`, `'ENOSPC'`, ...). */
  declare readonly errnoCode?: string;
  /** ERR_WALRUS_CORRUPT, ERR_WALRUS_IO, ERR_WALRUS_LOCKED: the file concerned. */
  declare readonly file?: string;
  /**
   * ERR_WALRUS_CORRUPT: byte offset of the damage in `file`. ERR_WALRUS_DECODE: the entry's
   * offset in its topic.
   */
  declare readonly offset?: number;
  /** ERR_WALRUS_DECODE: the topic of the entry. */
  declare readonly topic?: string;

  // The optional fields are `declare`d: no own property unless set, so a printed error shows
  // only the fields it has (class fields would define each one as undefined).
  constructor(code: WalrusErrorCode, message: string, details: WalrusErrorDetails = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = 'WalrusError';
    this.code = code;
    if (details.errno !== undefined) this.errno = details.errno;
    if (details.syscall !== undefined) this.syscall = details.syscall;
    if (details.errnoCode !== undefined) this.errnoCode = details.errnoCode;
    if (details.file !== undefined) this.file = details.file;
    if (details.offset !== undefined) this.offset = details.offset;
    if (details.topic !== undefined) this.topic = details.topic;
  }
}

/** The shape of a system-call error thrown by the addon or by node:fs. */
interface SysError {
  code?: unknown;
  errno?: unknown;
  syscall?: unknown;
  path?: unknown;
  message?: unknown;
}

/** Wraps a failed system call (from the addon or node:fs) as ERR_WALRUS_IO. */
export function ioError(err: unknown, context: string, file?: string): WalrusError {
  if (err instanceof WalrusError) return err;
  const e = (typeof err === 'object' && err !== null ? err : {}) as SysError;
  const errnoCode = typeof e.code === 'string' ? e.code : 'EIO';
  // node:fs reports negative errnos, the addon positive ones; the contract is the positive number.
  const errno = typeof e.errno === 'number' ? Math.abs(e.errno) : undefined;
  const syscall = typeof e.syscall === 'string' ? e.syscall : undefined;
  const where = file ?? (typeof e.path === 'string' ? e.path : undefined);
  const detail = typeof e.message === 'string' ? e.message : String(err);
  return new WalrusError('ERR_WALRUS_IO', `${context}: ${detail}${where ? ` (${where})` : ''}`, {
    errnoCode,
    ...(errno === undefined ? {} : { errno }),
    ...(syscall === undefined ? {} : { syscall }),
    ...(where === undefined ? {} : { file: where }),
    cause: err,
  });
}

export function corruptError(file: string, offset: number, what: string): WalrusError {
  return new WalrusError('ERR_WALRUS_CORRUPT', `corrupt log: ${what} in ${file} at byte offset ${offset}`, {
    file,
    offset,
  });
}

export function closedError(): WalrusError {
  return new WalrusError('ERR_WALRUS_CLOSED', 'the log is closed');
}

/** Errors crossing a thread boundary travel as plain objects and are rebuilt with this. */
export interface SerializedError {
  code: string;
  message: string;
  errno?: number;
  syscall?: string;
  errnoCode?: string;
  file?: string;
  offset?: number;
}

export function serializeError(err: unknown): SerializedError {
  if (err instanceof WalrusError) {
    return {
      code: err.code,
      message: err.message,
      ...(err.errno === undefined ? {} : { errno: err.errno }),
      ...(err.syscall === undefined ? {} : { syscall: err.syscall }),
      ...(err.errnoCode === undefined ? {} : { errnoCode: err.errnoCode }),
      ...(err.file === undefined ? {} : { file: err.file }),
      ...(err.offset === undefined ? {} : { offset: err.offset }),
    };
  }
  const e = err as { message?: unknown; stack?: unknown };
  return { code: 'ERR_INTERNAL', message: typeof e?.message === 'string' ? e.message : String(err) };
}

const WALRUS_CODES: ReadonlySet<string> = new Set<WalrusErrorCode>([
  'ERR_WALRUS_CLOSED',
  'ERR_WALRUS_LOCKED',
  'ERR_WALRUS_RECORD_TOO_LARGE',
  'ERR_WALRUS_BATCH_LIMIT',
  'ERR_WALRUS_INVALID_TOPIC',
  'ERR_WALRUS_INVALID_CONSUMER',
  'ERR_WALRUS_CONSUMER_LIMIT',
  'ERR_WALRUS_CORRUPT',
  'ERR_WALRUS_IO',
  'ERR_WALRUS_BACKPRESSURE',
  'ERR_WALRUS_DECODE',
  'ERR_WALRUS_ADDON_REQUIRED',
  'ERR_WALRUS_FORWARD',
  'ERR_WALRUS_TOO_MANY_TOPICS',
  'ERR_WALRUS_TOO_MANY_PRODUCERS',
]);

export function deserializeError(s: SerializedError): Error {
  if (!WALRUS_CODES.has(s.code)) return new Error(`walrus-ts internal error in a shard worker: ${s.message}`);
  const details: WalrusErrorDetails = {};
  if (s.errno !== undefined) details.errno = s.errno;
  if (s.syscall !== undefined) details.syscall = s.syscall;
  if (s.errnoCode !== undefined) details.errnoCode = s.errnoCode;
  if (s.file !== undefined) details.file = s.file;
  if (s.offset !== undefined) details.offset = s.offset;
  return new WalrusError(s.code as WalrusErrorCode, s.message, details);
}

/** TypeError with Node's ERR_INVALID_ARG_TYPE code. */
export function invalidArgType(name: string, expected: string, actual: unknown): TypeError {
  const err = new TypeError(`The "${name}" argument must be ${expected}. Received ${describe(actual)}`);
  (err as { code?: string }).code = 'ERR_INVALID_ARG_TYPE';
  return err;
}

/** TypeError with Node's ERR_INVALID_ARG_VALUE code. */
export function invalidArgValue(name: string, actual: unknown, reason: string): TypeError {
  const err = new TypeError(`The argument '${name}' ${reason}. Received ${describe(actual)}`);
  (err as { code?: string }).code = 'ERR_INVALID_ARG_VALUE';
  return err;
}

/** RangeError with Node's ERR_OUT_OF_RANGE code. */
export function outOfRange(name: string, range: string, actual: unknown): RangeError {
  const err = new RangeError(`The value of "${name}" is out of range. It must be ${range}. Received ${describe(actual)}`);
  (err as { code?: string }).code = 'ERR_OUT_OF_RANGE';
  return err;
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (v === undefined) return 'undefined';
  if (typeof v === 'string') return `type string (${JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}...` : v)})`;
  if (typeof v === 'number') return `type number (${v})`;
  if (typeof v === 'function') return 'function';
  if (typeof v === 'object') return `an instance of ${(v as object).constructor?.name ?? 'Object'}`;
  return `type ${typeof v} (${String(v)})`;
}
