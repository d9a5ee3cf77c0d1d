/**
 * Generators of the model-based test (test/model.test.ts): the shape of a log (topic count,
 * block and segment sizes, shards, record limit, ring, backend, fsync schedule), topic names
 * from the whole of Unicode, record sizes at and around the limits, and payloads that are
 * cheap to rebuild from (size, seed) so the model stores two numbers per entry, not bytes.
 */
import fc from 'fast-check';
import { FsyncSchedule, type WalrusOptions } from '../dist/index.js';
import { pseudoRandom } from './helpers.js';

/** The documented limit of a topic name (api.md): 255 UTF-8 bytes. */
export const MAX_TOPIC_BYTES = 255;

/**
 * Run sizes. Two budgets of one model: sequences over up to `maxTopics` topics, and a few
 * sequences over many topics (`manyTopics`), which cost seconds each (a clean open of 20,000
 * topics, one request per topic to verify them). `npm test` keeps both small;
 * WALRUS_PROPERTIES_LONG=1 widens every bound.
 */
export interface RunSizes {
  numRuns: number;
  maxCommands: number;
  minTopics: number;
  maxTopics: number;
}

export const LONG = process.env.WALRUS_PROPERTIES_LONG === '1';
export const GENERAL: RunSizes = LONG
  ? { numRuns: 300, maxCommands: 60, minTopics: 1, maxTopics: 20_000 }
  : { numRuns: 15, maxCommands: 20, minTopics: 1, maxTopics: 1_000 };
export const MANY: RunSizes = LONG
  ? { numRuns: 10, maxCommands: 30, minTopics: 5_000, maxTopics: 60_000 }
  : { numRuns: 1, maxCommands: 10, minTopics: 5_000, maxTopics: 20_000 };

export interface ModelConfig {
  topicCount: number;
  /** Drawn names; the first topics use them, the rest derive from them (topicNames). */
  names: string[];
  shards: number;
  blockBytes: number;
  segmentBlocks: number;
  maxRecordBytes: number;
  ringBytes: number;
  backpressureMs: number;
  backend: 'fd' | 'mmap';
  fsync: 'none' | 'each' | 'ms';
}

/** A valid topic name: non-empty, no NUL, no lone surrogate, at most 255 UTF-8 bytes. */
export function validTopic(s: string): boolean {
  return s.length > 0 && !s.includes('\0') && s.isWellFormed() && Buffer.byteLength(s) <= MAX_TOPIC_BYTES;
}

/** `c` repeated, then ASCII padding, to exactly 255 UTF-8 bytes: a name at the limit. */
function atLimit(c: string): string {
  const unit = Buffer.byteLength(c);
  const s = c.repeat(Math.floor(MAX_TOPIC_BYTES / unit));
  return s + 'x'.repeat(MAX_TOPIC_BYTES - Buffer.byteLength(s));
}

/**
 * Topic names from all of Unicode: printable graphemes (combining sequences, emoji), any
 * code point (controls, noncharacters, astral planes), a leading U+FEFF (byte order mark),
 * names of exactly 255 bytes. NUL is removed (the API refuses it; the InvalidTopic command
 * checks that) and 'binary' never produces lone surrogates.
 */
export const nameArb: fc.Arbitrary<string> = fc
  .oneof(
    { weight: 3, arbitrary: fc.string({ unit: 'grapheme', minLength: 1, maxLength: 12 }) },
    { weight: 3, arbitrary: fc.string({ unit: 'binary', minLength: 1, maxLength: 12 }) },
    { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 6 }).map((s) => '\uFEFF' + s) },
    { weight: 1, arbitrary: fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }).map(atLimit) },
  )
  .map((s) => s.replaceAll('\0', ''))
  .filter(validTopic);

/**
 * An integer in [min, max], log-uniform (most runs small); shrinks towards min. Unbiased:
 * fast-check's default bias towards the bounds would make every third run the largest.
 */
function logUniform(min: number, max: number): fc.Arbitrary<number> {
  const span = Math.log(max / min);
  return fc.noBias(fc.integer({ min: 0, max: 1000 })).map((u) => Math.max(min, Math.min(max, Math.round(min * Math.exp((u / 1000) * span)))));
}

export function configArb(sizes: RunSizes): fc.Arbitrary<ModelConfig> {
  return fc
    .record({
      topicCount: logUniform(sizes.minTopics, sizes.maxTopics),
      names: fc.uniqueArray(nameArb, { minLength: 1, maxLength: 10 }),
      shards: fc.integer({ min: 1, max: 4 }),
      blockBytes: fc.constantFrom(4096, 8192, 12288, 65536),
      // 1 is the smallest accepted: every block then opens a segment of its own.
      segmentBlocks: fc.constantFrom(4, 1, 2, 3, 64),
      maxRecordBytes: fc.oneof(fc.nat({ max: 3 * 4096 }), fc.integer({ min: 3 * 4096, max: 1 << 20 }), fc.constant(16 * 1024 * 1024)),
      ringBytes: fc.constantFrom(1 << 16, 4096, 1 << 20),
      backpressureMs: fc.constantFrom(0, 100),
      backend: fc.constantFrom<'fd' | 'mmap'>('fd', 'mmap'),
      fsync: fc.constantFrom<'none' | 'each' | 'ms'>('none', 'each', 'ms'),
    })
    .map((c) => ({
      ...c,
      // While every topic costs a block (issue 11, defect 4), many topics with big blocks
      // would need gigabytes of /dev/shm: many topics get the smallest block.
      blockBytes: c.topicCount > 1000 ? 4096 : c.blockBytes,
    }));
}

export function openOptions(cfg: ModelConfig, dir: string): WalrusOptions {
  const fsync = cfg.fsync === 'none' ? FsyncSchedule.NoFsync : cfg.fsync === 'each' ? FsyncSchedule.SyncEach : FsyncSchedule.milliseconds(5);
  return {
    dir,
    fsync,
    shards: cfg.shards,
    backend: cfg.backend,
    blockBytes: cfg.blockBytes,
    segmentBlocks: cfg.segmentBlocks,
    maxRecordBytes: cfg.maxRecordBytes,
    ringBytes: cfg.ringBytes,
    backpressureMs: cfg.backpressureMs,
  };
}

/** Keeps code points of `s` while the UTF-8 length stays within `bytes`. */
function truncateTo(s: string, bytes: number): string {
  let out = '';
  for (const c of s) {
    if (Buffer.byteLength(out + c) > bytes) break;
    out += c;
  }
  return out;
}

/**
 * The run's `topicCount` distinct names: the drawn ones, then names derived from them (a
 * drawn name, truncated, plus a counter), so every topic carries arbitrary Unicode without
 * drawing tens of thousands of strings.
 */
export function topicNames(cfg: ModelConfig): string[] {
  const out = new Set<string>();
  for (const n of cfg.names) if (out.size < cfg.topicCount) out.add(n);
  for (let i = 0; out.size < cfg.topicCount; i++) {
    const suffix = `\u{1F4E6}${i}`;
    out.add(truncateTo(cfg.names[i % cfg.names.length]!, MAX_TOPIC_BYTES - Buffer.byteLength(suffix)) + suffix);
  }
  return [...out];
}

/** A record size relative to the run's limits, resolved by recordSize(). */
export type SizeSpec = { kind: 'abs'; n: number } | { kind: 'frac'; n: number } | { kind: 'limit'; d: number } | { kind: 'block'; d: number };

export const sizeArb: fc.Arbitrary<SizeSpec> = fc.oneof(
  { weight: 6, arbitrary: fc.nat({ max: 64 }).map((n) => ({ kind: 'abs' as const, n })) },
  { weight: 3, arbitrary: fc.nat({ max: 1000 }).map((n) => ({ kind: 'frac' as const, n })) },
  // At the limit, just under it, and just over it (refused with ERR_WALRUS_RECORD_TOO_LARGE).
  { weight: 2, arbitrary: fc.integer({ min: -3, max: 2 }).map((d) => ({ kind: 'limit' as const, d })) },
  // Around the largest record one block holds (block header 64 B, record header 32 B).
  { weight: 2, arbitrary: fc.integer({ min: -2, max: 2 }).map((d) => ({ kind: 'block' as const, d })) },
);

export function recordSize(s: SizeSpec, cfg: ModelConfig): number {
  switch (s.kind) {
    case 'abs':
      return s.n;
    case 'frac':
      return Math.floor((cfg.maxRecordBytes * s.n) / 1000);
    case 'limit':
      return Math.max(0, cfg.maxRecordBytes + s.d);
    case 'block':
      return Math.max(0, cfg.blockBytes - 96 + s.d);
  }
}

const CHUNK = 65536;

/** The payload of (size, seed): pseudo-random; above 64 KiB a repeated chunk, each copy numbered. */
export function payload(size: number, seed: number): Buffer {
  const first = pseudoRandom(seed, Math.min(size, CHUNK));
  if (size <= CHUNK) return first;
  const b = Buffer.allocUnsafe(size);
  b.fill(first);
  for (let k = 1; k * CHUNK + 4 <= size; k++) b.writeUInt32LE(k, k * CHUNK);
  return b;
}
