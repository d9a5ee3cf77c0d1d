/**
 * Sync marks found outside the meta chain, for recovery's durability check.
 *
 * A sync or close mark is written only after the fsync it describes completed, so what it
 * says (topic t was durable up to offset n) is true wherever the mark is found: in the meta
 * chain, after the point where the meta chain broke, in a meta block the chain dropped, or
 * in a slot whose block header is damaged. Recovery uses the marks of the chain first; when
 * the meta topic itself is damaged, these others keep the damage from passing for a torn
 * tail (which would drop, silently, every topic whose marks sat behind the damage).
 *
 * Frames are found by scanning every RECORD_ALIGN-aligned position. Cheap field checks come
 * before the checksum, and a length must fit in what remains: nothing is allocated or
 * checksummed from an implausible length.
 */
import {
  frameKind,
  frameLength,
  framePayload,
  frameRemaining,
  frameReservedClear,
  frameSalt,
  frameSealed,
  frameTopic,
  frameWords,
} from '../../shared/format/frame.js';
import { META_TOPIC_ID, RECORD_ALIGN, RECORD_HEADER_BYTES, RecordKind } from '../../shared/format/layout.js';
import { decodeMeta } from '../../shared/format/meta.js';

/**
 * Adds to `marks` (topic id -> highest durable end) every sync or close mark among the meta
 * frames in `buf[from, end)`. `salt`: the block salt frames must carry, or null when the
 * block is unknown (a damaged header). Returns how many marks were found.
 */
export function harvestMarks(buf: Uint8Array, from: number, end: number, salt: number | null, marks: Map<number, number>): number {
  // The codec reads whole u32 elements: a view that starts off a 4-byte boundary is read
  // from a copy (recovery's buffers never do).
  const bytes = buf.byteOffset % 4 === 0 ? buf : buf.slice();
  const words = frameWords(bytes);
  let found = 0;
  let pos = from + ((RECORD_ALIGN - (from % RECORD_ALIGN)) % RECORD_ALIGN);
  for (; pos + RECORD_HEADER_BYTES <= end; pos += RECORD_ALIGN) {
    if (frameKind(words, pos) !== RecordKind.Meta || !frameReservedClear(words, pos)) continue;
    if (frameTopic(words, pos) !== META_TOPIC_ID || frameRemaining(words, pos) !== 1) continue;
    if (salt !== null && frameSalt(words, pos) !== salt) continue;
    const len = frameLength(words, pos);
    if (len > end - pos - RECORD_HEADER_BYTES || !frameSealed(bytes, words, pos, end)) continue;
    const m = decodeMeta(framePayload(bytes, pos, len));
    if (typeof m === 'string' || (m.k !== 'sync' && m.k !== 'close')) continue;
    for (const [id, next] of m.t) marks.set(id, Math.max(marks.get(id) ?? 0, next));
    found++;
  }
  return found;
}
