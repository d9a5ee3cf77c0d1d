/**
 * The argument checks of an append, shared by the Walrus class and producer threads'
 * Producer (threads/producer.ts): the same arguments give the same errors in every thread.
 */
import { WalrusError, invalidArgType } from '../shared/errors.js';
import { RECORD_HEADER_BYTES, recordFootprint } from '../shared/format/layout.js';
import { MAX_BATCH_BYTES, MAX_BATCH_ENTRIES } from './limits.js';

/** The UTF-8 or byte length of `data` (argument `name`), checked against `maxRecordBytes`. */
export function payloadLength(data: unknown, name: string, maxRecordBytes: number): number {
  let len: number;
  if (typeof data === 'string') len = Buffer.byteLength(data, 'utf8');
  else if (data instanceof Uint8Array) len = data.byteLength;
  else throw invalidArgType(name, 'of type string or an instance of Buffer or Uint8Array', data);
  if (len > maxRecordBytes) {
    throw new WalrusError('ERR_WALRUS_RECORD_TOO_LARGE', `${name} is ${len} bytes, larger than maxRecordBytes (${maxRecordBytes}); nothing was written`);
  }
  return len;
}

/**
 * Checks a batchAppend's `entries`: an array of at most MAX_BATCH_ENTRIES payloads of at
 * most MAX_BATCH_BYTES together. Returns each payload's length and the ring bytes the batch
 * takes (its records and an External marker's header, whichever way it travels).
 */
export function batchLengths(entries: unknown, maxRecordBytes: number): { lens: number[]; ringBytes: number } {
  if (!Array.isArray(entries)) throw invalidArgType('entries', 'an instance of Array', entries);
  if (entries.length > MAX_BATCH_ENTRIES) {
    throw new WalrusError('ERR_WALRUS_BATCH_LIMIT', `a batch holds at most ${MAX_BATCH_ENTRIES} entries, got ${entries.length}; nothing was written`);
  }
  const lens = new Array<number>(entries.length);
  let total = 0;
  let ringBytes = 0;
  for (let i = 0; i < entries.length; i++) {
    const len = payloadLength(entries[i], `entries[${i}]`, maxRecordBytes);
    lens[i] = len;
    total += len;
    ringBytes += recordFootprint(len);
  }
  if (total > MAX_BATCH_BYTES) {
    throw new WalrusError('ERR_WALRUS_BATCH_LIMIT', `a batch holds at most ${MAX_BATCH_BYTES} bytes, got ${total}; nothing was written`);
  }
  return { lens, ringBytes: ringBytes + RECORD_HEADER_BYTES };
}
