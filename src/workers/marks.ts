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
  META_TOPIC_ID,
  RECORD_ALIGN,
  RECORD_HEADER_BYTES,
  REC_FLAGS,
  REC_KIND,
  REC_LEN,
  REC_REMAINING,
  REC_RESERVED,
  REC_SALT,
  REC_TOPIC,
  RecordKind,
  recordFootprint,
} from '../shared/layout.js';
import { native } from '../shared/native.js';
import { decodeMeta } from './meta.js';

/**
 * Adds to `marks` (topic id -> highest durable end) every sync or close mark among the meta
 * frames in `buf[from, end)`. `salt`: the block salt frames must carry, or null when the
 * block is unknown (a damaged header). Returns how many marks were found.
 */
export function harvestMarks(buf: Uint8Array, from: number, end: number, salt: number | null, marks: Map<number, number>): number {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let found = 0;
  let pos = from + ((RECORD_ALIGN - (from % RECORD_ALIGN)) % RECORD_ALIGN);
  for (; pos + RECORD_HEADER_BYTES <= end; pos += RECORD_ALIGN) {
    if (buf[pos + REC_KIND] !== RecordKind.Meta || buf[pos + REC_FLAGS] !== 0 || (buf[pos + REC_RESERVED]! | buf[pos + REC_RESERVED + 1]!) !== 0) continue;
    if (dv.getUint32(pos + REC_TOPIC, true) !== META_TOPIC_ID || dv.getUint32(pos + REC_REMAINING, true) !== 1) continue;
    if (salt !== null && dv.getUint32(pos + REC_SALT, true) !== salt) continue;
    const len = dv.getUint32(pos + REC_LEN, true);
    if (len > end - pos - RECORD_HEADER_BYTES) continue;
    const fp = Math.min(recordFootprint(len), end - pos);
    if (native.verifyFrames(buf.subarray(pos, pos + fp), 0, fp) === 0) continue;
    const m = decodeMeta(buf.subarray(pos + RECORD_HEADER_BYTES, pos + RECORD_HEADER_BYTES + len));
    if (typeof m === 'string' || (m.k !== 'sync' && m.k !== 'close')) continue;
    for (const [id, next] of m.t) marks.set(id, Math.max(marks.get(id) ?? 0, next));
    found++;
  }
  return found;
}
