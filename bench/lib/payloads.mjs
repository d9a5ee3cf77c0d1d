// Pre-generated benchmark payloads: random lengths in [minBytes, maxBytes], random
// (incompressible) bytes. All payloads are views into one contiguous buffer, so the
// "bare" baseline can write exactly the same bytes in 1 MiB pieces.
import { randomFillSync } from 'node:crypto';

/** Small deterministic PRNG (mulberry32) for the lengths, so runs are comparable. */
function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * @returns {{ payloads: Buffer[], all: Buffer, totalBytes: number }}
 */
export function makePayloads(count, { minBytes = 500, maxBytes = 1000, seed = 0x5eed } = {}) {
  const rand = mulberry32(seed);
  const lens = new Uint32Array(count);
  let total = 0;
  for (let i = 0; i < count; i++) {
    const len = minBytes + Math.floor(rand() * (maxBytes - minBytes + 1));
    lens[i] = len;
    total += len;
  }
  const all = Buffer.allocUnsafeSlow(total);
  // randomFillSync is limited to 2^31-1 bytes per call.
  const STEP = 1 << 30;
  for (let at = 0; at < total; at += STEP) randomFillSync(all, at, Math.min(STEP, total - at));
  const payloads = new Array(count);
  let at = 0;
  for (let i = 0; i < count; i++) {
    payloads[i] = all.subarray(at, at + lens[i]);
    at += lens[i];
  }
  return { payloads, all, totalBytes: total };
}

/** Splits `all` into consecutive `chunkBytes` copies (the last one may be shorter). */
export function chunk(all, chunkBytes) {
  const out = [];
  for (let at = 0; at < all.length; at += chunkBytes) {
    const end = Math.min(all.length, at + chunkBytes);
    const b = Buffer.allocUnsafeSlow(end - at);
    all.copy(b, 0, at, end);
    out.push(b);
  }
  return out;
}

/** Groups payloads into consecutive arrays of `size` entries (the last one may be shorter). */
export function batches(payloads, size) {
  const out = [];
  for (let i = 0; i < payloads.length; i += size) out.push(payloads.slice(i, i + size));
  return out;
}

/**
 * The hand-made framing of the file-based peers: each payload preceded by its length as a
 * little-endian u32, all in one contiguous buffer (built once, not measured). Returns the
 * buffer and one view per framed record.
 */
export function framePayloads(payloads) {
  const total = payloads.reduce((a, p) => a + 4 + p.length, 0);
  const all = Buffer.allocUnsafeSlow(total);
  const framed = new Array(payloads.length);
  let at = 0;
  for (let i = 0; i < payloads.length; i++) {
    const p = payloads[i];
    all.writeUInt32LE(p.length, at);
    p.copy(all, at + 4);
    framed[i] = all.subarray(at, at + 4 + p.length);
    at += 4 + p.length;
  }
  return { framedAll: all, framed };
}
