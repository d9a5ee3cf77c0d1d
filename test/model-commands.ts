/**
 * Commands of the model-based test (test/model.test.ts). The model is, per topic, the list
 * of entries appended (as (size, seed), see model-gen.ts) and the cursor; every command does
 * one thing to the real log and to the model and checks the real log's answer.
 */
import { readdirSync } from 'node:fs';
import fc from 'fast-check';
import { expect } from 'vitest';
import { Walrus, type Entry } from '../dist/index.js';
import { type ModelConfig, type SizeSpec, openOptions, payload, recordSize } from './model-gen.js';

export interface Stored {
  size: number;
  seed: number;
}

export interface Model {
  cfg: ModelConfig;
  names: string[];
  entries: Stored[][];
  cursors: number[];
  /** Indices of topics with at least one entry, in the order they got their first. */
  used: number[];
}

export interface Real {
  wal: Walrus;
  dir: string;
}

/** Which topic a command acts on: any of the run's topics, or one that has entries. */
export interface TopicRef {
  used: boolean;
  k: number;
}
export const topicRefArb: fc.Arbitrary<TopicRef> = fc.record({ used: fc.boolean(), k: fc.nat() });

function topicOf(m: Model, ref: TopicRef): number {
  return ref.used && m.used.length > 0 ? m.used[ref.k % m.used.length]! : ref.k % m.names.length;
}

function codeOf(e: unknown): unknown {
  return (e as { code?: unknown }).code;
}

function expectSame(got: Entry, want: Stored | undefined, offset: number): void {
  expect(got.offset).toBe(offset);
  expect(want).toBeDefined();
  expect(got.data.length).toBe(want!.size);
  expect(Buffer.compare(got.data, payload(want!.size, want!.seed))).toBe(0);
}

/** Runs an append, waiting for ring room after ERR_WALRUS_BACKPRESSURE (nothing was written then). */
async function withRoom<T>(wal: Walrus, f: () => T): Promise<T> {
  for (let tries = 0; ; tries++) {
    try {
      return f();
    } catch (e) {
      if (codeOf(e) !== 'ERR_WALRUS_BACKPRESSURE' || tries > 1000) throw e;
      await wal.drain();
    }
  }
}

function record(m: Model, t: number, items: Stored[]): void {
  if (items.length === 0) return;
  if (m.entries[t]!.length === 0) m.used.push(t);
  m.entries[t]!.push(...items);
}

export class Append implements fc.AsyncCommand<Model, Real> {
  constructor(
    readonly ref: TopicRef,
    readonly size: SizeSpec,
    readonly seed: number,
  ) {}
  check = () => true;
  async run(m: Model, r: Real): Promise<void> {
    const t = topicOf(m, this.ref);
    const size = recordSize(this.size, m.cfg);
    const data = payload(size, this.seed);
    if (size > m.cfg.maxRecordBytes) {
      expect(() => r.wal.append(m.names[t]!, data)).toThrow(expect.objectContaining({ code: 'ERR_WALRUS_RECORD_TOO_LARGE' }));
      return;
    }
    expect(await withRoom(r.wal, () => r.wal.append(m.names[t]!, data))).toBe(m.entries[t]!.length);
    record(m, t, [{ size, seed: this.seed }]);
  }
  toString = () => `append(${JSON.stringify(this.ref)}, ${JSON.stringify(this.size)})`;
}

export class BatchAppend implements fc.AsyncCommand<Model, Real> {
  constructor(
    readonly ref: TopicRef,
    readonly sizes: SizeSpec[],
    readonly seed: number,
    /** Appends 2,001 entries instead: over the batch limit, refused as a whole. */
    readonly overCount: boolean,
  ) {}
  check = () => true;
  async run(m: Model, r: Real): Promise<void> {
    const t = topicOf(m, this.ref);
    const name = m.names[t]!;
    if (this.overCount) {
      const many = Array.from({ length: 2001 }, () => Buffer.alloc(0));
      expect(() => r.wal.batchAppend(name, many)).toThrow(expect.objectContaining({ code: 'ERR_WALRUS_BATCH_LIMIT' }));
      return;
    }
    const items = this.sizes.map((s, k) => ({ size: recordSize(s, m.cfg), seed: this.seed + k }));
    const batch = items.map((s) => payload(s.size, s.seed));
    if (items.some((s) => s.size > m.cfg.maxRecordBytes)) {
      // One entry over the limit: nothing of the batch is written.
      expect(() => r.wal.batchAppend(name, batch)).toThrow(expect.objectContaining({ code: 'ERR_WALRUS_RECORD_TOO_LARGE' }));
      return;
    }
    expect(await withRoom(r.wal, () => r.wal.batchAppend(name, batch))).toBe(m.entries[t]!.length);
    record(m, t, items);
  }
  toString = () => (this.overCount ? `batchAppend(${JSON.stringify(this.ref)}, 2001 entries)` : `batchAppend(${JSON.stringify(this.ref)}, ${JSON.stringify(this.sizes)})`);
}

/** One small record appended to each of `count` topics from `start` on (all topics for count 0). */
export class Spread implements fc.AsyncCommand<Model, Real> {
  constructor(
    readonly start: number,
    readonly count: number,
    readonly size: number,
    readonly seed: number,
  ) {}
  check = () => true;
  async run(m: Model, r: Real): Promise<void> {
    const n = m.names.length;
    const count = this.count === 0 ? n : Math.min(this.count, n);
    for (let i = 0; i < count; i++) {
      const t = (this.start + i) % n;
      const item = { size: Math.min(this.size, m.cfg.maxRecordBytes), seed: this.seed + i };
      const data = payload(item.size, item.seed);
      expect(await withRoom(r.wal, () => r.wal.append(m.names[t]!, data))).toBe(m.entries[t]!.length);
      record(m, t, [item]);
    }
  }
  toString = () => `spread(start ${this.start}, ${this.count === 0 ? 'every topic' : `${this.count} topics`}, ${this.size} B)`;
}

export class ReadNext implements fc.AsyncCommand<Model, Real> {
  constructor(
    readonly ref: TopicRef,
    readonly checkpoint: boolean,
  ) {}
  check = () => true;
  async run(m: Model, r: Real): Promise<void> {
    const t = topicOf(m, this.ref);
    const c = m.cursors[t]!;
    const got = await r.wal.readNext(m.names[t]!, this.checkpoint);
    if (c >= m.entries[t]!.length) expect(got).toBeNull();
    else {
      expectSame(got!, m.entries[t]![c], c);
      if (this.checkpoint) m.cursors[t] = c + 1;
    }
  }
  toString = () => `readNext(${JSON.stringify(this.ref)}, ${this.checkpoint})`;
}

/** batchRead's contract: from the cursor, within maxBytes unless one entry alone exceeds it, as many as fit (up to 2,000). */
async function batchReadChecked(m: Model, r: Real, t: number, maxBytes: number, checkpoint: boolean): Promise<number> {
  const c = m.cursors[t]!;
  const list = m.entries[t]!;
  const got = await r.wal.batchRead(m.names[t]!, maxBytes, checkpoint);
  if (c >= list.length) expect(got).toEqual([]);
  else expect(got.length).toBeGreaterThanOrEqual(1);
  let bytes = 0;
  got.forEach((e, k) => {
    expectSame(e, list[c + k], c + k);
    bytes += e.data.length;
  });
  if (got.length > 1) expect(bytes).toBeLessThanOrEqual(maxBytes);
  const next = list[c + got.length];
  if (next !== undefined && got.length < 2000) expect(bytes + next.size).toBeGreaterThan(maxBytes);
  if (checkpoint) m.cursors[t] = c + got.length;
  return got.length;
}

export class BatchRead implements fc.AsyncCommand<Model, Real> {
  constructor(
    readonly ref: TopicRef,
    readonly maxBytes: number,
    readonly checkpoint: boolean,
  ) {}
  check = () => true;
  async run(m: Model, r: Real): Promise<void> {
    await batchReadChecked(m, r, topicOf(m, this.ref), this.maxBytes, this.checkpoint);
  }
  toString = () => `batchRead(${JSON.stringify(this.ref)}, ${this.maxBytes}, ${this.checkpoint})`;
}

/** Runs `f` over `items` with at most `width` in flight (reads of distinct topics may overlap). */
async function pool<T>(items: readonly T[], width: number, f: (x: T) => Promise<void>): Promise<void> {
  let next = 0;
  const lane = async () => {
    while (next < items.length) await f(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(width, items.length) }, lane));
}

/** Consumes every topic to its end with checkpointing batchReads. */
export class ConsumeAll implements fc.AsyncCommand<Model, Real> {
  constructor(readonly maxBytes: number) {}
  check = () => true;
  async run(m: Model, r: Real): Promise<void> {
    await pool(m.used, 32, async (t) => {
      while (m.cursors[t]! < m.entries[t]!.length) await batchReadChecked(m, r, t, this.maxBytes, true);
    });
  }
  toString = () => `consumeAll(${this.maxBytes})`;
}

export class Iterate implements fc.AsyncCommand<Model, Real> {
  constructor(
    readonly ref: TopicRef,
    /** Offset relative to the topic's length: from = max(0, length - back). */
    readonly back: number,
  ) {}
  check = () => true;
  async run(m: Model, r: Real): Promise<void> {
    const t = topicOf(m, this.ref);
    const list = m.entries[t]!;
    const from = Math.max(0, list.length - this.back);
    const seen: Entry[] = [];
    for await (const e of r.wal.iterate(m.names[t]!, from)) seen.push(e);
    // Entries before the cursor may be deleted with their segment: the replay then starts at
    // the first stored one. Nothing at or after the cursor is ever missing.
    const first = seen.length > 0 ? seen[0]!.offset : list.length;
    expect(first).toBeGreaterThanOrEqual(Math.min(from, list.length));
    expect(first).toBeLessThanOrEqual(Math.max(from, m.cursors[t]!));
    expect(first + seen.length).toBe(Math.max(first, list.length));
    seen.forEach((e, k) => expectSame(e, list[first + k], first + k));
  }
  toString = () => `iterate(${JSON.stringify(this.ref)}, length - ${this.back})`;
}

export class Sync implements fc.AsyncCommand<Model, Real> {
  check = () => true;
  async run(_m: Model, r: Real): Promise<void> {
    await r.wal.sync();
  }
  toString = () => 'sync';
}

/** Segment files per shard (docs/FORMAT.md, "Directory": sNNN-SSSS….seg). */
export function segmentsPerShard(dir: string): Map<number, number> {
  const out = new Map<number, number>();
  for (const f of readdirSync(dir)) {
    const m = /^s(\d+)-\d+\.seg$/.exec(f);
    if (m) out.set(Number(m[1]), (out.get(Number(m[1])) ?? 0) + 1);
  }
  return out;
}

function allConsumed(m: Model): boolean {
  return m.used.every((t) => m.cursors[t] === m.entries[t]!.length);
}

/**
 * Once everything is consumed, every segment but the one being written and the preallocated
 * spare is deletable (docs/ARCHITECTURE.md, "Deleting consumed segments"): waits for that
 * count in the directory. The deadline only bounds a failure; the event takes milliseconds.
 */
async function waitForDeletions(dir: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const counts = segmentsPerShard(dir);
    if ([...counts.values()].every((n) => n <= 2)) return;
    if (Date.now() > deadline) throw new Error(`consumed segments were not deleted: segment files per shard ${JSON.stringify([...counts])}`);
    await new Promise((res) => setTimeout(res, 5));
  }
}

export class WaitDeleted implements fc.AsyncCommand<Model, Real> {
  check = (m: Readonly<Model>) => allConsumed(m as Model);
  async run(_m: Model, r: Real): Promise<void> {
    await waitForDeletions(r.dir);
  }
  toString = () => 'waitDeleted';
}

/**
 * After a clean close and open: nothing torn, topics() is exactly the topics with entries,
 * every entry from the first stored one (at or before the cursor) to the end reads back,
 * and the cursor is where the model has it.
 */
export async function verifyAll(m: Model, r: Real): Promise<void> {
  const st = r.wal.stats();
  expect(st.recoveredTornBytes).toBe(0);
  expect(st.recoveredClean).toBe(true);
  const want = m.used.map((t) => m.names[t]!).sort();
  expect(r.wal.topics().sort()).toEqual(want);
  await pool(m.used, 32, async (t) => {
    const name = m.names[t]!;
    const list = m.entries[t]!;
    const c = m.cursors[t]!;
    const seen: Entry[] = [];
    for await (const e of r.wal.iterate(name)) seen.push(e);
    const first = seen.length > 0 ? seen[0]!.offset : list.length;
    expect(first, `first stored entry of topic ${JSON.stringify(name)}`).toBeLessThanOrEqual(c);
    expect(first + seen.length, `end of topic ${JSON.stringify(name)}`).toBe(list.length);
    seen.forEach((e, k) => expectSame(e, list[first + k], first + k));
    const peek = await r.wal.readNext(name, false);
    if (c >= list.length) expect(peek).toBeNull();
    else expectSame(peek!, list[c], c);
  });
}

/** `cycles` clean close/open cycles, each verified; with `wait`, deletions finish in between. */
export class Reopen implements fc.AsyncCommand<Model, Real> {
  constructor(
    readonly cycles: number,
    readonly wait: boolean,
  ) {}
  check = () => true;
  async run(m: Model, r: Real): Promise<void> {
    for (let i = 0; i < this.cycles; i++) {
      await r.wal.close();
      r.wal = await Walrus.open(openOptions(m.cfg, r.dir));
      await verifyAll(m, r);
      if (this.wait && allConsumed(m)) await waitForDeletions(r.dir);
    }
  }
  toString = () => `reopen(${this.cycles} cycles${this.wait ? ', waiting for deletions' : ''})`;
}

export type InvalidKind = 'empty' | 'nul' | 'surrogate' | 'long';
export const INVALID_NAMES: Record<InvalidKind, string> = {
  empty: '',
  nul: 'a\0b',
  surrogate: 'x\uD800y',
  long: '\u00E9'.repeat(128),
};

/** Every entry point refuses an invalid name with ERR_WALRUS_INVALID_TOPIC and changes nothing. */
export class InvalidTopic implements fc.AsyncCommand<Model, Real> {
  constructor(
    readonly kind: InvalidKind,
    readonly op: 'append' | 'batchAppend' | 'readNext' | 'batchRead' | 'iterate',
  ) {}
  check = () => true;
  async run(_m: Model, r: Real): Promise<void> {
    const name = INVALID_NAMES[this.kind];
    const refused = expect.objectContaining({ code: 'ERR_WALRUS_INVALID_TOPIC' });
    switch (this.op) {
      case 'append':
        expect(() => r.wal.append(name, 'x')).toThrow(refused);
        return;
      case 'batchAppend':
        expect(() => r.wal.batchAppend(name, ['x'])).toThrow(refused);
        return;
      case 'readNext':
        await expect(r.wal.readNext(name)).rejects.toThrow(refused);
        return;
      case 'batchRead':
        await expect(r.wal.batchRead(name, 100)).rejects.toThrow(refused);
        return;
      case 'iterate':
        expect(() => r.wal.iterate(name)).toThrow(refused);
        return;
    }
  }
  toString = () => `invalidTopic(${this.kind}, ${this.op})`;
}
