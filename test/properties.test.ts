/**
 * Properties (fast-check): the record codec (frames built per docs/FORMAT.md, sealed by the
 * addon, verified by the addon and by the JavaScript CRC32C), rejection of arbitrary bytes
 * by every decoder recovery uses, and hostile topic names and namespace keys (the
 * model-based test of the public API is test/model.test.ts). Run counts are fixed so that
 * CI time is bounded.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, realpathSync, statSync } from 'node:fs';
import { join, relative, resolve, sep } from 'node:path';
import { crc32c } from '@node-rs/crc32';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Walrus } from '../dist/index.js';
import { native } from '../dist/shared/native.js';
import {
  RECORD_HEADER_BYTES,
  REC_CRC,
  REC_KIND,
  REC_LEN,
  REC_OFFSET_HI,
  REC_OFFSET_LO,
  REC_REMAINING,
  REC_SALT,
  REC_TOPIC,
  RecordKind,
  recordFootprint,
} from '../dist/shared/format/layout.js';
import { decodeBlockHeader } from '../dist/shared/format/block.js';
import { decodeSegmentHeader } from '../dist/shared/format/segment.js';
import { decodeMeta, encodeMeta, encodeSnapshot } from '../dist/shared/format/meta.js';
import { harvestMarks } from '../dist/workers/recovery/marks.js';
import { sanitizeKey } from '../dist/main/namespace.js';
import { ramTempDir, tempDir } from './helpers.js';

const TWO_32 = 2 ** 32;

interface Frame {
  topic: number;
  kind: number;
  offset: number;
  salt: number;
  remaining: number;
  payload: Uint8Array;
}

/** Frames laid out back to back as the format says, CRC fields left zero. */
function layOut(frames: Frame[]): { buf: Uint8Array; positions: number[] } {
  const total = frames.reduce((n, f) => n + recordFootprint(f.payload.length), 0);
  const buf = new Uint8Array(total);
  const dv = new DataView(buf.buffer);
  const positions: number[] = [];
  let p = 0;
  for (const f of frames) {
    positions.push(p);
    dv.setUint32(p + REC_LEN, f.payload.length, true);
    dv.setUint32(p + REC_TOPIC, f.topic, true);
    buf[p + REC_KIND] = f.kind;
    dv.setUint32(p + REC_OFFSET_LO, f.offset % TWO_32, true);
    dv.setUint32(p + REC_OFFSET_HI, Math.floor(f.offset / TWO_32), true);
    dv.setUint32(p + REC_SALT, f.salt, true);
    dv.setUint32(p + REC_REMAINING, f.remaining, true);
    buf.set(f.payload, p + RECORD_HEADER_BYTES);
    p += recordFootprint(f.payload.length);
  }
  return { buf, positions };
}

const frameArb = fc.record({
  topic: fc.nat({ max: 0xffffffff }),
  kind: fc.constantFrom(RecordKind.Entry, RecordKind.Meta),
  offset: fc.nat({ max: Number.MAX_SAFE_INTEGER }),
  salt: fc.nat({ max: 0xffffffff }),
  remaining: fc.integer({ min: 1, max: 0xffffffff }),
  payload: fc.uint8Array({ maxLength: 300 }),
});

describe('record codec', () => {
  it('sealed frames verify, match the JavaScript CRC32C and decode to what was framed', () => {
    fc.assert(
      fc.property(fc.array(frameArb, { minLength: 1, maxLength: 12 }), (frames) => {
        const { buf, positions } = layOut(frames);
        native.sealFrames(buf, Uint32Array.from(positions), positions.length);
        expect(native.verifyFrames(buf, 0, buf.length)).toBe(buf.length);
        const dv = new DataView(buf.buffer);
        frames.forEach((f, k) => {
          const p = positions[k]!;
          const fp = recordFootprint(f.payload.length);
          // The addon's CRC is CRC32C of header bytes 4..31 then the payload.
          expect(dv.getUint32(p + REC_CRC, true)).toBe(crc32c(Buffer.from(buf.subarray(p + 4, p + RECORD_HEADER_BYTES + f.payload.length))));
          expect(dv.getUint32(p + REC_LEN, true)).toBe(f.payload.length);
          expect(dv.getUint32(p + REC_OFFSET_LO, true) + dv.getUint32(p + REC_OFFSET_HI, true) * TWO_32).toBe(f.offset);
          expect(Buffer.compare(buf.subarray(p + RECORD_HEADER_BYTES, p + RECORD_HEADER_BYTES + f.payload.length), f.payload)).toBe(0);
          // Each frame verifies on its own, too.
          expect(native.verifyFrames(buf, p, p + fp)).toBe(p + fp);
        });
      }),
      { numRuns: 300 },
    );
  });

  it('sealRun seals an Entry run that verifies, and reports batch ends and offsets', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 200 }), { minLength: 1, maxLength: 20 }), fc.nat({ max: 1e9 }), fc.nat({ max: 0xffffffff }), (payloads, first, salt) => {
        const frames = payloads.map((payload, k) => ({ topic: 7, kind: RecordKind.Entry, offset: first + k, salt: 0, remaining: 1, payload }));
        const { buf } = layOut(frames);
        const out = new Float64Array(64);
        const taken = native.sealRun(buf, 0, buf.length, 7, first, salt, buf.length, out, first, 4);
        expect(taken).toBe(buf.length);
        expect(out[0]).toBe(frames.length);
        expect(out[1]).toBe(first + frames.length);
        expect(native.verifyFrames(buf, 0, buf.length)).toBe(buf.length);
        const dv = new DataView(buf.buffer);
        let p = 0;
        for (const f of frames) {
          expect(dv.getUint32(p + REC_SALT, true)).toBe(salt);
          p += recordFootprint(f.payload.length);
        }
      }),
      { numRuns: 200 },
    );
  });

  it('any single-bit flip of a sealed frame (header or payload) stops verification at or before it', () => {
    fc.assert(
      fc.property(fc.array(frameArb, { minLength: 1, maxLength: 6 }), fc.nat(), fc.nat(), (frames, which, bitSeed) => {
        const { buf, positions } = layOut(frames);
        native.sealFrames(buf, Uint32Array.from(positions), positions.length);
        const k = which % frames.length;
        const p = positions[k]!;
        // Every covered bit: header from byte 0 (the CRC itself included) to the payload's end.
        const bit = bitSeed % ((RECORD_HEADER_BYTES + frames[k]!.payload.length) * 8);
        buf[p + (bit >> 3)]! ^= 1 << (bit & 7);
        expect(native.verifyFrames(buf, 0, buf.length)).toBeLessThanOrEqual(p);
      }),
      { numRuns: 1000 },
    );
  });

  it('arbitrary bytes are never accepted as a record, a block or a segment header, and never crash a decoder', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 0, maxLength: 2048 }), fc.nat(), fc.nat(), (bytes, a, b) => {
        const end = bytes.length === 0 ? 0 : b % (bytes.length + 1);
        const start = end === 0 ? 0 : a % (end + 1);
        const v = native.verifyFrames(bytes, start, end);
        // A random frame passes only with a matching CRC32C (odds 2^-32 per position).
        expect(v).toBe(start);
        expect(decodeBlockHeader(bytes)).toBeNull();
        expect(typeof decodeSegmentHeader(bytes)).toBe('string');
        expect(harvestMarks(bytes, 0, bytes.length, null, new Map())).toBe(0);
        const m = decodeMeta(bytes);
        expect(typeof m === 'string' || typeof m === 'object').toBe(true);
      }),
      { numRuns: 2000 },
    );
  });

  it('a huge length prefix is rejected without reading or allocating past the buffer', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffffffff }), fc.uint8Array({ minLength: 0, maxLength: 256 }), (len, tail) => {
        const buf = new Uint8Array(RECORD_HEADER_BYTES + tail.length);
        buf.set(tail, RECORD_HEADER_BYTES);
        new DataView(buf.buffer).setUint32(REC_LEN, len, true);
        const v = native.verifyFrames(buf, 0, buf.length);
        if (recordFootprint(len) > buf.length) expect(v).toBe(0);
        else expect(v === 0 || v === recordFootprint(len)).toBe(true);
        expect(() => native.verifyFrames(buf, 0, buf.length + 1)).toThrow(RangeError);
        expect(() => native.verifyFrames(buf, 2, 1)).toThrow(RangeError);
      }),
      { numRuns: 500 },
    );
  });
});

// The model-based test of the public API is test/model.test.ts.

// ---- Hostile names ------------------------------------------------------------------------

/** Every path under `root`, relative. */
function walk(root: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(root)) {
    const p = join(root, name);
    out.push(relative(root, p));
    if (statSync(p).isDirectory()) for (const q of walk(p)) out.push(join(name, q));
  }
  return out;
}

const hostileArb = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 300 }),
  fc.constantFrom('..', '.', '/', '../../etc', 'a/../../b', '\0', 'a\0b', '~', '%2e%2e', '/abs/path', 'x'.repeat(5000), 'é'.repeat(300), '\u{1F600}/..', 'con', '.walrus.lock'),
  fc.array(fc.constantFrom('..', '/', '.', '\0', 'a', '%'), { maxLength: 40 }).map((p) => p.join('')),
);

describe('hostile namespace keys and topic names', () => {
  it('a sanitized key is one safe path component: no separator, NUL or dot, never empty, within NAME_MAX', () => {
    fc.assert(
      fc.property(hostileArb, (key) => {
        const s = sanitizeKey(key);
        expect(s.length).toBeGreaterThan(key === '' ? -1 : 0);
        expect(s).not.toMatch(/[/\0.]/);
        // At most 200 bytes, or 150 + '~' + 64 hex digits when shortened: under NAME_MAX (255).
        expect(Buffer.byteLength(s)).toBeLessThanOrEqual(215);
        const root = resolve('/data/root');
        expect(resolve(root, s).startsWith(root + sep) || s === '').toBe(true);
      }),
      { numRuns: 3000 },
    );
  });

  it('distinct keys get distinct directories', () => {
    fc.assert(
      fc.property(hostileArb, hostileArb, (a, b) => {
        fc.pre(a !== b);
        expect(sanitizeKey(a)).not.toBe(sanitizeKey(b));
      }),
      { numRuns: 3000 },
    );
  });

  it('opening with hostile keys and topic names creates nothing outside the data directory', async () => {
    const outer = tempDir('walrus-hostile-');
    const dir = join(outer, 'data');
    let opened = 0;
    await fc.assert(
      fc.asyncProperty(hostileArb, fc.array(hostileArb, { minLength: 1, maxLength: 4 }), async (key, topics) => {
        const wal = await Walrus.open({ dir, key, shards: 1, blockBytes: 4096, segmentBlocks: 4 });
        opened++;
        const stored: string[] = [];
        try {
          for (const t of topics) {
            try {
              wal.append(t, t);
              stored.push(t);
            } catch (e) {
              // Only the documented refusal: empty, NUL, lone surrogate, over 255 bytes.
              expect((e as { code?: string }).code).toBe('ERR_WALRUS_INVALID_TOPIC');
            }
          }
        } finally {
          await wal.close();
        }
        // Names are data (meta records), never paths: each topic reads back under its name.
        const again = await Walrus.open({ dir, key, shards: 1, blockBytes: 4096, segmentBlocks: 4 });
        try {
          for (const t of new Set(stored)) {
            for await (const e of again.iterate(t)) expect(e.data.toString()).toBe(t);
          }
        } finally {
          await again.close();
        }
        expect(readdirSync(outer)).toEqual(['data']);
        for (const p of walk(dir)) expect(realpathSync(join(dir, p)).startsWith(realpathSync(dir) + sep)).toBe(true);
      }),
      { numRuns: 8 },
    );
    expect(opened).toBeGreaterThanOrEqual(8);
  }, 120_000);
});

/**
 * Names are data and come back byte for byte: any Unicode (astral planes, combining marks,
 * U+FEFF anywhere, the first character included), in topic names and namespace keys, through
 * the meta records (topic declarations and snapshots) and across reopen. A decoder that strips
 * a leading byte-order mark turned "\ufeffx" into "x" (issue 11, item 5).
 */
describe('names round-trip byte for byte', () => {
  const bytes = (s: string): number => Buffer.byteLength(s, 'utf8');
  /** Valid topic names: arbitrary code points, often led by U+FEFF. */
  const topicName = fc
    .tuple(fc.boolean(), fc.string({ unit: 'binary', minLength: 1, maxLength: 40 }))
    .map(([bom, s]) => (bom ? `\ufeff${s}` : s))
    .filter((s) => !s.includes('\0') && bytes(s) <= 255);

  it('meta records keep every name exactly, a leading U+FEFF included', () => {
    fc.assert(
      fc.property(fc.array(topicName, { minLength: 1, maxLength: 8 }), (names) => {
        names.forEach((name, k) => expect(decodeMeta(encodeMeta({ k: 'topic', id: k + 1, name }))).toEqual({ k: 'topic', id: k + 1, name }));
        const t = names.map((name, k): [number, string, number, number] => [k + 1, name, k, k]);
        expect(decodeMeta(encodeMeta({ k: 'snapshot', t }))).toEqual({ k: 'snapshot', t });
        expect(decodeMeta(encodeMeta({ k: 'snapshot', s: 7, t }))).toEqual({ k: 'snapshot', s: 7, t });
        const pairs = names.map((name, k): [number, string] => [k + 1, name]);
        expect(decodeMeta(encodeMeta({ k: 'topics', t: pairs }))).toEqual({ k: 'topics', t: pairs });
        // Named consumers' records: names (consumers' too) byte for byte, positions exact.
        names.forEach((name, k) => expect(decodeMeta(encodeMeta({ k: 'consumer', c: k + 1, name }))).toEqual({ k: 'consumer', c: k + 1, name }));
        const positions = names.map((_, k): [number, number] => [k + 1, k * 1000 + 2 ** 40]);
        expect(decodeMeta(encodeMeta({ k: 'positions', c: 3, t: positions }))).toEqual({ k: 'positions', c: 3, t: positions });
        const all = names.map((name, k): [number, string, [number, number][]] => [k + 1, name, positions.slice(0, k)]);
        expect(decodeMeta(encodeMeta({ k: 'consumers', c: all }))).toEqual({ k: 'consumers', c: all });
        expect(decodeMeta(encodeMeta({ k: 'dropConsumer', c: 9 }))).toEqual({ k: 'dropConsumer', c: 9 });
        // Malformed ones are reasons (recovery reports them as corruption), never records.
        expect(decodeMeta(encodeMeta({ k: 'consumer', c: 0, name: names[0]! }))).toBe('malformed consumer record');
        expect(decodeMeta(encodeMeta({ k: 'positions', c: 1, t: [[0, 1]] }))).toBe('malformed positions record');
        expect(decodeMeta(encodeMeta({ k: 'positions', c: 1, t: [[1, -1]] }))).toBe('malformed positions record');
        expect(decodeMeta(encodeMeta({ k: 'consumers', c: [[1, names[0]!, [[1, 1.5]]]] }))).toBe('malformed consumers record');
        expect(decodeMeta(encodeMeta({ k: 'dropConsumer', c: 2 ** 32 }))).toBe('malformed dropConsumer record');
      }),
      { numRuns: 500 },
    );
  });

  it('snapshot records written straight from the topics are the bytes encodeMeta writes', () => {
    // Retention encodes snapshots with encodeSnapshot (no intermediate arrays); the format is
    // encodeMeta's, byte for byte, at every msgpack size boundary of counts, ids, offsets and
    // names (fixint/uint8/16/32 and float64 numbers, bin8/16 names, fixarray/array16/array32).
    const edge = fc.constantFrom(0, 1, 0x7f, 0x80, 0xff, 0x100, 0xffff, 0x10000, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1, 2 ** 32, 2 ** 40 + 3, Number.MAX_SAFE_INTEGER);
    const offset = fc.oneof(edge, fc.nat(), fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }));
    const topic = fc.record({ id: fc.oneof(edge.filter((x) => x > 0), fc.integer({ min: 1, max: 2 ** 32 - 1 })), name: fc.oneof(topicName, fc.string({ minLength: 256, maxLength: 300 })), start: offset, cursor: offset });
    const check = (topics: { id: number; name: string; start: number; cursor: number }[], s?: number): void => {
      const t = topics.map((x): [number, string, number, number] => [x.id, x.name, x.start, x.cursor]);
      const expected = encodeMeta(s === undefined ? { k: 'snapshot', t } : { k: 'snapshot', t, s });
      expect(Buffer.from(encodeSnapshot(topics, s)).equals(Buffer.from(expected))).toBe(true);
    };
    fc.assert(
      fc.property(fc.array(topic, { maxLength: 40 }), fc.option(fc.oneof(edge.filter((x) => x > 0), fc.nat()), { nil: undefined }), (topics, s) => check(topics, s)),
      { numRuns: 300 },
    );
    // Array headers past 15 and 65,535 entries.
    for (const n of [15, 16, 65_535, 65_536]) check(Array.from({ length: n }, (_, k) => ({ id: k + 1, name: `t${k}`, start: k, cursor: k })), n);
  });

  it('every meta record kind that carries names keeps a leading U+FEFF without msgpackr\'s native string extractor', () => {
    // msgpackr decodes long strings with a BOM-stripping TextDecoder when its native extractor
    // is absent (an optional dependency), so names must not be msgpack strings in any record
    // kind. The extractor is chosen at import: a child process imports without it.
    const meta = new URL('../dist/shared/format/meta.js', import.meta.url).href;
    const script = `
      const { isDeepStrictEqual } = await import('node:util');
      const { encodeMeta, decodeMeta } = await import(${JSON.stringify(meta)});
      const name = '\\ufeff' + 'n'.repeat(100);
      const records = [
        { k: 'topic', id: 1, name },
        { k: 'topics', t: [[1, name], [2, 'x']] },
        { k: 'snapshot', t: [[1, name, 0, 0]] },
        { k: 'snapshot', s: 3, t: [[1, name, 0, 0]] },
      ];
      process.stdout.write(JSON.stringify(records.map((m) => isDeepStrictEqual(decodeMeta(encodeMeta(m)), m))));
    `;
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], {
      env: { ...process.env, MSGPACKR_NATIVE_ACCELERATION_DISABLED: 'true' },
      encoding: 'utf8',
    });
    expect(JSON.parse(out)).toEqual([true, true, true, true]);
  });

  it('topics named with arbitrary Unicode under an arbitrary key keep their names and entries across reopen', async () => {
    const key = fc.tuple(fc.boolean(), fc.string({ unit: 'binary', minLength: 1, maxLength: 20 })).map(([bom, s]) => (bom ? `\ufeff${s}` : s));
    await fc.assert(
      fc.asyncProperty(key, fc.uniqueArray(topicName, { minLength: 1, maxLength: 6 }), async (k, names) => {
        const dir = ramTempDir();
        // The BOM-less twin of each name is a different topic and must stay one.
        const all = [...new Set([...names, ...names.filter((n) => n.startsWith('\ufeff') && n.length > 1).map((n) => n.slice(1))])];
        const opts = { dir, key: k, shards: 1, blockBytes: 4096, segmentBlocks: 4 } as const;
        const wal = await Walrus.open(opts);
        try {
          all.forEach((n, i) => {
            for (let j = 0; j <= i; j++) wal.append(n, `${i}:${j}`);
          });
        } finally {
          await wal.close();
        }
        const again = await Walrus.open(opts);
        try {
          expect(again.topics().sort()).toEqual([...all].sort());
          for (const [i, n] of all.entries()) {
            const got = [];
            for await (const e of again.iterate(n)) got.push(e.data.toString());
            expect(got).toEqual(Array.from({ length: i + 1 }, (_, j) => `${i}:${j}`));
          }
        } finally {
          await again.close();
        }
        // The key is a different namespace from its BOM-less twin.
        if (k.startsWith('\ufeff') && k.length > 1) expect(sanitizeKey(k)).not.toBe(sanitizeKey(k.slice(1)));
      }),
      { numRuns: 10 },
    );
  }, 120_000);
});
