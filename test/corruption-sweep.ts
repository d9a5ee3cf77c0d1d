/**
 * The corruption sweep's machinery (used by corruption.test.ts): a small log made by the real
 * engine, then one damaged copy per case, recovered in this process by the worker's own
 * recovery code (ShardStore + recover + readEntries, no worker spawn), and an oracle that
 * classifies each outcome:
 *
 * - `corrupt`: recovery failed with ERR_WALRUS_CORRUPT naming a file of the log and an offset
 *   inside it;
 * - `repaired`: recovery succeeded, counted torn bytes, and everything the oracle requires is
 *   there, byte-exact;
 * - `unaffected`: recovery succeeded with no torn bytes and everything is there (the damage
 *   hit bytes recovery never reads: padding, unused slots, past the used area);
 * - `lostTail` (unsynced logs only): a prefix was recovered, torn bytes counted.
 *
 * Anything else is a failure: wrong bytes returned, an entry missing that a durable log must
 * keep, a gap, half a batch, a cursor that moved, any other exception.
 */
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Walrus, FsyncSchedule } from '../dist/index.js';
import { ShardStore } from '../dist/workers/store/store.js';
import { recover } from '../dist/workers/recovery/index.js';
import { readEntries } from '../dist/workers/read/reader.js';
import { decodeBlockHeader } from '../dist/shared/format/block.js';
import { pseudoRandom } from './helpers.js';

export const BLOCK = 4096;
export const SLOTS = 3;
const SEGMENT_HEADER = 64;
const BLOCK_HEADER = 64;
const RECORD_HEADER = 32;

export type Outcome = 'corrupt' | 'repaired' | 'unaffected' | 'lostTail';

/** A log image: file name -> bytes, plus what a recovery of it must return. */
export interface Fixture {
  name: string;
  files: Map<string, Buffer>;
  /** Every entry appended, per topic (a batch's entries in order). */
  written: Map<string, Buffer[]>;
  /** Whether everything was made durable (a clean close): then nothing may be lost. */
  durable: boolean;
  /** Entry index ranges [first, end) that were appended as one batch, per topic. */
  batches: Map<string, [number, number][]>;
  /** From the undamaged image's recovery: topic -> first stored offset and cursor. */
  baseline: Map<string, { start: number; cursor: number; end: number }>;
  /** Byte ranges [file, from, to) holding headers (segment, block, record). */
  headers: { file: string; from: number; to: number }[];
  /** Per block with free space: where its records end and where the block ends. */
  tails: { file: string; from: number; to: number }[];
}

/** A scratch directory on tmpfs when there is one (fdatasync is free there), removed by `done`. */
export function scratchRoot(): { dir: string; done: () => void } {
  const base = statSync('/dev/shm', { throwIfNoEntry: false })?.isDirectory() ? '/dev/shm' : tmpdir();
  const dir = mkdtempSync(join(base, 'walrus-sweep-'));
  return { dir, done: () => rmSync(dir, { recursive: true, force: true }) };
}

function readImage(dir: string): Map<string, Buffer> {
  const files = new Map<string, Buffer>();
  for (const f of readdirSync(dir).sort()) if (f.endsWith('.seg')) files.set(f, readFileSync(join(dir, f)));
  return files;
}

const entry = (topic: string, i: number): Buffer => pseudoRandom(topic.charCodeAt(0) * 1000 + i, (i * 211) % 700);

/**
 * A durable log, closed cleanly: topics "a" and "b" over a few segments, "a" fully consumed
 * (its segment deleted: trim and snapshot records), a batch in "b", a cursor on "b", sync and
 * close marks. Every meta record kind is in it.
 */
export async function durableFixture(root: string): Promise<Fixture> {
  const dir = join(root, 'durable-src');
  mkdirSync(dir);
  const written = new Map<string, Buffer[]>([
    ['a', []],
    ['b', []],
  ]);
  const batches = new Map<string, [number, number][]>([
    ['a', []],
    ['b', []],
  ]);
  const wal = await Walrus.open({ dir, shards: 1, fsync: FsyncSchedule.NoFsync, blockBytes: BLOCK, segmentBlocks: SLOTS });
  try {
    for (let i = 0; i < 30; i++) {
      const e = entry('a', i);
      written.get('a')!.push(e);
      await wal.appendAndSync('a', e);
    }
    const before = readdirSync(dir).filter((f) => f.endsWith('.seg')).length;
    // Consume "a" whole: its blocks, and the meta blocks beside them, make the oldest segment
    // deletable (trim + snapshot records, then the unlink).
    while ((await wal.batchRead('a', 1 << 20)).length > 0);
    for (let w = 0; w < 200 && readdirSync(dir).filter((f) => f.endsWith('.seg')).length >= before; w++) await new Promise((r) => setTimeout(r, 10));
    const b = [0, 1, 2, 3].map((i) => entry('b', i));
    const first = written.get('b')!.length;
    written.get('b')!.push(...b);
    batches.get('b')!.push([first, first + b.length]);
    wal.batchAppend('b', b);
    for (let i = 4; i < 7; i++) {
      const e = entry('b', i);
      written.get('b')!.push(e);
      await wal.appendAndSync('b', e);
    }
    await wal.readNext('b');
    await wal.readNext('b');
  } finally {
    await wal.close();
  }
  return describeImage('durable', dir, written, batches, true);
}

/**
 * A log as a kill -9 leaves it under NoFsync with nothing ever synced: copied while the
 * instance is open, after a read made the worker write everything. No sync mark: all of it is
 * a torn tail as far as recovery knows.
 */
export async function unsyncedFixture(root: string): Promise<Fixture> {
  const dir = join(root, 'unsynced-src');
  const snap = join(root, 'unsynced-snap');
  mkdirSync(dir);
  mkdirSync(snap);
  const written = new Map<string, Buffer[]>([['t', []]]);
  const batches = new Map<string, [number, number][]>([['t', []]]);
  const wal = await Walrus.open({ dir, shards: 1, fsync: FsyncSchedule.NoFsync, blockBytes: BLOCK, segmentBlocks: SLOTS });
  try {
    for (let i = 0; i < 5; i++) {
      written.get('t')!.push(entry('t', i));
      wal.append('t', entry('t', i));
    }
    const b = [5, 6, 7, 8].map((i) => entry('t', i));
    batches.get('t')!.push([5, 9]);
    written.get('t')!.push(...b);
    wal.batchAppend('t', b);
    for (let i = 9; i < 12; i++) {
      written.get('t')!.push(entry('t', i));
      wal.append('t', entry('t', i));
    }
    for await (const _ of wal.iterate('t'));
    cpSync(dir, snap, { recursive: true, filter: (src) => !src.endsWith('walrus.lock') });
  } finally {
    await wal.close();
  }
  return describeImage('unsynced', snap, written, batches, false);
}

function describeImage(name: string, dir: string, written: Map<string, Buffer[]>, batches: Map<string, [number, number][]>, durable: boolean): Fixture {
  const files = readImage(dir);
  const fx: Fixture = { name, files, written, durable, batches, baseline: new Map(), headers: [], tails: [] };
  // Structure, from the image itself: segment headers, valid block headers, the records
  // each block holds (walked by their length fields), and each block's free tail.
  for (const [file, bytes] of files) {
    fx.headers.push({ file, from: 0, to: SEGMENT_HEADER });
    const slots = (bytes.length - BLOCK) / BLOCK;
    for (let s = 0; s < slots; ) {
      const at = BLOCK + s * BLOCK;
      const h = decodeBlockHeader(bytes.subarray(at, at + BLOCK_HEADER));
      if (!h) {
        s++;
        continue;
      }
      fx.headers.push({ file, from: at, to: at + BLOCK_HEADER });
      const end = at + h.slots * BLOCK;
      let p = at + BLOCK_HEADER;
      while (p + RECORD_HEADER <= end && bytes.readUInt32LE(p) !== 0) {
        fx.headers.push({ file, from: p, to: p + RECORD_HEADER });
        p += (RECORD_HEADER + bytes.readUInt32LE(p + 4) + 7) & ~7;
      }
      if (p < end) fx.tails.push({ file, from: p, to: end });
      s += h.slots;
    }
  }
  const base = recoverImage(fx, join(dir, '..', `${name}-baseline`));
  if (base.kind !== 'ok') throw new Error(`the undamaged ${name} image does not recover: ${base.error}`);
  for (const [topic, r] of base.topics) fx.baseline.set(topic, { start: r.start, cursor: r.cursor, end: r.start + r.entries.length });
  return fx;
}

interface Recovered {
  kind: 'ok';
  torn: number;
  topics: Map<string, { start: number; cursor: number; entries: { offset: number; data: Buffer }[] }>;
}

/**
 * Writes `files` into `dir` (fresh, unless `files` is null: then what is there, as the last
 * recovery left it) and runs recovery and a full read of every topic.
 */
export function recoverImage(fx: Fixture, dir: string, files: Map<string, Buffer> | null = fx.files): Recovered | { kind: 'error'; error: unknown } {
  if (files !== null) {
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir);
    for (const [f, b] of files) writeFileSync(join(dir, f), b);
  }
  const store = new ShardStore(dir, 0, BLOCK, SLOTS);
  try {
    const r = recover(store, () => {});
    const topics: Recovered['topics'] = new Map();
    for (const t of store.topics.values()) {
      if (t.id === 0) continue;
      const out = readEntries(t, t.start, 1e9, 1e12);
      const entries: { offset: number; data: Buffer }[] = [];
      for (let k = 0; k < out.entries.length / 4; k++) {
        const [offset, chunk, start, length] = out.entries.subarray(k * 4, k * 4 + 4);
        entries.push({ offset: offset!, data: Buffer.from(out.data[chunk!]!, start, length) });
      }
      topics.set(t.name, { start: t.start, cursor: t.cursor, entries });
    }
    return { kind: 'ok', torn: r.tornBytes, topics };
  } catch (error) {
    return { kind: 'error', error };
  } finally {
    store.closeFiles();
  }
}

/** Classifies one damaged image; returns the outcome, or a string describing a violation. */
export function judge(fx: Fixture, dir: string, files: Map<string, Buffer>): Outcome | string {
  const r = recoverImage(fx, dir, files);
  if (r.kind === 'error') {
    const e = r.error as { code?: string; file?: string; offset?: number; message?: string };
    if (e.code !== 'ERR_WALRUS_CORRUPT') return `unexpected error ${e.code ?? ''}: ${e.message ?? String(e)}`;
    const name = e.file?.startsWith(dir) ? e.file.slice(dir.length + 1) : undefined;
    const size = name === undefined ? undefined : files.get(name)?.length;
    if (size === undefined) return `ERR_WALRUS_CORRUPT names no file of the log: ${e.file}`;
    if (!Number.isInteger(e.offset) || e.offset! < 0 || e.offset! > size) return `ERR_WALRUS_CORRUPT with offset ${e.offset} outside ${name} (${size} bytes)`;
    return 'corrupt';
  }
  let lost = false;
  for (const [topic, want] of fx.written) {
    const got = r.topics.get(topic);
    const base = fx.baseline.get(topic)!;
    const entries = got?.entries ?? [];
    const start = got?.start ?? 0;
    // Never wrong data: every entry returned is the one written at its offset, densely.
    for (let k = 0; k < entries.length; k++) {
      const e = entries[k]!;
      if (e.offset !== start + k) return `${topic}: offset ${e.offset} where ${start + k} was due`;
      if (!want[e.offset] || Buffer.compare(e.data, want[e.offset]!) !== 0) return `${topic}@${e.offset}: wrong bytes returned`;
    }
    const end = start + entries.length;
    for (const [b0, b1] of fx.batches.get(topic) ?? []) if (end > b0 && end < b1) return `${topic}: half a batch recovered (end ${end} inside [${b0}, ${b1}))`;
    if (fx.durable) {
      // Durable: nothing may go missing silently, and no cursor may move.
      if (start !== base.start || end !== base.end) return `${topic}: durable entries lost silently (recovered [${start}, ${end}) of [${base.start}, ${base.end}))`;
      if ((got?.cursor ?? 0) !== base.cursor) return `${topic}: cursor ${got?.cursor} instead of ${base.cursor}`;
    } else {
      if (start !== 0 || end > want.length) return `${topic}: recovered [${start}, ${end}) of an unsynced log of ${want.length}`;
      if (end < base.end) lost = true;
      if ((got?.cursor ?? 0) > end) return `${topic}: cursor past the recovered end`;
    }
  }
  if (lost && r.torn === 0) return 'unsynced entries dropped without counting torn bytes';
  if (r.torn > 0) {
    // Repaired means repaired: recovery zeroed what it dropped, so a second recovery of the
    // files as the first left them finds nothing torn and the same entries.
    const again = recoverImage(fx, dir, null);
    if (again.kind === 'error') return `second recovery failed: ${(again.error as Error).message}`;
    if (again.torn !== 0) return `second recovery found ${again.torn} torn bytes again`;
    for (const [topic, got] of r.topics) {
      const second = again.topics.get(topic);
      if (second?.start !== got.start || second.entries.length !== got.entries.length || second.cursor !== got.cursor) return `${topic}: second recovery differs`;
    }
  }
  if (lost) return 'lostTail';
  return r.torn > 0 ? 'repaired' : 'unaffected';
}

/** Tallies outcomes; keeps the first few violations with their case names. */
export class Tally {
  readonly counts = new Map<string, number>();
  readonly violations: string[] = [];
  cases = 0;

  add(what: string, result: Outcome | string): void {
    this.cases++;
    const key = result === 'corrupt' || result === 'repaired' || result === 'unaffected' || result === 'lostTail' ? result : 'VIOLATION';
    this.counts.set(key, (this.counts.get(key) ?? 0) + 1);
    if (key === 'VIOLATION' && this.violations.length < 20) this.violations.push(`${what}: ${result}`);
  }

  /**
   * A case whose damage is, by design, indistinguishable from an interrupted segment
   * creation (the last file cut to nothing or to its bare header): counted apart, with what
   * happened.
   */
  addKnownLimit(what: string, result: Outcome | string): void {
    if (result === 'corrupt' || result === 'repaired' || result === 'unaffected' || result === 'lostTail') return this.add(what, result);
    this.cases++;
    const key = 'lastFileCutToHeader';
    this.counts.set(key, (this.counts.get(key) ?? 0) + 1);
  }

  summary(): string {
    return `${this.cases} cases: ${[...this.counts].map(([k, n]) => `${k}=${n}`).join(' ')}`;
  }
}

/** The image with one bit of one file flipped. */
export function flipBit(files: Map<string, Buffer>, file: string, bit: number): Map<string, Buffer> {
  const out = new Map(files);
  const b = Buffer.from(files.get(file)!);
  b[bit >> 3]! ^= 1 << (bit & 7);
  out.set(file, b);
  return out;
}

/** The image with one file cut to `length` bytes. */
export function truncate(files: Map<string, Buffer>, file: string, length: number): Map<string, Buffer> {
  const out = new Map(files);
  out.set(file, files.get(file)!.subarray(0, length));
  return out;
}

/** The image with `garbage` written over one file at `at`. */
export function overwrite(files: Map<string, Buffer>, file: string, at: number, garbage: Buffer): Map<string, Buffer> {
  const out = new Map(files);
  const b = Buffer.from(files.get(file)!);
  garbage.copy(b, at, 0, Math.min(garbage.length, b.length - at));
  out.set(file, b);
  return out;
}

/** Deterministic garbage whose first byte is never zero (so the tail is really there). */
export function pseudoRandomGarbage(seed: number, length: number): Buffer {
  const b = pseudoRandom(seed + 1, length);
  if (length > 0 && b[0] === 0) b[0] = 0xa5;
  return b;
}
