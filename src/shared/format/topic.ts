/** Topic names: validation and the stable shard routing hash. */
import { WalrusError, invalidArgType } from '../errors.js';

export const MAX_TOPIC_BYTES = 255;

/**
 * Validates a topic name and returns its UTF-8 bytes. A topic is a non-empty string of at most
 * MAX_TOPIC_BYTES UTF-8 bytes without NUL or lone surrogates (they cannot round-trip).
 */
export function encodeTopic(topic: unknown, argName = 'topic'): Buffer {
  return encodeName(topic, argName, 'ERR_WALRUS_INVALID_TOPIC', 'topic');
}

/**
 * The checks of a name (a topic's, a named consumer's): a string (else a TypeError naming
 * `argName`), not empty, well-formed UTF-16 (no lone surrogate: it could not round-trip
 * through UTF-8), no NUL, at most MAX_TOPIC_BYTES UTF-8 bytes (else a WalrusError with
 * `code`). Returns its UTF-8 bytes.
 */
export function encodeName(name: unknown, argName: string, code: 'ERR_WALRUS_INVALID_TOPIC' | 'ERR_WALRUS_INVALID_CONSUMER', what: string): Buffer {
  if (typeof name !== 'string') throw invalidArgType(argName, 'of type string', name);
  if (name.length === 0) throw new WalrusError(code, `invalid ${what}: the name is empty`);
  if (!name.isWellFormed()) throw new WalrusError(code, `invalid ${what}: the name contains a lone surrogate`);
  if (name.includes('\0')) throw new WalrusError(code, `invalid ${what}: the name contains NUL`);
  const bytes = Buffer.from(name, 'utf8');
  if (bytes.length > MAX_TOPIC_BYTES) {
    throw new WalrusError(code, `invalid ${what}: the name is ${bytes.length} UTF-8 bytes long, the limit is ${MAX_TOPIC_BYTES}`);
  }
  return bytes;
}

/**
 * FNV-1a (32-bit) of the topic's UTF-8 bytes. Part of the on-disk contract: a topic created
 * with N shards lives in shard fnv1a(name) % N. Existing topics are found where recovery finds
 * them, so changing `shards` later only affects new topics.
 */
export function topicHash(bytes: Uint8Array): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < bytes.length; i++) {
    h ^= bytes[i]!;
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}
