/**
 * The addon's checksum functions in TypeScript (native/checksums.cc), producing the same
 * bytes: CRC32C from `@node-rs/crc32` (the same polynomial and the same seed convention: the
 * seed is a previous result, so `crc32c(b, crc32c(a))` is the CRC of `a` then `b`;
 * test/portable.test.ts checks both against the addon), and the frame walks of sealFrames,
 * verifyFrames and sealRun over the record layout of src/shared/format/layout.ts.
 *
 * `buf` may be a view of the ring that another thread is writing: each header field is read
 * once into a local, so the length that passed a bounds check is the length used, as in the
 * C++.
 */
import { crc32c as crc32cOf } from '@node-rs/crc32';
import {
  RECORD_CRC_START,
  RECORD_HEADER_BYTES,
  REC_CRC,
  REC_FLAGS,
  REC_KIND,
  REC_LEN,
  REC_OFFSET_HI,
  REC_OFFSET_LO,
  REC_REMAINING,
  REC_SALT,
  REC_TOPIC,
  RUN_OUT_FIELDS,
  RecordKind,
  recordFootprint,
} from '../format/layout.js';

/** CRC32C of `data`, continuing from `seed` (a previous result; default 0). */
export function crc32c(data: Uint8Array, seed = 0): number {
  if (!(data instanceof Uint8Array)) throw new TypeError('data must be a Uint8Array');
  if (typeof seed !== 'number') throw new TypeError('seed must be a number');
  return crc32cOf(data, seed >>> 0);
}

/** `@node-rs/crc32` does not say whether it uses the CPU's CRC instructions: reported as false. */
export function crc32cHardware(): boolean {
  return false;
}

function viewOf(buf: Uint8Array): DataView {
  return new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
}

/** CRC of the frame at `at` with payload length `len`: [RECORD_CRC_START, header + len). */
function frameCrc(buf: Uint8Array, at: number, len: number): number {
  return crc32cOf(buf.subarray(at + RECORD_CRC_START, at + RECORD_HEADER_BYTES + len), 0);
}

/** An integer in [0, max], as the addon's IndexArg checks it. */
function index(value: unknown, max: number, name: string): number {
  if (typeof value !== 'number') throw new TypeError(`${name} must be a number`);
  if (!Number.isInteger(value) || value < 0 || value > max) throw new RangeError(`${name} must be an integer from 0 to ${max}, got ${value}`);
  return value;
}

function uint8(value: unknown, name: string): Uint8Array {
  if (!(value instanceof Uint8Array)) throw new TypeError(`${name} must be a Uint8Array`);
  return value;
}

/** Stores the record CRC of each frame at the first `count` positions of `positions`. */
export function sealFrames(buf: Uint8Array, positions: Uint32Array, count: number): void {
  uint8(buf, 'buf');
  if (!(positions instanceof Uint32Array)) throw new TypeError('positions must be a Uint32Array');
  index(count, positions.length, 'count');
  const dv = viewOf(buf);
  for (let i = 0; i < count; i++) {
    const at = positions[i]!;
    if (at > buf.length || buf.length - at < RECORD_HEADER_BYTES) {
      throw new RangeError(`positions[${i}] = ${at} leaves no room for a frame header in buf`);
    }
    const len = dv.getUint32(at + REC_LEN, true);
    if (buf.length - at - RECORD_HEADER_BYTES < len) {
      throw new RangeError(`the frame at positions[${i}] = ${at} has length ${len}, past the end of buf`);
    }
    dv.setUint32(at + REC_CRC, frameCrc(buf, at, len), true);
  }
}

/** The position of the first frame from `start` that does not fit before `end` or fails its CRC. */
export function verifyFrames(buf: Uint8Array, start: number, end: number): number {
  uint8(buf, 'buf');
  index(end, buf.length, 'end');
  let at = index(start, end, 'start');
  const dv = viewOf(buf);
  while (end - at >= RECORD_HEADER_BYTES) {
    const len = dv.getUint32(at + REC_LEN, true);
    const size = recordFootprint(len);
    if (size > end - at) break;
    if (dv.getUint32(at + REC_CRC, true) !== frameCrc(buf, at, len)) break;
    at += size;
  }
  return at;
}

const MAX_SAFE = Number.MAX_SAFE_INTEGER;
const U32_MAX = 0xffffffff;

/** The drain's run of Entry frames of one topic (native.ts, NativeBinding.sealRun). */
export function sealRun(
  buf: Uint8Array,
  start: number,
  limit: number,
  topic: number,
  offset: number,
  salt: number,
  room: number,
  out: Float64Array,
  indexBase: number,
  indexEvery: number,
): number {
  uint8(buf, 'buf');
  index(limit, buf.length, 'limit');
  index(start, limit, 'start');
  index(topic, U32_MAX, 'topic');
  index(offset, MAX_SAFE, 'offset');
  index(salt, U32_MAX, 'salt');
  index(room, MAX_SAFE, 'room');
  if (!(out instanceof Float64Array)) throw new TypeError('out must be a Float64Array');
  index(indexBase, offset, 'indexBase');
  index(indexEvery, U32_MAX, 'indexEvery');
  if (out.length < RUN_OUT_FIELDS || indexEvery === 0) {
    throw new RangeError(`out needs ${RUN_OUT_FIELDS} elements and indexEvery must be > 0`);
  }
  const dv = viewOf(buf);
  const maxPairs = Math.floor((out.length - RUN_OUT_FIELDS) / 2);
  let at = start;
  let frames = 0;
  let pairs = 0;
  let completeNext = -1;
  let next = offset;
  while (limit - at >= RECORD_HEADER_BYTES) {
    if (buf[at + REC_KIND] !== RecordKind.Entry || buf[at + REC_FLAGS] !== 0) break;
    if (dv.getUint32(at + REC_TOPIC, true) !== topic) break;
    const off = dv.getUint32(at + REC_OFFSET_LO, true) + dv.getUint32(at + REC_OFFSET_HI, true) * 2 ** 32;
    if (off !== next) break;
    const len = dv.getUint32(at + REC_LEN, true);
    const size = recordFootprint(len);
    if (size > limit - at || size > room - (at - start)) break;
    if ((off - indexBase) % indexEvery === 0) {
      if (pairs === maxPairs) break;
      out[RUN_OUT_FIELDS + 2 * pairs] = off;
      out[RUN_OUT_FIELDS + 2 * pairs + 1] = at - start;
      pairs++;
    }
    const remaining = dv.getUint32(at + REC_REMAINING, true);
    dv.setUint32(at + REC_SALT, salt, true);
    dv.setUint32(at + REC_CRC, frameCrc(buf, at, len), true);
    frames++;
    next++;
    if (remaining === 1) completeNext = next;
    at += size;
  }
  out[0] = frames;
  out[1] = completeNext;
  out[2] = pairs;
  return at - start;
}
