/**
 * The command line (src/cli/): every command run as a child process against logs written by
 * Walrus itself, --json output checked field by field, exit codes, and that verify, inspect
 * and dump never change a byte, a file or an mtime of the log they read.
 */
import { execFile } from 'node:child_process';
import { copyFileSync, cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { FsyncSchedule, Walrus } from '../dist/index.js';
import { lockForReading } from '../dist/cli/log.js';
import { recover, scanShard } from '../dist/workers/recovery/index.js';
import { ShardStore } from '../dist/workers/store/store.js';
import { Progress } from '../dist/cli/output.js';
import { collect, pseudoRandom, tempDir } from './helpers.js';
import type { InspectReport } from '../dist/cli/inspect.js';
import type { VerifyReport } from '../dist/cli/verify.js';

const CLI = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));
const GEOMETRY = { blockBytes: 4096, segmentBlocks: 4 };

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function cli(...args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      const code = err ? ((err as { code?: unknown }).code as number) : 0;
      resolve({ code: typeof code === 'number' ? code : -1, stdout, stderr });
    });
  });
}

async function cliJson<T>(...args: string[]): Promise<{ code: number; doc: T; stderr: string }> {
  const r = await cli(...args, '--json');
  let doc: T;
  try {
    doc = JSON.parse(r.stdout) as T;
  } catch {
    throw new Error(`not JSON (exit ${r.code}): ${r.stdout}\n${r.stderr}`);
  }
  return { code: r.code, doc, stderr: r.stderr };
}

/** Every file's bytes and mtime, and the directory's own mtime: what must not change. */
function fingerprint(dir: string): Map<string, string> {
  const m = new Map<string, string>();
  m.set('.', String(statSync(dir).mtimeMs));
  for (const f of readdirSync(dir).sort()) {
    const p = join(dir, f);
    m.set(f, `${statSync(p).mtimeMs}:${readFileSync(p).toString('base64')}`);
  }
  return m;
}

const segFiles = (dir: string): string[] => readdirSync(dir).filter((f) => f.endsWith('.seg')).sort();

/** Bytes of the file up to its last non-zero byte. */
function usedLength(path: string): number {
  const b = readFileSync(path);
  let e = b.length;
  while (e > 0 && b[e - 1] === 0) e--;
  return e;
}

const ORDERS = 200;
const USERS = 120;
const EVENTS = ['e0', 'e1-a-bit-longer', 'e2'];

/** Several topics over 2 shards, rotated segments, a batch and cursors; closed cleanly. */
async function makeLog(dir: string, key?: string): Promise<void> {
  const wal = await Walrus.open({ dir, shards: 2, ...GEOMETRY, ...(key === undefined ? {} : { key }) });
  for (let i = 0; i < ORDERS; i++) wal.append('orders', JSON.stringify({ i, pad: 'x'.repeat(i % 90) }));
  for (let i = 0; i < USERS; i++) wal.append('users', pseudoRandom(i + 1, 40 + (i % 50)));
  wal.batchAppend('events', EVENTS);
  for (let i = 0; i < 5; i++) await wal.readNext('orders');
  await wal.readNext('users');
  await wal.close();
}

interface DumpDoc {
  dir: string;
  topic: string;
  shard: number;
  start: number;
  end: number;
  from: number;
  format: string;
  entries: { offset: number; bytes: number; data: unknown }[];
  count: number;
  next: number;
}

describe('inspect', () => {
  it('reports topics, cursors, segments and totals of a closed log, field by field', async () => {
    const dir = tempDir();
    await makeLog(dir);
    const { code, doc } = await cliJson<InspectReport>('inspect', dir);
    expect(code).toBe(0);
    expect(doc.dir).toBe(dir);
    expect(doc.live).toBe(false);
    expect(doc.formatVersion).toBe(2);
    expect(doc.topics.map((t) => t.name)).toEqual(['events', 'orders', 'users']);
    const want = { events: [EVENTS.length, 0], orders: [ORDERS, 5], users: [USERS, 1] } as const;
    for (const t of doc.topics) {
      const [entries, cursor] = want[t.name as keyof typeof want];
      expect(t).toMatchObject({ start: 0, end: entries, entries, cursor, cursorRecorded: cursor, unread: entries - cursor, durableMark: entries });
      expect([0, 1]).toContain(t.shard);
      expect(t.id).toBeGreaterThan(0);
      // 'events' (three small entries) lives in shared blocks only (format 2); the others
      // outgrow the shared limit (1 KiB with 4 KiB slots) and have blocks of their own.
      if (t.name === 'events') expect(t.blocks).toBe(0);
      else expect(t.blocks).toBeGreaterThan(0);
      expect(t.recordBytes).toBeGreaterThanOrEqual(entries * 32);
    }
    // orders spans several 4 KiB blocks, so its shard rotated segments.
    expect(doc.topics.find((t) => t.name === 'orders')!.blocks).toBeGreaterThan(4);
    const files = segFiles(dir);
    expect(doc.segments.map((s) => s.file.slice(dir.length + 1)).sort()).toEqual(files);
    for (const s of doc.segments) {
      expect(s.bytes).toBe(statSync(s.file).size);
      expect(s.blockBytes).toBe(4096);
      expect(s.slots).toBe(4);
      expect(s.usedSlots).toBeLessThanOrEqual(s.slots);
      expect(s.file).toMatch(new RegExp(`s00${s.shard}-0*${s.seq}\\.seg$`));
      // The last segment of each shard takes new blocks; the others are sealed.
      const last = Math.max(...doc.segments.filter((x) => x.shard === s.shard).map((x) => x.seq));
      expect(s.state).toBe(s.seq === last ? 'active' : 'sealed');
    }
    expect(doc.segments.filter((s) => s.state === 'sealed').length).toBeGreaterThan(1);
    // Blocks per topic across segments add up to each topic's block count.
    for (const t of doc.topics) {
      const sum = doc.segments.filter((s) => s.shard === t.shard).reduce((n, s) => n + (s.blocks.find((b) => b.topic === t.name)?.blocks ?? 0), 0);
      expect(sum).toBe(t.blocks);
    }
    expect(doc.shards.map((s) => s.shard)).toEqual([0, 1]);
    for (const s of doc.shards) {
      expect(s).toMatchObject({ cleanShutdown: true, tornBytes: 0, corruptions: 0 });
      expect(s.segments).toBe(doc.segments.filter((x) => x.shard === s.shard).length);
      expect(s.topics).toBe(doc.topics.filter((x) => x.shard === s.shard).length);
      expect(s.metaRecords).toBeGreaterThan(s.topics);
    }
    expect(doc.totals).toEqual({
      shards: 2,
      topics: 3,
      entries: ORDERS + USERS + EVENTS.length,
      segments: files.length,
      bytes: files.reduce((n, f) => n + statSync(join(dir, f)).size, 0),
      tornBytes: 0,
      corruptions: 0,
    });
  });

  it('shows named consumers with their committed positions and lag', async () => {
    const dir = tempDir();
    await makeLog(dir);
    const wal = await Walrus.open({ dir, shards: 2, ...GEOMETRY });
    try {
      await wal.consumer('audit').fetch('orders', { maxEntries: 30 });
      await wal.consumer('audit').fetch('users', { maxEntries: 2 });
      await wal.consumer('forwarder').seek('orders', 150);
    } finally {
      await wal.close();
    }
    const { doc } = await cliJson<InspectReport>('inspect', dir);
    expect(doc.consumers.map(({ consumer, topic, committed, lag }) => ({ consumer, topic, committed, lag }))).toEqual([
      { consumer: 'audit', topic: 'orders', committed: 30, lag: ORDERS - 30 },
      { consumer: 'audit', topic: 'users', committed: 2, lag: USERS - 2 },
      { consumer: 'forwarder', topic: 'orders', committed: 150, lag: ORDERS - 150 },
    ]);
    // The default consumer's cursors are the topics' own, untouched.
    expect(doc.topics.find((t) => t.name === 'orders')!.cursor).toBe(5);
    const text = (await cli('inspect', dir)).stdout;
    expect(text).toContain('named consumers (2)');
    expect(text).toMatch(/"forwarder"\s+"orders"\s+\d\s+150\s+50/);
  });

  it('prints a human-readable summary by default', async () => {
    const dir = tempDir();
    await makeLog(dir);
    const r = await cli('inspect', dir);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
    expect(r.stdout).toContain(`walrus log in ${dir} (closed cleanly)`);
    expect(r.stdout).toMatch(/"orders"\s+\d\s+200\s+0\.\.199\s+5\s+195\s+200/);
    expect(r.stdout).toContain('totals: 3 topic(s), 323 entries');
    expect(r.stdout).toContain('active');
  });

  it('finds a namespace by --key', async () => {
    const dir = tempDir();
    await makeLog(dir, 'tenant/a b');
    expect(segFiles(dir)).toEqual([]);
    const { code, doc } = await cliJson<InspectReport>('inspect', dir, '--key', 'tenant/a b');
    expect(code).toBe(0);
    expect(doc.totals.entries).toBe(ORDERS + USERS + EVENTS.length);
    expect((await cli('inspect', dir)).code).toBe(66);
  });
});

describe('verify', () => {
  it('passes a clean log with exit 0 and counts what it checked', async () => {
    const dir = tempDir();
    await makeLog(dir);
    const { code, doc, stderr } = await cliJson<VerifyReport>('verify', dir);
    expect(code).toBe(0);
    expect(stderr).toBe('');
    expect(doc).toMatchObject({ dir, status: 'clean', exitCode: 0, cleanShutdown: true, torn: [], tornBytes: 0, corruption: [], notes: [] });
    expect(doc.scanned).toMatchObject({ shards: 2, segments: segFiles(dir).length, topics: 3, entries: ORDERS + USERS + EVENTS.length });
    expect(doc.scanned.metaRecords).toBeGreaterThan(3);
    expect(doc.scanned.bytesRead).toBeGreaterThan(0);
    const human = await cli('verify', dir);
    expect(human.code).toBe(0);
    expect(human.stdout).toContain('result: clean (exit 0)');
  });

  /**
   * What a crash leaves in a preallocated segment: the bytes from `cut` on never reached the
   * file, so they read as zeros (a shorter file is corruption, not a torn tail: recovery
   * checks a segment's size against its header).
   */
  function zeroFrom(path: string, cut: number): void {
    const b = readFileSync(path);
    b.fill(0, cut);
    writeFileSync(path, b);
  }

  /**
   * A crash after a sync: the first entries durable (a sync mark covers them), the rest
   * written but never synced, copied while the instance is open (as kill -9 leaves it).
   */
  async function crashedCopy(): Promise<{ snap: string; seg: string; synced: number; total: number }> {
    const dir = tempDir();
    const snap = tempDir();
    // 16 slots per segment: the few blocks used stay under half of it, so no spare segment.
    const wal = await Walrus.open({ dir, shards: 1, fsync: FsyncSchedule.NoFsync, blockBytes: 4096, segmentBlocks: 16 });
    try {
      for (let i = 0; i < 10; i++) wal.append('t', `durable-${i}`);
      await wal.sync();
      for (let i = 0; i < 6; i++) wal.append('t', `unsynced-${i}`);
      // A read makes the worker write everything appended before it.
      expect((await collect(wal.iterate('t'))).length).toBe(16);
      for (const f of segFiles(dir)) copyFileSync(join(dir, f), join(snap, f));
    } finally {
      await wal.close();
    }
    const segs = segFiles(snap);
    expect(segs.length).toBe(1);
    return { snap, seg: join(snap, segs[0]!), synced: 10, total: 16 };
  }

  it('reports a torn tail (file, offset, bytes) with exit 1, and recovery truncates exactly that', async () => {
    const { snap, seg, synced, total } = await crashedCopy();
    const used = usedLength(seg);
    const bytes = readFileSync(seg);
    const lastRecord = bytes.lastIndexOf(Buffer.from(`unsynced-5`));
    expect(lastRecord).toBeGreaterThan(bytes.indexOf(Buffer.from('durable-9')));
    zeroFrom(seg, lastRecord + 3);
    const before = fingerprint(snap);
    const { code, doc } = await cliJson<VerifyReport>('verify', snap);
    expect(code).toBe(1);
    expect(doc.status).toBe('torn');
    expect(doc.exitCode).toBe(1);
    expect(doc.corruption).toEqual([]);
    expect(doc.torn.length).toBe(1);
    const t = doc.torn[0]!;
    expect(t.file).toBe(seg);
    // The torn range is the cut record: from its header (32 bytes before its payload) to the cut.
    expect(t.offset).toBe(lastRecord - 32);
    expect(t.bytes).toBe(lastRecord + 3 - t.offset);
    expect(t.reason).toContain('after the last valid record');
    expect(doc.tornBytes).toBe(t.bytes);
    expect(doc.scanned.entries).toBe(total - 1);
    expect(used).toBeGreaterThan(lastRecord);
    const human = await cli('verify', snap);
    expect(human.code).toBe(1);
    expect(human.stdout).toContain(`${seg} at byte offset ${t.offset}: ${t.bytes} bytes`);
    expect(fingerprint(snap)).toEqual(before);

    // verify predicted what open does: the same torn bytes, the same entries recovered.
    const wal = await Walrus.open({ dir: snap, shards: 1, blockBytes: 4096, segmentBlocks: 16 });
    try {
      expect(wal.stats().recoveredTornBytes).toBe(doc.tornBytes);
      const got = await collect(wal.iterate('t'));
      expect(got.length).toBe(total - 1);
      expect(got.length).toBeGreaterThanOrEqual(synced);
    } finally {
      await wal.close();
    }
    expect((await cli('verify', snap)).code).toBe(0);
  });

  it('the text header of a log not closed cleanly reads as one parenthesis', async () => {
    const { snap } = await crashedCopy();
    const r = await cli('inspect', snap);
    expect(r.code).toBe(0);
    expect(r.stdout.split('\n')[0]).toBe(`walrus log in ${snap} (not closed cleanly: the next open recovers it)`);
  });

  it('inspect of a torn or corrupt log exits 0 and counts the torn bytes and corruptions', async () => {
    const { snap, seg } = await crashedCopy();
    const bytes = readFileSync(seg);
    zeroFrom(seg, bytes.lastIndexOf(Buffer.from('unsynced-5')) + 3);
    const torn = await cliJson<InspectReport>('inspect', snap);
    expect(torn.code).toBe(0);
    const ver = await cliJson<VerifyReport>('verify', snap);
    expect(torn.doc.totals.tornBytes).toBe(ver.doc.tornBytes);
    expect(torn.doc.shards[0]).toMatchObject({ cleanShutdown: false, tornBytes: ver.doc.tornBytes, corruptions: 0 });
    expect(torn.doc.topics[0]).toMatchObject({ name: 't', entries: 15, end: 15 });
    // A bit flipped in a synced entry: corruption, and dump shows what precedes it, with a warning.
    const at = readFileSync(seg).indexOf(Buffer.from('durable-4'));
    const b = readFileSync(seg);
    b[at]! ^= 0x04;
    writeFileSync(seg, b);
    const bad = await cliJson<InspectReport>('inspect', snap);
    expect(bad.code).toBe(0);
    expect(bad.doc.totals.corruptions).toBe(1);
    expect(bad.doc.topics[0]).toMatchObject({ entries: 4, durableMark: 10 });
    const dump = await cli('dump', snap, 't');
    expect(dump.code).toBe(0);
    expect(dump.stdout).toBe([0, 1, 2, 3].map((i) => `${i}\t9\t"durable-${i}"\n`).join(''));
    expect(dump.stderr).toContain('1 corruption(s) of durable data');
  });

  it('reports garbage after the last record as a torn tail', async () => {
    const { snap, seg } = await crashedCopy();
    const used = usedLength(seg);
    const bytes = readFileSync(seg);
    const garbage = pseudoRandom(7, 100);
    garbage.copy(bytes, used + 8);
    writeFileSync(seg, bytes);
    const { code, doc } = await cliJson<VerifyReport>('verify', snap);
    expect(code).toBe(1);
    expect(doc.torn).toEqual([{ file: seg, offset: expect.any(Number), bytes: expect.any(Number), reason: expect.any(String) }]);
    // Starts at the end of the last record (8-aligned, at or before the zeros before the garbage).
    expect(doc.torn[0]!.offset).toBeLessThanOrEqual(used + 8);
    expect(doc.torn[0]!.offset).toBeGreaterThan(used - 8);
    expect(doc.torn[0]!.offset + doc.torn[0]!.bytes).toBe(used + 8 + garbage.length - (garbage.at(-1) === 0 ? 1 : 0));
  });

  it('reports a flipped bit in durable data as corruption with exit 2, naming file and offset, as open does', async () => {
    const dir = tempDir();
    await makeLog(dir);
    // A payload byte of an orders entry in a sealed segment.
    const needle = Buffer.from('{"i":42,');
    const seg = segFiles(dir)
      .map((f) => join(dir, f))
      .find((p) => readFileSync(p).includes(needle))!;
    const bytes = readFileSync(seg);
    const at = bytes.indexOf(needle) + 3;
    bytes[at]! ^= 0x10;
    writeFileSync(seg, bytes);
    const before = fingerprint(dir);
    const { code, doc } = await cliJson<VerifyReport>('verify', dir);
    expect(code).toBe(2);
    expect(doc.status).toBe('corrupt');
    expect(doc.exitCode).toBe(2);
    expect(doc.corruption.length).toBe(1);
    const c = doc.corruption[0]!;
    expect(c.file).toBe(seg);
    expect(c.offset).toBeLessThanOrEqual(at);
    expect(c.offset).toBeGreaterThan(at - 200);
    expect(c.message).toContain('"orders" recovers 42 entries but 200 had been made durable');
    const human = await cli('verify', dir);
    expect(human.code).toBe(2);
    expect(human.stdout).toContain(`${seg} at byte offset ${c.offset}`);
    expect(human.stdout).toContain('result: CORRUPT (exit 2)');
    expect(fingerprint(dir)).toEqual(before);
    // The same file and offset as the error open fails with.
    await expect(Walrus.open({ dir, shards: 2, ...GEOMETRY })).rejects.toMatchObject({ code: 'ERR_WALRUS_CORRUPT', file: seg, offset: c.offset });
  });

  it('goes on past the first corruption: a flipped bit in each of two topics gives two reports', async () => {
    const dir = tempDir();
    await makeLog(dir);
    for (const needle of [Buffer.from('{"i":17,'), Buffer.from('e1-a-bit')]) {
      const seg = segFiles(dir)
        .map((f) => join(dir, f))
        .find((p) => readFileSync(p).includes(needle))!;
      const bytes = readFileSync(seg);
      bytes[bytes.indexOf(needle) + 1]! ^= 0x01;
      writeFileSync(seg, bytes);
    }
    const { code, doc } = await cliJson<VerifyReport>('verify', dir);
    expect(code).toBe(2);
    expect(doc.corruption.map((c) => c.message.match(/topic "(\w+)"/)?.[1]).sort()).toEqual(['events', 'orders']);
  });

  it('notes an interrupted segment creation without removing the file', async () => {
    const { snap, seg } = await crashedCopy();
    const next = seg.replace(/(\d{20})\.seg$/, (_, n: string) => `${String(Number(n) + 1).padStart(20, '0')}.seg`);
    writeFileSync(next, Buffer.alloc(8192));
    const before = fingerprint(snap);
    const { code, doc } = await cliJson<VerifyReport>('verify', snap);
    expect(code).toBe(0);
    expect(doc.notes).toEqual([expect.stringContaining(`${next}: segment creation was interrupted`)]);
    const ins = await cliJson<InspectReport>('inspect', snap);
    expect(ins.doc.segments.find((s) => s.file === next)?.state).toBe('abandoned');
    expect(fingerprint(snap)).toEqual(before);
    expect(existsSync(next)).toBe(true);
  });
});

describe('verify agrees with open', () => {
  it('on random bit flips and truncations: the same first corruption (file, offset) or the same torn bytes', async () => {
    // A crashed log: several topics and segments, a synced prefix, an unsynced rest.
    const dir = tempDir();
    const snap = tempDir();
    const wal = await Walrus.open({ dir, shards: 1, fsync: FsyncSchedule.NoFsync, ...GEOMETRY });
    try {
      for (let i = 0; i < 60; i++) wal.append(`t${i % 3}`, pseudoRandom(i + 1, 20 + ((i * 37) % 300)));
      wal.batchAppend('t1', ['b0', 'b1', 'b2']);
      await wal.readNext('t0');
      await wal.sync();
      for (let i = 0; i < 30; i++) wal.append(`t${i % 3}`, pseudoRandom(i + 100, 20 + ((i * 53) % 300)));
      expect((await collect(wal.iterate('t2'))).length).toBe(30);
      for (const f of segFiles(dir)) copyFileSync(join(dir, f), join(snap, f));
    } finally {
      await wal.close();
    }
    const files = segFiles(snap);
    expect(files.length).toBeGreaterThanOrEqual(2);
    const rnd = pseudoRandom(42, 4 * 200);
    const outcomes = { corrupt: 0, torn: 0, intact: 0 };
    const work = tempDir();
    for (let i = 0; i < 200; i++) {
      const pick = rnd.readUInt32LE(i * 4);
      const name = files[pick % files.length]!;
      const bytes = readFileSync(join(snap, name));
      const used = usedLength(join(snap, name));
      const at = (pick >>> 8) % Math.max(1, used);
      const a = join(work, `a${i}`);
      const b = join(work, `b${i}`);
      for (const d of [a, b]) {
        mkdirSync(d);
        for (const f of files) copyFileSync(join(snap, f), join(d, f));
        if (i % 4 === 3) truncateSync(join(d, name), at);
        else {
          const m = Buffer.from(bytes);
          m[at]! ^= 1 << (pick & 7);
          writeFileSync(join(d, name), m);
        }
      }
      const before = fingerprint(a);
      const ins = new ShardStore(a, 0, 0, 0);
      let scan;
      try {
        scan = scanShard(ins, 'inspect');
      } finally {
        ins.closeFiles();
      }
      expect(fingerprint(a)).toEqual(before);
      const rec = new ShardStore(b, 0, 4096, 4);
      let result: { tornBytes: number } | null = null;
      let err: { code?: string; file?: string; offset?: number } | null = null;
      try {
        result = recover(rec, () => {});
      } catch (e) {
        err = e as typeof err;
      } finally {
        rec.closeFiles();
      }
      const where = `mutation ${i}: ${i % 4 === 3 ? 'truncate' : 'flip'} ${name} at ${at}`;
      if (err) {
        expect(err.code, where).toBe('ERR_WALRUS_CORRUPT');
        expect(scan.corrupt.length, where).toBeGreaterThan(0);
        expect([scan.corrupt[0]!.file!.slice(a.length), scan.corrupt[0]!.offset], where).toEqual([err.file!.slice(b.length), err.offset]);
        outcomes.corrupt++;
      } else {
        expect(scan.corrupt, where).toEqual([]);
        expect(scan.tornBytes, where).toBe(result!.tornBytes);
        expect(scan.torn.reduce((n: number, t: { bytes: number }) => n + t.bytes, 0), where).toBe(scan.tornBytes);
        if (scan.tornBytes > 0) outcomes.torn++;
        else outcomes.intact++;
      }
      rmSync(a, { recursive: true });
      rmSync(b, { recursive: true });
    }
    // The mutations reached both kinds of damage.
    expect(outcomes.corrupt).toBeGreaterThan(10);
    expect(outcomes.torn).toBeGreaterThan(10);
  });
});

describe('a log open by another process', () => {
  it('inspect and dump show a snapshot marked live; verify refuses with exit 3; nothing changes', async () => {
    const dir = tempDir();
    await makeLog(dir);
    const wal = await Walrus.open({ dir, shards: 2, ...GEOMETRY });
    try {
      wal.append('orders', 'live-entry');
      await wal.sync();
      const before = fingerprint(dir);
      const ins = await cliJson<InspectReport>('inspect', dir);
      expect(ins.code).toBe(0);
      expect(ins.doc.live).toBe(true);
      expect(ins.doc.topics.find((t) => t.name === 'orders')!.entries).toBe(ORDERS + 1);
      const human = await cli('inspect', dir);
      expect(human.stdout).toContain('LIVE');
      expect(human.stderr).toContain('open by another process');
      const dump = await cli('dump', dir, 'orders', '--from', String(ORDERS));
      expect(dump.code).toBe(0);
      expect(dump.stdout).toBe(`${ORDERS}\t10\t"live-entry"\n`);
      expect(dump.stderr).toContain('best-effort snapshot');
      const ver = await cli('verify', dir);
      expect(ver.code).toBe(3);
      expect(ver.stderr).toContain('open by another process');
      expect(ver.stdout).toBe('');
      expect(fingerprint(dir)).toEqual(before);
    } finally {
      await wal.close();
    }
  });
});

describe('the shared lock', () => {
  it('held while a command reads, it keeps an instance from opening the log; released, open works', async () => {
    const dir = tempDir();
    await makeLog(dir);
    const lock = lockForReading(dir);
    expect(lock.live).toBe(false);
    expect(lock.fd).toBeGreaterThanOrEqual(0);
    try {
      await expect(Walrus.open({ dir, shards: 2, ...GEOMETRY })).rejects.toMatchObject({ code: 'ERR_WALRUS_LOCKED' });
      // Two readers at once are fine.
      expect((await cli('inspect', dir)).code).toBe(0);
    } finally {
      const { native } = await import('../dist/shared/native.js');
      native.close(lock.fd);
    }
    const wal = await Walrus.open({ dir, shards: 2, ...GEOMETRY });
    await wal.close();
  });
});

describe('progress', () => {
  function sink(isTTY: boolean): { write(t: string): void; isTTY: boolean; text: string[] } {
    const text: string[] = [];
    return { isTTY, text, write: (t: string) => void text.push(t) };
  }

  it('on a terminal: one line rewritten in place, at most every 100 ms, cleared at the end', () => {
    let now = 1000;
    const s = sink(true);
    const p = new Progress('verifying', 4 << 20, true, s, () => now);
    p.add(1 << 20);
    expect(s.text).toEqual([]);
    now += 150;
    p.add(1 << 20);
    expect(s.text).toEqual(['\rverifying: 50% (2.0 MiB of at most 4.0 MiB)\x1b[K']);
    now += 50;
    p.add(1 << 20);
    expect(s.text.length).toBe(1);
    p.end();
    expect(s.text.at(-1)).toBe('\r\x1b[K');
    expect(p.bytes).toBe(3 << 20);
  });

  it('elsewhere: a plain line every 5 s, none for a short scan; nothing when disabled', () => {
    let now = 0;
    const s = sink(false);
    const p = new Progress('inspecting', 100, true, s, () => now);
    for (let i = 0; i < 10; i++) {
      now += 1000;
      p.add(10);
    }
    expect(s.text).toEqual(['inspecting: 50% (50 B of at most 100 B)\n', 'inspecting: 100% (100 B of at most 100 B)\n']);
    p.end();
    expect(s.text.length).toBe(2);
    const quiet = sink(true);
    const q = new Progress('verifying', 100, false, quiet, () => (now += 1000));
    q.add(50);
    q.end();
    expect(quiet.text).toEqual([]);
  });
});

describe('dump', () => {
  it('prints entries with offsets in every format, from an offset, with a limit', async () => {
    const dir = tempDir();
    await makeLog(dir);
    const before = fingerprint(dir);
    const r = await cli('dump', dir, 'events');
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(EVENTS.map((e, i) => `${i}\t${e.length}\t${JSON.stringify(e)}\n`).join(''));
    const hex = await cli('dump', dir, 'events', '--format', 'hex', '--from', '1', '--limit', '1');
    expect(hex.stdout).toBe(`1\t${EVENTS[1]!.length}\t${Buffer.from(EVENTS[1]!).toString('hex')}\n`);
    const js = await cli('dump', dir, 'orders', '--format', 'json', '--from', '7', '--limit', '2');
    expect(js.stdout).toBe(`7\t${JSON.stringify({ i: 7, pad: 'x'.repeat(7) }).length}\t{"i":7,"pad":"xxxxxxx"}\n8\t${JSON.stringify({ i: 8, pad: 'x'.repeat(8) }).length}\t{"i":8,"pad":"xxxxxxxx"}\n`);
    expect((await cli('dump', dir, 'users', '--format', 'json')).code).toBe(65);
    expect(fingerprint(dir)).toEqual(before);
  });

  it('--json gives one document whose payloads (base64 by default) round-trip byte for byte', async () => {
    const dir = tempDir();
    await makeLog(dir);
    const { code, doc } = await cliJson<DumpDoc>('dump', dir, 'users', '--from', '100');
    expect(code).toBe(0);
    expect(doc).toMatchObject({ dir, topic: 'users', start: 0, end: USERS, from: 100, format: 'base64', count: USERS - 100, next: USERS });
    expect([0, 1]).toContain(doc.shard);
    expect(doc.entries.map((e) => e.offset)).toEqual(Array.from({ length: USERS - 100 }, (_, k) => 100 + k));
    for (const e of doc.entries) {
      const want = pseudoRandom(e.offset + 1, 40 + (e.offset % 50));
      expect(e.bytes).toBe(want.length);
      expect(Buffer.from(e.data as string, 'base64').equals(want)).toBe(true);
    }
    const parsed = await cliJson<DumpDoc>('dump', dir, 'orders', '--format', 'json', '--limit', '3');
    expect(parsed.doc.entries.map((e) => e.data)).toEqual([0, 1, 2].map((i) => ({ i, pad: 'x'.repeat(i) })));
    expect(parsed.doc).toMatchObject({ count: 3, next: 3 });
    const past = await cliJson<DumpDoc>('dump', dir, 'orders', '--from', '5000');
    expect(past.doc).toMatchObject({ entries: [], count: 0, from: 5000, next: 5000 });
  });

  it('--format json prints the entries before the first one that is not JSON, then exits 65', async () => {
    const dir = tempDir();
    const wal = await Walrus.open({ dir, shards: 1 });
    wal.batchAppend('mixed', ['{"a":1}', '{"a":2}', 'not json', '{"a":4}']);
    await wal.close();
    // Before: nothing on stdout (the whole chunk was dropped).
    const r = await cli('dump', dir, 'mixed', '--format', 'json');
    expect(r).toEqual({ code: 65, stdout: '0\t7\t{"a":1}\n1\t7\t{"a":2}\n', stderr: expect.stringContaining('offset 2 is not JSON') });
  });

  it('shows typed records decoded, not as raw msgpack', async () => {
    const dir = tempDir();
    const wal = await Walrus.open({ dir, shards: 1 });
    const typed = wal.typed('typed');
    typed.append({ id: 1, at: new Date(0), items: new Map([['sku', 2n]]), raw: Buffer.from('hi') });
    typed.append([1, 'two']);
    await wal.close();
    const text = await cli('dump', dir, 'typed');
    expect(text.code).toBe(0);
    const lines = text.stdout.split('\n');
    expect(lines[0]).toMatch(/^0\t\d+\t\{ id: 1, at: 1970-01-01T00:00:00\.000Z, items: Map\(1\) \{ 'sku' => 2n \}, raw: <Buffer 68 69> \}$/);
    expect(lines[1]).toMatch(/^1\t\d+\t\[ 1, 'two' \]$/);
    const json = await cliJson<DumpDoc>('dump', dir, 'typed', '--format', 'json');
    expect(json.doc.entries.map((e) => e.data)).toEqual([{ id: 1, at: '1970-01-01T00:00:00.000Z', items: [['sku', '2']], raw: 'aGk=' }, [1, 'two']]);
    // hex and base64 stay the stored bytes.
    const hex = await cli('dump', dir, 'typed', '--format', 'hex', '--limit', '1');
    expect(hex.stdout).toMatch(/^0\t\d+\tc1/);
  });

  it('an unknown topic is exit 66', async () => {
    const dir = tempDir();
    await makeLog(dir);
    const r = await cli('dump', dir, 'nope');
    expect(r.code).toBe(66);
    expect(r.stderr).toContain('no topic "nope"');
  });
});

describe('usage', () => {
  it('bad command lines exit 64 with the usage and no stack trace', async () => {
    const dir = tempDir();
    await makeLog(dir);
    const cases: string[][] = [
      [],
      ['frobnicate'],
      ['inspect'],
      ['verify', dir, 'extra'],
      ['inspect', dir, '--bogus'],
      ['dump', dir],
      ['dump', dir, 'orders', '--limit', 'ten'],
      ['dump', dir, 'orders', '--from', '-1'],
      ['dump', dir, 'orders', '--format', 'yaml'],
      ['bench', '--entries', '0'],
      ['inspect', ''],
    ];
    const runs = await Promise.all(cases.map((args) => cli(...args)));
    for (const [k, args] of cases.entries()) {
      const r = runs[k]!;
      expect({ args, code: r.code }).toEqual({ args, code: 64 });
      expect(r.stderr).toMatch(/walrus-ts/);
      expect(r.stderr).not.toMatch(/\n\s+at /);
      expect(r.stdout).toBe('');
    }
  });

  it('a missing directory or one without a log is exit 66', async () => {
    const empty = tempDir();
    for (const cmd of ['inspect', 'verify']) {
      for (const d of [join(empty, 'missing'), empty]) {
        const r = await cli(cmd, d);
        expect(r.code).toBe(66);
        expect(r.stderr).not.toMatch(/\n\s+at /);
      }
    }
    expect(readdirSync(empty)).toEqual([]);
  });

  it('--help for every command prints its usage and exit codes', async () => {
    const cmds = ['inspect', 'verify', 'dump', 'bench'];
    const helps = await Promise.all(cmds.map((cmd) => cli(cmd, '--help')));
    for (const [k, cmd] of cmds.entries()) {
      const r = helps[k]!;
      expect(r.code).toBe(0);
      expect(r.stdout).toContain(`Usage: walrus-ts ${cmd}`);
      expect(r.stdout).toContain('Exit codes:');
    }
    const top = await cli('--help');
    expect(top.code).toBe(0);
    for (const cmd of ['inspect', 'verify', 'dump', 'bench']) expect(top.stdout).toContain(`walrus-ts ${cmd}`);
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string; bin: Record<string, string> };
    expect((await cli('--version')).stdout).toBe(`${pkg.version}\n`);
    expect(pkg.bin['walrus-ts']).toBe('./dist/cli/main.js');
    expect(readFileSync(CLI, 'utf8').startsWith('#!/usr/bin/env node\n')).toBe(true);
  });
});

describe('bench', () => {
  it('runs the quick comparison and reports both rates and their ratio', async () => {
    const base = tempDir();
    const { code, doc } = await cliJson<{
      entries: number;
      payloadBytes: { min: number; max: number; total: number };
      runs: { name: string; entries: number; bytes: number; seconds: number; entriesPerSecond: number; mbPerSecond: number }[];
      ratio: number;
    }>('bench', '--entries', '3000', '--dir', base);
    expect(code).toBe(0);
    expect(doc.entries).toBe(3000);
    expect(doc.payloadBytes.total).toBeGreaterThanOrEqual(3000 * 500);
    expect(doc.payloadBytes.total).toBeLessThanOrEqual(3000 * 1000);
    expect(doc.runs.map((r) => r.name)).toEqual(['walrus append + sync', 'fs.writevSync x1000 + fdatasync']);
    for (const r of doc.runs) {
      expect(r).toMatchObject({ entries: 3000, bytes: doc.payloadBytes.total });
      expect(r.seconds).toBeGreaterThan(0);
      expect(r.entriesPerSecond).toBeCloseTo(3000 / r.seconds, 3);
      expect(r.mbPerSecond).toBeCloseTo(doc.payloadBytes.total / 1e6 / r.seconds, 3);
    }
    expect(doc.ratio).toBeCloseTo(doc.runs[0]!.entriesPerSecond / doc.runs[1]!.entriesPerSecond, 6);
    // Its temporary files are gone.
    expect(readdirSync(base)).toEqual([]);
  });

  it('--full needs a clone: from an installed layout (no bench/) it exits 69; the quick run still works', async () => {
    // What an install holds: package.json, dist/, the built addon, dependencies.
    const pkg = tempDir();
    const root = fileURLToPath(new URL('..', import.meta.url));
    copyFileSync(join(root, 'package.json'), join(pkg, 'package.json'));
    cpSync(join(root, 'dist'), join(pkg, 'dist'), { recursive: true });
    mkdirSync(join(pkg, 'build', 'Release'), { recursive: true });
    copyFileSync(join(root, 'build', 'Release', 'walrus.node'), join(pkg, 'build', 'Release', 'walrus.node'));
    symlinkSync(join(root, 'node_modules'), join(pkg, 'node_modules'));
    const installed = join(pkg, 'dist', 'cli', 'main.js');
    const run = (...args: string[]): Promise<Run> =>
      new Promise((resolve) => {
        execFile(process.execPath, [installed, ...args], (err, stdout, stderr) => resolve({ code: err ? Number((err as { code?: unknown }).code) : 0, stdout, stderr }));
      });
    const full = await run('bench', '--full');
    expect(full.code).toBe(69);
    expect(full.stderr).toContain('run it from a clone');
    const base = tempDir();
    const quick = await run('bench', '--entries', '500', '--dir', base, '--json');
    expect(quick.code).toBe(0);
    expect((JSON.parse(quick.stdout) as { entries: number }).entries).toBe(500);
  });
});
