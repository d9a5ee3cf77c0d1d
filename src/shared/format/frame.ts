/**
 * The record frame codec: the one place in TypeScript that reads or writes the fields of a
 * record header (layout: REC_* in ../layout.ts; prose: docs/FORMAT.md, "Records").
 *
 * A frame is addressed as (`words`, `pos`): `words` is an Int32Array over the buffer that
 * holds it (`frameWords`), `pos` the byte position of its header there, a multiple of
 * RECORD_ALIGN, so that every u32 field is one whole element. The format is little-endian
 * and so are the hosts the addon builds for (x86-64, arm64): an element is the field's value.
 * Fields are read unsigned; an offset is joined from its two halves (u64.ts).
 *
 * A frame is finished by its seal: the salt of the block it goes into, stamped into REC_SALT,
 * then the CRC32C of bytes [RECORD_CRC_START, RECORD_HEADER_BYTES + len) stored in REC_CRC.
 * Three callers seal, all with the offsets of layout.ts (the addon's native/layout.h is
 * generated from it; test/frame.test.ts checks that they write the same bytes):
 * - `sealFrame`: one frame, here (header and payload in one buffer or apart);
 * - `PendingSeals`: many frames of one buffer, their salts stamped here at once and their
 *   CRCs computed by one addon call (`sealFrames`) when the batch is flushed;
 * - the addon's `sealRun`: a run of one topic's frames, walked, stamped and sealed in one pass.
 */
import {
  RECORD_ALIGN,
  RECORD_CRC_START,
  RECORD_HEADER_BYTES,
  REC_CRC,
  REC_FLAGS,
  REC_KIND,
  REC_LEN,
  REC_OFFSET_HI,
  REC_OFFSET_LO,
  REC_REMAINING,
  REC_RESERVED,
  REC_SALT,
  REC_TOPIC,
  recordFootprint,
} from './layout.js';
import { native } from '../native.js';
import { joinU64, u64Hi, u64Lo } from './u64.js';

/** Bytes a frame occupies: header, payload, zero padding up to RECORD_ALIGN (layout.ts). */
export { recordFootprint };

/** The element of `words` holding the u32 header field at byte `field`. */
function wordOf(field: number, name: string): number {
  if (field % 4 !== 0) throw new Error(`walrus-ts internal error: ${name} (${field}) is not on a u32 boundary`);
  return field >>> 2;
}

const W_CRC = wordOf(REC_CRC, 'REC_CRC');
const W_LEN = wordOf(REC_LEN, 'REC_LEN');
const W_TOPIC = wordOf(REC_TOPIC, 'REC_TOPIC');
/** Kind (low byte), flags and the two reserved bytes share one element. */
const W_KIND = wordOf(REC_KIND, 'REC_KIND');
const W_OFFSET_LO = wordOf(REC_OFFSET_LO, 'REC_OFFSET_LO');
const W_OFFSET_HI = wordOf(REC_OFFSET_HI, 'REC_OFFSET_HI');
const W_SALT = wordOf(REC_SALT, 'REC_SALT');
const W_REMAINING = wordOf(REC_REMAINING, 'REC_REMAINING');
/** Elements in RECORD_ALIGN bytes: the last ones of a frame hold all of its padding. */
const ALIGN_WORDS = wordOf(RECORD_ALIGN, 'RECORD_ALIGN');

// What the element-wise code above relies on; a layout change that breaks it fails at load.
if (REC_FLAGS !== REC_KIND + 1 || REC_RESERVED !== REC_KIND + 2) {
  throw new Error('walrus-ts internal error: REC_FLAGS and REC_RESERVED must follow REC_KIND in its u32');
}
if (new Set([W_CRC, W_LEN, W_TOPIC, W_KIND, W_OFFSET_LO, W_OFFSET_HI, W_SALT, W_REMAINING]).size * 4 !== RECORD_HEADER_BYTES) {
  throw new Error('walrus-ts internal error: the record header fields must fill RECORD_HEADER_BYTES (encodeFrame writes every one)');
}
if (RECORD_HEADER_BYTES % RECORD_ALIGN !== 0) throw new Error('walrus-ts internal error: RECORD_HEADER_BYTES is not a multiple of RECORD_ALIGN');

/**
 * An Int32Array over `bytes`, for the functions below. `bytes` must start on a 4-byte
 * boundary of its buffer (every buffer walrus-ts frames into or reads frames from does).
 */
export function frameWords(bytes: Uint8Array): Int32Array {
  return new Int32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength >>> 2);
}

/**
 * Writes the header of a frame at `pos`: CRC 0 (left for the seal), `len`, `topic`, `kind`,
 * flags and reserved 0, `offset` (an integer below 2^53) as two halves, `salt` (0 when the
 * seal stamps it), `remaining` (entries left in the batch, this one included; 1 = last).
 * Every header byte is written. Payload and padding are not touched (zeroFramePadding).
 */
export function encodeFrame(
  words: Int32Array,
  pos: number,
  len: number,
  topic: number,
  kind: number,
  offset: number,
  salt: number,
  remaining: number,
): void {
  const i = pos >>> 2;
  words[i + W_CRC] = 0;
  words[i + W_LEN] = len;
  words[i + W_TOPIC] = topic;
  words[i + W_KIND] = kind;
  words[i + W_OFFSET_LO] = u64Lo(offset);
  words[i + W_OFFSET_HI] = u64Hi(offset);
  words[i + W_SALT] = salt;
  words[i + W_REMAINING] = remaining;
}

/**
 * Zeroes the last RECORD_ALIGN bytes of the frame of `footprint` bytes at `pos`, which hold
 * all of its padding. Call it before writing the header and payload: they overwrite whatever
 * part of those bytes is theirs.
 */
export function zeroFramePadding(words: Int32Array, pos: number, footprint: number): void {
  const end = (pos + footprint) >>> 2;
  for (let k = end - ALIGN_WORDS; k < end; k++) words[k] = 0;
}

/** Payload length in bytes. */
export function frameLength(words: Int32Array, pos: number): number {
  return words[(pos >>> 2) + W_LEN]! >>> 0;
}

/** Shard-local topic id (META_TOPIC_ID for meta records; never SHARED_TOPIC_ID). */
export function frameTopic(words: Int32Array, pos: number): number {
  return words[(pos >>> 2) + W_TOPIC]! >>> 0;
}

/** Record kind (RecordKind). */
export function frameKind(words: Int32Array, pos: number): number {
  return words[(pos >>> 2) + W_KIND]! & 0xff;
}

/** Whether the flags and reserved bytes are zero, as in every frame walrus-ts writes. */
export function frameReservedClear(words: Int32Array, pos: number): boolean {
  return words[(pos >>> 2) + W_KIND]! >>> 8 === 0;
}

/** The entry's offset in its topic (at or above 2^53 only in a damaged frame). */
export function frameOffset(words: Int32Array, pos: number): number {
  const i = pos >>> 2;
  return joinU64(words[i + W_OFFSET_LO]!, words[i + W_OFFSET_HI]!);
}

/** Sets the offset of the frame at `pos` (records framed before their offset was known). */
export function setFrameOffset(words: Int32Array, pos: number, offset: number): void {
  const i = pos >>> 2;
  words[i + W_OFFSET_LO] = u64Lo(offset);
  words[i + W_OFFSET_HI] = u64Hi(offset);
}

/** Salt of the block the frame was sealed for (0 before its seal). */
export function frameSalt(words: Int32Array, pos: number): number {
  return words[(pos >>> 2) + W_SALT]! >>> 0;
}

/** Entries left in the frame's batch, this one included (1: the last of its batch). */
export function frameRemaining(words: Int32Array, pos: number): number {
  return words[(pos >>> 2) + W_REMAINING]! >>> 0;
}

/** The CRC32C stored in the frame (0 before its seal). */
export function frameCrc(words: Int32Array, pos: number): number {
  return words[(pos >>> 2) + W_CRC]! >>> 0;
}

/** Byte position of the payload of the frame at `pos`. */
export function payloadStart(pos: number): number {
  return pos + RECORD_HEADER_BYTES;
}

/** The payload of the frame at `pos` of `bytes` (a view; `len` from frameLength). */
export function framePayload(bytes: Uint8Array, pos: number, len: number): Uint8Array {
  return bytes.subarray(pos + RECORD_HEADER_BYTES, pos + RECORD_HEADER_BYTES + len);
}

/** First byte the CRC covers: every header byte after the CRC field, then the payload. */
export function crcStart(pos: number): number {
  return pos + RECORD_CRC_START;
}

/** End of the bytes the CRC covers (padding is not covered). */
export function crcEnd(pos: number, len: number): number {
  return pos + RECORD_HEADER_BYTES + len;
}

/**
 * The CRC32C the frame at `pos` must carry, over [crcStart, crcEnd): its header's bytes from
 * `bytes`, its payload from the `len` bytes after the header, or from `payload` when the
 * payload is held apart (a meta or external record, whose header is written beside it).
 */
export function computeFrameCrc(bytes: Uint8Array, words: Int32Array, pos: number, payload?: Uint8Array): number {
  if (payload === undefined) return native.crc32c(bytes.subarray(crcStart(pos), crcEnd(pos, frameLength(words, pos))));
  return native.crc32c(payload, native.crc32c(bytes.subarray(crcStart(pos), pos + RECORD_HEADER_BYTES)));
}

/**
 * Seals one frame: stamps `salt`, then stores the CRC (computeFrameCrc; `payload` when it is
 * held apart from the header, and then its length must be the header's `len`).
 */
export function sealFrame(bytes: Uint8Array, words: Int32Array, pos: number, salt: number, payload?: Uint8Array): void {
  const i = pos >>> 2;
  words[i + W_SALT] = salt;
  words[i + W_CRC] = computeFrameCrc(bytes, words, pos, payload);
}

/**
 * Whether the frame at `pos` fits before `end` (its whole footprint) and carries the CRC of
 * its bytes: the check `verifyFrames` makes of each frame, for one frame. Nothing is
 * checksummed when the length does not fit.
 */
export function frameSealed(bytes: Uint8Array, words: Int32Array, pos: number, end: number): boolean {
  if (end - pos < RECORD_HEADER_BYTES || recordFootprint(frameLength(words, pos)) > end - pos) return false;
  return frameCrc(words, pos) === computeFrameCrc(bytes, words, pos);
}

/**
 * The addon's walk over frames of `bytes` from `start`: the position of the first frame that
 * does not fit before `end` or fails its CRC, or where the walk reached `end` (or fewer than
 * RECORD_HEADER_BYTES remained). Always in [start, end].
 */
export function verifyFrames(bytes: Uint8Array, start: number, end: number): number {
  return native.verifyFrames(bytes, start, end);
}

/**
 * Seals of frames of one buffer (the shard ring) whose payload follows their header,
 * finished together: `add` stamps the salt at once, `flush` stores every CRC in one addon
 * call (`sealFrames`, the CRC computeFrameCrc gives). A drain that takes records one at a
 * time (topics interleaved in the ring) would otherwise pay an addon call per record.
 */
export class PendingSeals {
  private readonly positions: Uint32Array;
  private count = 0;

  constructor(
    private readonly bytes: Uint8Array,
    private readonly words: Int32Array,
    /** Most frames one batch can hold. */
    maxFrames: number,
  ) {
    this.positions = new Uint32Array(maxFrames);
  }

  /** Stamps `salt` into the frame at `pos`; its CRC is stored by the next flush(). */
  add(pos: number, salt: number): void {
    this.words[(pos >>> 2) + W_SALT] = salt;
    this.positions[this.count++] = pos;
  }

  /** Stores the CRC of every frame added since the last flush. */
  flush(): void {
    if (this.count > 0) native.sealFrames(this.bytes, this.positions, this.count);
    this.count = 0;
  }
}
