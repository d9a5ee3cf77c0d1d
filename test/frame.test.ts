// The frame codec (src/shared/format/frame.ts) against the addon: frames the TypeScript codec
// encodes and seals pass the addon's verifyFrames, frames the addon seals (sealFrames,
// sealRun) decode and verify with the codec, and every seal path writes the same bytes, which
// are the bytes docs/FORMAT.md describes (checked against an independent CRC32C and a fixed
// frame).
import { crc32c as referenceCrc32c } from '@node-rs/crc32';
import { describe, expect, it } from 'vitest';

import { RingProducer } from '../dist/main/client/producer.js';
import {
  PendingSeals,
  computeFrameCrc,
  crcEnd,
  crcStart,
  encodeFrame,
  frameCrc,
  frameKind,
  frameLength,
  frameOffset,
  framePayload,
  frameRemaining,
  frameReservedClear,
  frameSalt,
  frameSealed,
  frameTopic,
  frameWords,
  payloadStart,
  sealFrame,
  verifyFrames,
  zeroFramePadding,
} from '../dist/shared/format/frame.js';
import { TWO_32, joinU64, u64Hi, u64Lo } from '../dist/shared/format/u64.js';
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
  REC_RESERVED,
  REC_SALT,
  REC_TOPIC,
  RUN_OUT_FIELDS,
  RecordKind,
  recordFootprint,
} from '../dist/shared/format/layout.js';
import { native } from '../dist/shared/native.js';
import { createRing } from '../dist/shared/ring.js';

interface Spec {
  topic: number;
  kind: number;
  offset: number;
  salt: number;
  remaining: number;
  payload: Uint8Array;
}

const MAX_OFFSET = Number.MAX_SAFE_INTEGER; // 2^53 - 1

function bytesOf(n: number, seed: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (seed * 31 + i * 7) & 0xff;
  return b;
}

/** The edge cases: empty payload, largest offset, topic 0xFFFFFFFF, batches of more than one. */
const EDGES: Spec[] = [
  { topic: 1, kind: RecordKind.Entry, offset: 0, salt: 1, remaining: 1, payload: new Uint8Array(0) },
  { topic: 2, kind: RecordKind.Entry, offset: MAX_OFFSET, salt: 0xffffffff, remaining: 1, payload: bytesOf(1, 2) },
  { topic: 0xffffffff, kind: RecordKind.Entry, offset: TWO_32 - 1, salt: 0x80000000, remaining: 2, payload: bytesOf(7, 3) },
  { topic: 0, kind: RecordKind.Meta, offset: TWO_32, salt: 12345, remaining: 0xffffffff, payload: bytesOf(8, 4) },
  { topic: 0x7fffffff, kind: RecordKind.Entry, offset: 2 ** 52 + 3, salt: 0, remaining: 3, payload: bytesOf(750, 5) },
];

/** The frame as docs/FORMAT.md describes it, built with DataView and sealed with an independent CRC32C. */
function referenceFrame(s: Spec): Uint8Array {
  const buf = new Uint8Array(recordFootprint(s.payload.length));
  const dv = new DataView(buf.buffer);
  dv.setUint32(REC_LEN, s.payload.length, true);
  dv.setUint32(REC_TOPIC, s.topic, true);
  buf[REC_KIND] = s.kind;
  dv.setUint32(REC_OFFSET_LO, s.offset % TWO_32, true);
  dv.setUint32(REC_OFFSET_HI, Math.floor(s.offset / TWO_32), true);
  dv.setUint32(REC_SALT, s.salt, true);
  dv.setUint32(REC_REMAINING, s.remaining, true);
  buf.set(s.payload, RECORD_HEADER_BYTES);
  dv.setUint32(REC_CRC, referenceCrc32c(buf.subarray(RECORD_CRC_START, RECORD_HEADER_BYTES + s.payload.length)), true);
  return buf;
}

/** Frames of `specs` back to back, encoded by the codec with salt 0 and CRC 0 (as the producer leaves them). */
function encodeAll(specs: Spec[]): { bytes: Uint8Array; words: Int32Array; at: number[] } {
  const at: number[] = [];
  let size = 0;
  for (const s of specs) {
    at.push(size);
    size += recordFootprint(s.payload.length);
  }
  // Garbage everywhere first: encodeFrame and zeroFramePadding must leave none in the frames.
  const bytes = new Uint8Array(size).fill(0xa5);
  const words = frameWords(bytes);
  specs.forEach((s, k) => {
    const pos = at[k]!;
    zeroFramePadding(words, pos, recordFootprint(s.payload.length));
    encodeFrame(words, pos, s.payload.length, s.topic, s.kind, s.offset, 0, s.remaining);
    bytes.set(s.payload, payloadStart(pos));
  });
  return { bytes, words, at };
}

/** Every field decodes to what was framed, and the codec's own check passes. */
function expectDecodes(bytes: Uint8Array, words: Int32Array, pos: number, s: Spec): void {
  expect(frameLength(words, pos)).toBe(s.payload.length);
  expect(frameTopic(words, pos)).toBe(s.topic);
  expect(frameKind(words, pos)).toBe(s.kind);
  expect(frameReservedClear(words, pos)).toBe(true);
  expect(frameOffset(words, pos)).toBe(s.offset);
  expect(frameSalt(words, pos)).toBe(s.salt);
  expect(frameRemaining(words, pos)).toBe(s.remaining);
  expect(framePayload(bytes, pos, s.payload.length)).toEqual(s.payload);
  expect(frameCrc(words, pos)).toBe(computeFrameCrc(bytes, words, pos));
  expect(frameSealed(bytes, words, pos, bytes.length)).toBe(true);
}

describe('frame codec', () => {
  it('writes the documented bytes: a fixed frame, and the reference construction for every edge case', () => {
    const s: Spec = { topic: 7, kind: RecordKind.Entry, offset: 0x0123456789ab, salt: 0xdeadbeef, remaining: 3, payload: new TextEncoder().encode('walrus') };
    const { bytes, words } = encodeAll([s]);
    sealFrame(bytes, words, 0, s.salt);
    expect(Buffer.from(bytes).toString('hex')).toBe('d2b09cdb060000000700000001000000ab89674523010000efbeadde0300000077616c7275730000');
    for (const e of EDGES) {
      const one = encodeAll([e]);
      sealFrame(one.bytes, one.words, 0, e.salt);
      expect(one.bytes).toEqual(referenceFrame(e));
    }
  });

  it('frames sealed by the codec pass the addon verification and decode to what was framed', () => {
    const { bytes, words, at } = encodeAll(EDGES);
    EDGES.forEach((s, k) => sealFrame(bytes, words, at[k]!, s.salt));
    expect(verifyFrames(bytes, 0, bytes.length)).toBe(bytes.length);
    expect(native.verifyFrames(bytes, 0, bytes.length)).toBe(bytes.length);
    EDGES.forEach((s, k) => expectDecodes(bytes, words, at[k]!, s));
  });

  it('a frame sealed with its payload held apart has the bytes of the same frame sealed in one piece', () => {
    for (const s of EDGES) {
      const whole = encodeAll([s]);
      sealFrame(whole.bytes, whole.words, 0, s.salt);
      // As the writer frames meta and external records: a header buffer, the payload elsewhere.
      const headers = new Uint8Array(RECORD_HEADER_BYTES * 2);
      const headerWords = frameWords(headers);
      encodeFrame(headerWords, RECORD_HEADER_BYTES, s.payload.length, s.topic, s.kind, s.offset, 0, s.remaining);
      sealFrame(headers, headerWords, RECORD_HEADER_BYTES, s.salt, s.payload);
      expect(headers.subarray(RECORD_HEADER_BYTES)).toEqual(whole.bytes.subarray(0, RECORD_HEADER_BYTES));
    }
  });

  it('frames sealed by the addon (sealFrames after PendingSeals stamped the salts) decode and verify with the codec', () => {
    const { bytes, words, at } = encodeAll(EDGES);
    const seals = new PendingSeals(bytes, words, EDGES.length);
    EDGES.forEach((s, k) => seals.add(at[k]!, s.salt));
    // Salts are stamped at once, CRCs only by flush().
    EDGES.forEach((s, k) => {
      expect(frameSalt(words, at[k]!)).toBe(s.salt);
      expect(frameSealed(bytes, words, at[k]!, bytes.length)).toBe(false);
    });
    seals.flush();
    EDGES.forEach((s, k) => {
      expectDecodes(bytes, words, at[k]!, s);
      expect(bytes.subarray(at[k]!, at[k]! + recordFootprint(s.payload.length))).toEqual(referenceFrame(s));
    });
    // flush() forgets what it sealed: a second flush stores nothing.
    words[(at[0]! + REC_CRC) >>> 2] = 0;
    seals.flush();
    expect(frameCrc(words, at[0]!)).toBe(0);
  });

  it('a run sealed by the addon (sealRun) has the bytes the codec seals, and decodes with it', () => {
    // One topic, offsets continuing, one batch of three then a single: sealRun's input.
    const first = MAX_OFFSET - 3;
    const topic = 0xffffffff;
    const salt = 0xfedcba98;
    const specs: Spec[] = [0, 7, 750, 1].map((len, k) => ({
      topic,
      kind: RecordKind.Entry,
      offset: first + k,
      salt,
      remaining: k < 3 ? 3 - k : 1,
      payload: bytesOf(len, k),
    }));
    const byAddon = encodeAll(specs);
    const out = new Float64Array(RUN_OUT_FIELDS + 8);
    const taken = native.sealRun(byAddon.bytes, 0, byAddon.bytes.length, topic, first, salt, byAddon.bytes.length, out, first, 2);
    expect(taken).toBe(byAddon.bytes.length);
    expect(out[0]).toBe(specs.length);
    expect(out[1]).toBe(MAX_OFFSET + 1);
    specs.forEach((s, k) => expectDecodes(byAddon.bytes, byAddon.words, byAddon.at[k]!, s));

    const byCodec = encodeAll(specs);
    specs.forEach((s, k) => sealFrame(byCodec.bytes, byCodec.words, byCodec.at[k]!, s.salt));
    expect(byCodec.bytes).toEqual(byAddon.bytes);
  });

  it('frames the producer writes into the ring are the codec frames, padding zeroed', () => {
    const sab = createRing(4096);
    const producer = new RingProducer(sab, Number.POSITIVE_INFINITY);
    const { data, words } = producer.v;
    // Dirty ring bytes, as left by earlier records.
    data.fill(0xff);
    const placed: { pos: number; s: Spec }[] = [];
    for (const s of EDGES.filter((e) => e.kind === RecordKind.Entry)) {
      const fp = recordFootprint(s.payload.length);
      const pos = producer.claim(fp);
      producer.writeHeader(pos, fp, s.payload.length, s.topic, s.kind, s.offset, s.remaining);
      producer.writePayload(pos, s.payload, s.payload.length);
      placed.push({ pos, s });
    }
    for (const { pos, s } of placed) {
      expect(frameSalt(words, pos)).toBe(0);
      expect(frameCrc(words, pos)).toBe(0);
      sealFrame(data, words, pos, s.salt);
      expect(data.subarray(pos, pos + recordFootprint(s.payload.length))).toEqual(referenceFrame(s));
    }
  });

  it('refuses damaged frames: a flipped byte, a length past the end, flags or reserved bytes set', () => {
    const s = EDGES[4]!;
    const { bytes, words } = encodeAll([s]);
    sealFrame(bytes, words, 0, s.salt);
    const end = bytes.length;
    for (const at of [RECORD_CRC_START, REC_TOPIC, REC_OFFSET_HI, REC_REMAINING, RECORD_HEADER_BYTES, RECORD_HEADER_BYTES + s.payload.length - 1]) {
      bytes[at] = bytes[at]! ^ 0x10;
      expect(frameSealed(bytes, words, 0, end)).toBe(false);
      expect(native.verifyFrames(bytes, 0, end)).toBe(0);
      bytes[at] = bytes[at]! ^ 0x10;
    }
    expect(frameSealed(bytes, words, 0, end)).toBe(true);
    // The whole footprint must fit, padding included; an implausible length is refused unread.
    expect(frameSealed(bytes, words, 0, end - 1)).toBe(false);
    expect(frameSealed(bytes, words, 0, RECORD_HEADER_BYTES - 1)).toBe(false);
    const huge = bytes.slice();
    const hugeWords = frameWords(huge);
    hugeWords[REC_LEN >>> 2] = -1; // 0xffffffff
    expect(frameLength(hugeWords, 0)).toBe(0xffffffff);
    expect(frameSealed(huge, hugeWords, 0, huge.length)).toBe(false);
    for (const at of [REC_FLAGS, REC_RESERVED, REC_RESERVED + 1]) {
      const copy = bytes.slice();
      copy[at] = 1;
      const w = frameWords(copy);
      expect(frameReservedClear(w, 0)).toBe(false);
      expect(frameKind(w, 0)).toBe(s.kind);
    }
  });

  it('CRC range and u64 halves', () => {
    expect(crcStart(64)).toBe(64 + RECORD_CRC_START);
    expect(crcEnd(64, 10)).toBe(64 + RECORD_HEADER_BYTES + 10);
    for (const v of [0, 1, TWO_32 - 1, TWO_32, TWO_32 + 1, MAX_OFFSET]) {
      expect(u64Lo(v)).toBe(v % TWO_32);
      expect(u64Hi(v)).toBe(Math.floor(v / TWO_32));
      expect(joinU64(u64Lo(v), u64Hi(v))).toBe(v);
      // Halves read through a signed view join to the same value.
      expect(joinU64(u64Lo(v) | 0, u64Hi(v) | 0)).toBe(v);
    }
    // A damaged high half decodes to 2^53 or more: never an offset a chain expects.
    const bytes = new Uint8Array(RECORD_HEADER_BYTES);
    const words = frameWords(bytes);
    encodeFrame(words, 0, 0, 1, RecordKind.Entry, MAX_OFFSET, 0, 1);
    words[REC_OFFSET_HI >>> 2] = 0x00200000;
    expect(frameOffset(words, 0)).toBeGreaterThanOrEqual(2 ** 53);
  });
});
