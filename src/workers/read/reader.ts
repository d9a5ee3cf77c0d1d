/**
 * Reads of a topic's entries from its blocks: seek through the block list and the sparse
 * in-block index, read sequentially in chunks, verify every record's CRC before returning it.
 */
import { corruptError } from '../../shared/errors.js';
import { frameLength, frameOffset, frameTopic, frameWords, payloadStart, recordFootprint, verifyFrames } from '../../shared/format/frame.js';
import { RECORD_HEADER_BYTES } from '../../shared/format/layout.js';
import { readSegment } from '../store/segments.js';
import { READ_ENTRY_FIELDS } from '../../shared/messages.js';
import { type Block, type TopicLog } from '../store/model.js';
import { findBlock, seekInBlock } from '../store/blocks.js';
import { recycleChunks, takeChunk } from './chunk-pool.js';

const MIN_CHUNK = 16 * 1024;
/**
 * Margin on the estimate of how many bytes a read returns (entries wanted times the block's
 * average record size): records a little larger than the average still fit the first read,
 * instead of costing a second one for the last few.
 */
const READ_ESTIMATE_MARGIN = 1.1;

export interface ReadOutput {
  /** The chunks read: transferred to the main thread as they are. */
  data: ArrayBuffer[];
  /** READ_ENTRY_FIELDS per entry: offset, index in `data`, payload start, payload length. */
  entries: Float64Array;
}

export const EMPTY_READ: () => ReadOutput = () => ({ data: [], entries: new Float64Array(0) });

/**
 * Entries of `t` from offset `from`: at most `maxEntries`, and no more payload bytes than
 * `maxBytes` except that the first entry is always included.
 */
export function readEntries(t: TopicLog, from: number, maxEntries: number, maxBytes: number): ReadOutput {
  const found: Found[] = [];
  const chunks: ArrayBuffer[] = [];
  let bytes = 0;
  // Entries before the topic's start were consumed and deleted.
  let offset = Math.max(from, t.start);
  if (t.small.length > 0 && offset >= t.small[0]!.offset && offset - t.small[0]!.offset < t.small.length) {
    const r = readSmall(t, offset, maxEntries, maxBytes, found, chunks);
    offset = r.offset;
    bytes = r.bytes;
    if (r.full) return finish(found, chunks, bytes);
  }
  outer: while (found.length < maxEntries && offset < t.complete) {
    const b = findBlock(t, offset);
    if (!b) break;
    const hint = t.readHint;
    const seek = hint !== null && hint.block === b && hint.offset === offset ? hint : seekInBlock(b, offset);
    let rel = seek.rel;
    let at = seek.offset;
    let want = firstWant(b, rel, maxBytes, maxEntries - found.length + (offset - at));
    while (rel < b.used) {
      // A buffer per read (new or pooled): the payloads returned are views of it, transferred whole.
      const chunk = readAt(b, rel, want);
      const words = frameWords(chunk);
      const index = chunks.length;
      const firstFound = found.length;
      let p = 0;
      // Where this chunk's first returned record starts: records before it (a seek starts
      // at an indexed record at or before the offset) are walked for their lengths, not
      // checksummed, so a read checks exactly the bytes it returns.
      let returned = -1;
      let stop = false;
      while (p + RECORD_HEADER_BYTES <= want) {
        const len = frameLength(words, p);
        const fp = recordFootprint(len);
        if (p + fp > want) break;
        const off = frameOffset(words, p);
        if (off !== at) {
          // A wrong offset is damage, or a torn length that made the walk land mid-record:
          // the checksum check below tells which record is bad.
          checkFrames(chunk, b, rel, 0, p + fp);
          throw corruptError(b.segment.path, b.dataStart + rel + p, `expected offset ${at}, found ${off}`);
        }
        if (off >= offset) {
          if (returned < 0) returned = p;
          if (found.length > 0 && bytes + len > maxBytes) {
            t.readHint = { offset: off, block: b, rel: rel + p };
            stop = true;
            break;
          }
          found.push({ offset: off, chunk: index, start: payloadStart(p), length: len });
          bytes += len;
          offset = off + 1;
          if (found.length >= maxEntries || offset >= t.complete) {
            t.readHint = { offset, block: b, rel: rel + p + fp };
            p += fp;
            stop = true;
            break;
          }
        }
        at = off + 1;
        p += fp;
      }
      // Only the records returned are checksummed (one native call), not the rest of the chunk.
      if (returned >= 0) checkFrames(chunk, b, rel, returned, p);
      if (found.length > firstFound) chunks.push(chunk.buffer as ArrayBuffer);
      else recycleChunks([chunk.buffer as ArrayBuffer]);
      if (stop) break outer;
      if (p === 0) {
        // One record larger than the chunk: read exactly it next.
        want = wholeRecord(b, rel, words);
        continue;
      }
      rel += p;
      want = Math.min(b.used - rel, Math.max(MIN_CHUNK, want));
    }
    if (offset < b.next) break;
  }
  return finish(found, chunks, bytes);
}

/**
 * The first chunk of a read in block `b` from `rel`: about what the call can return (from the
 * block's average record size, for `records` records or `maxBytes`), not the rest of the
 * block, since every byte read is also checksummed.
 */
function firstWant(b: Block, rel: number, maxBytes: number, records: number): number {
  const avg = b.used / Math.max(1, b.next - b.first);
  const need = Math.min(maxBytes + RECORD_HEADER_BYTES * 2, records * avg * READ_ESTIMATE_MARGIN);
  return Math.min(b.used - rel, Math.max(MIN_CHUNK, Math.ceil(need / 8) * 8));
}

/** The bytes of the one record at `rel` of `b` (`words`: a chunk read there), checked against its block. */
function wholeRecord(b: Block, rel: number, words: Int32Array): number {
  if (rel + RECORD_HEADER_BYTES > b.used) throw corruptError(b.segment.path, b.dataStart + rel, 'truncated record header');
  const want = recordFootprint(frameLength(words, 0));
  if (rel + want > b.used) throw corruptError(b.segment.path, b.dataStart + rel, 'record length past the end of its block');
  return want;
}

interface Found {
  offset: number;
  chunk: number;
  start: number;
  length: number;
}

function finish(found: Found[], chunks: ArrayBuffer[], bytes: number): ReadOutput {
  let chunkBytes = 0;
  for (const c of chunks) chunkBytes += c.byteLength;
  // Transfer the chunks when the entries fill most of them; otherwise (readNext, the last
  // entries of a block) copy the payloads into one buffer of their size, so that entries a
  // caller keeps do not pin chunks many times larger.
  const compact = bytes * 2 < chunkBytes;
  const out = compact ? Buffer.allocUnsafeSlow(bytes) : null; // every byte is written below
  const entries = new Float64Array(found.length * READ_ENTRY_FIELDS);
  let pos = 0;
  for (let k = 0; k < found.length; k++) {
    const f = found[k]!;
    const e = k * READ_ENTRY_FIELDS;
    entries[e] = f.offset;
    if (out !== null) {
      out.set(new Uint8Array(chunks[f.chunk]!, f.start, f.length), pos);
      entries[e + 1] = 0;
      entries[e + 2] = pos;
      pos += f.length;
    } else {
      entries[e + 1] = f.chunk;
      entries[e + 2] = f.start;
    }
    entries[e + 3] = f.length;
  }
  if (out === null) return { data: chunks, entries };
  // The payloads were copied out: the chunks serve later reads.
  recycleChunks(chunks);
  return { data: [out.buffer as ArrayBuffer], entries };
}

/** Shared-block records read at most this many bytes at a time. */
const MAX_SMALL_READ = 256 * 1024;

/**
 * Reads entries of `t` from its records in shared blocks, from `offset` (one of them): one
 * read per run of records that lie back to back in one block. Returns where it stopped, the
 * payload bytes found so far, and whether a limit was reached.
 */
function readSmall(
  t: TopicLog,
  offset: number,
  maxEntries: number,
  maxBytes: number,
  found: Found[],
  chunks: ArrayBuffer[],
): { offset: number; bytes: number; full: boolean } {
  const small = t.small;
  let bytes = 0;
  let k = offset - small[0]!.offset;
  while (k < small.length && found.length < maxEntries && offset < t.complete) {
    const first = small[k]!;
    const b = first.block;
    let end = k + 1;
    let length = first.fp;
    while (end < small.length && end - k < maxEntries - found.length && small[end]!.block === b && small[end]!.rel === first.rel + length && length < MAX_SMALL_READ) {
      length += small[end]!.fp;
      end++;
    }
    const chunk = readAt(b, first.rel, length);
    const valid = verifyFrames(chunk, 0, length);
    const words = frameWords(chunk);
    const index = chunks.length;
    const before = found.length;
    let p = 0;
    for (let j = k; j < end; j++) {
      const r = small[j]!;
      const len = frameLength(words, p);
      const off = frameOffset(words, p);
      if (p + r.fp > valid || frameTopic(words, p) !== t.id || off !== r.offset || recordFootprint(len) !== r.fp) {
        throw corruptError(b.segment.path, b.dataStart + r.rel, p + r.fp > valid ? 'record checksum mismatch' : `expected offset ${r.offset} of topic id ${t.id} in a shared block`);
      }
      if (off >= t.complete || (found.length > 0 && bytes + len > maxBytes)) {
        if (found.length > before) chunks.push(chunk.buffer as ArrayBuffer);
        return { offset: off, bytes, full: true };
      }
      found.push({ offset: off, chunk: index, start: payloadStart(p), length: len });
      bytes += len;
      offset = off + 1;
      p += r.fp;
    }
    if (found.length > before) chunks.push(chunk.buffer as ArrayBuffer);
    else recycleChunks([chunk.buffer as ArrayBuffer]);
    k = end;
  }
  return { offset, bytes, full: found.length >= maxEntries || offset >= t.complete };
}

/** Throws ERR_WALRUS_CORRUPT at the first of the frames in [start, end) whose checksum fails. */
function checkFrames(chunk: Uint8Array, b: Block, rel: number, start: number, end: number): void {
  const valid = verifyFrames(chunk, start, end);
  if (valid < end) throw corruptError(b.segment.path, b.dataStart + rel + valid, 'record checksum mismatch');
}

function readAt(b: Block, rel: number, length: number): Uint8Array {
  // Not zero-filled (a large share of the read path's time went to zeroing fresh chunks);
  // bytes past the end of the file are zeroed explicitly, as recovery treats them: only the
  // padding of the last record can be missing without failing its checksum.
  const buf = takeChunk(length);
  const got = readSegment(b.segment, buf, b.dataStart + rel);
  if (got < length) buf.fill(0, got);
  return buf;
}
