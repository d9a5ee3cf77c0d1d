/**
 * Reads of a topic's entries from its blocks: seek through the block list and the sparse
 * in-block index, read sequentially in chunks, verify every record's CRC before returning it.
 */
import { corruptError } from '../shared/errors.js';
import { RECORD_HEADER_BYTES, REC_LEN, REC_OFFSET_HI, REC_OFFSET_LO, recordFootprint } from '../shared/layout.js';
import { native } from '../shared/native.js';
import { type Block, type TopicLog, findBlock, seekInBlock } from './blocks.js';

const TWO_32 = 2 ** 32;
const MIN_CHUNK = 16 * 1024;

export interface ReadOutput {
  data: ArrayBuffer;
  /** Triples: offset, payload start in `data`, payload length. */
  entries: Float64Array;
}

/**
 * Entries of `t` from offset `from`: at most `maxEntries`, and no more payload bytes than
 * `maxBytes` except that the first entry is always included.
 */
export function readEntries(t: TopicLog, from: number, maxEntries: number, maxBytes: number): ReadOutput {
  const found: { offset: number; chunk: Uint8Array; start: number; length: number }[] = [];
  let bytes = 0;
  // Entries before the topic's start were consumed and deleted.
  let offset = Math.max(from, t.start);
  outer: while (found.length < maxEntries && offset < t.complete) {
    const b = findBlock(t, offset);
    if (!b) break;
    const hint = t.readHint;
    const seek = hint !== null && hint.block === b && hint.offset === offset ? hint : seekInBlock(b, offset);
    let rel = seek.rel;
    let at = seek.offset;
    // Read about what the call can return (from the block's average record size), not the
    // rest of the block: every byte read is also checksummed.
    const avg = b.used / Math.max(1, b.next - b.first);
    const need = Math.min(maxBytes + RECORD_HEADER_BYTES * 2, (maxEntries - found.length + (offset - at)) * avg * 1.1);
    let want = Math.min(b.used - rel, Math.max(MIN_CHUNK, Math.ceil(need / 8) * 8));
    while (rel < b.used) {
      // A fresh buffer per read: accepted payloads keep referring to it until the copy below.
      const chunk = readAt(b, rel, want);
      const valid = native.verifyFrames(chunk, 0, want);
      const dv = new DataView(chunk.buffer, chunk.byteOffset, want);
      let p = 0;
      while (p + RECORD_HEADER_BYTES <= want) {
        const len = dv.getUint32(p + REC_LEN, true);
        const fp = recordFootprint(len);
        if (p + fp > want) break;
        if (p >= valid) throw corruptError(b.segment.path, b.dataStart + rel + p, 'record checksum mismatch');
        const off = dv.getUint32(p + REC_OFFSET_LO, true) + dv.getUint32(p + REC_OFFSET_HI, true) * TWO_32;
        if (off !== at) throw corruptError(b.segment.path, b.dataStart + rel + p, `expected offset ${at}, found ${off}`);
        if (off >= offset) {
          if (found.length > 0 && bytes + len > maxBytes) {
            t.readHint = { offset: off, block: b, rel: rel + p };
            break outer;
          }
          found.push({ offset: off, chunk, start: p + RECORD_HEADER_BYTES, length: len });
          bytes += len;
          offset = off + 1;
          if (found.length >= maxEntries || offset >= t.complete) {
            t.readHint = { offset, block: b, rel: rel + p + fp };
            break outer;
          }
        }
        at = off + 1;
        p += fp;
      }
      if (p === 0) {
        // One record larger than the chunk: read exactly it next.
        if (rel + RECORD_HEADER_BYTES > b.used) throw corruptError(b.segment.path, b.dataStart + rel, 'truncated record header');
        const len = dv.getUint32(REC_LEN, true);
        want = recordFootprint(len);
        if (rel + want > b.used) throw corruptError(b.segment.path, b.dataStart + rel, 'record length past the end of its block');
        continue;
      }
      rel += p;
      want = Math.min(b.used - rel, Math.max(MIN_CHUNK, want));
    }
    if (offset < b.next) break;
  }
  // Not zero-filled: every byte is overwritten by the copies below.
  const out = Buffer.allocUnsafeSlow(bytes);
  const entries = new Float64Array(found.length * 3);
  let pos = 0;
  for (let k = 0; k < found.length; k++) {
    const f = found[k]!;
    out.set(f.chunk.subarray(f.start, f.start + f.length), pos);
    entries[k * 3] = f.offset;
    entries[k * 3 + 1] = pos;
    entries[k * 3 + 2] = f.length;
    pos += f.length;
  }
  return { data: out.buffer as ArrayBuffer, entries };
}

function readAt(b: Block, rel: number, length: number): Uint8Array {
  // Not zero-filled (a large share of the read path's time went to zeroing fresh chunks);
  // bytes past the end of the file are zeroed explicitly, as recovery treats them: only the
  // padding of the last record can be missing without failing its checksum.
  const buf = Buffer.allocUnsafeSlow(length);
  const got = native.pread(b.segment.fd, buf, b.dataStart + rel);
  if (got < length) buf.fill(0, got);
  return buf;
}
