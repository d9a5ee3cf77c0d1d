import { copyFileSync, readdirSync, readFileSync, truncateSync, writeFileSync, mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Walrus, FsyncSchedule } from '../dist/index.js';
import { ShardStore } from '../dist/workers/store/store.js';
import { recover } from '../dist/workers/recovery/index.js';
import { readEntries } from '../dist/workers/read/reader.js';
import { collect, ramTempDir, tempDir } from './helpers.js';

const BLOCK = 4096;
/** Entries: 6 singles, then a batch of 4, then 3 singles, all in topic "t". */
const SINGLES_A = ['a0', 'a1-longer-payload', '', 'a3', 'ä4', 'a5'];
const BATCH = ['b0', 'b1-xxxxxxxxxxxxxxxx', 'b2', 'b3'];
const SINGLES_B = ['c0', 'c1', 'c2'];
const ALL = [...SINGLES_A, ...BATCH, ...SINGLES_B];

/**
 * A log as a kill -9 leaves it with NoFsync: everything written to the files, nothing
 * recorded as durable. Taken by copying the files while the instance is open, after a read
 * forced the worker to write everything.
 */
async function unsyncedSnapshot(): Promise<string> {
  const dir = tempDir();
  const snap = tempDir();
  const wal = await Walrus.open({ dir, shards: 1, fsync: FsyncSchedule.NoFsync, blockBytes: BLOCK, segmentBlocks: 4 });
  try {
    for (const s of SINGLES_A) wal.append('t', s);
    wal.batchAppend('t', BATCH);
    for (const s of SINGLES_B) wal.append('t', s);
    expect((await collect(wal.iterate('t'))).length).toBe(ALL.length);
    for (const f of readdirSync(dir)) if (f.endsWith('.seg')) copyFileSync(join(dir, f), join(snap, f));
  } finally {
    await wal.close();
  }
  return snap;
}

function recoverIn(dir: string): { entries: string[]; torn: number } {
  const store = new ShardStore(dir, 0, BLOCK, 4);
  try {
    const r = recover(store, () => {});
    const t = [...store.topics.values()].find((x) => x.name === 't');
    const out = t ? readEntries(t, 0, 1e9, 1e12) : { data: [], entries: new Float64Array(0) };
    const entries: string[] = [];
    for (let k = 0; k < out.entries.length / 4; k++) {
      const [offset, buffer, start, length] = out.entries.subarray(k * 4, k * 4 + 4);
      entries.push(Buffer.from(out.data[buffer!]!, start, length).toString());
      expect(offset).toBe(k);
    }
    return { entries, torn: r.tornBytes };
  } finally {
    store.closeFiles();
  }
}

/**
 * The torn tail a crash leaves in a segment: the file keeps its size (creation sized and
 * fsynced it before any block was written), and bytes from `cut` on never reached it.
 * (Cutting the file itself is not something a crash does: recovery reports a segment
 * shorter than its header says as ERR_WALRUS_CORRUPT, see test/corruption.test.ts.)
 */
function zeroFrom(path: string, image: Buffer, cut: number): void {
  const b = Buffer.from(image);
  b.fill(0, cut);
  writeFileSync(path, b);
}

/** Bytes of the file up to its last non-zero byte. */
function usedLength(path: string): number {
  const b = readFileSync(path);
  let e = b.length;
  while (e > 0 && b[e - 1] === 0) e--;
  return e;
}

describe('recovery of a torn tail', () => {
  it('a tail lost from every offset of a small log recovers a prefix, never a half batch', async () => {
    const snap = await unsyncedSnapshot();
    const seg = readdirSync(snap).find((f) => f.endsWith('.seg'))!;
    const size = statSync(join(snap, seg)).size;
    const used = usedLength(join(snap, seg));
    expect(used).toBeGreaterThan(2 * BLOCK);
    // On tmpfs where there is one (ramTempDir): recovery fdatasyncs the file in each of ~9000 cases.
    const work = ramTempDir();
    const image = readFileSync(join(snap, seg));
    let tried = 0;
    let lastCount = 0;
    let tornSeen = 0;
    const counts = new Set<number>();
    for (let cut = 0; cut <= used + 1; cut++) {
      const path = join(work, seg);
      zeroFrom(path, image, cut);
      const { entries, torn } = recoverIn(work);
      tried++;
      // A prefix of what was written, byte-exact.
      expect(entries).toEqual(ALL.slice(0, entries.length));
      // The batch is all or nothing.
      const n = entries.length;
      expect(n <= SINGLES_A.length || n >= SINGLES_A.length + BATCH.length).toBe(true);
      // Cutting later never recovers less.
      expect(n).toBeGreaterThanOrEqual(lastCount);
      if (cut >= used) expect(torn).toBe(0);
      tornSeen += torn;
      counts.add(n);
      lastCount = n;
    }
    expect(lastCount).toBe(ALL.length);
    // Every possible prefix length that respects the batch shows up somewhere.
    for (let n = 0; n <= ALL.length; n++) {
      if (n > SINGLES_A.length && n < SINGLES_A.length + BATCH.length) expect(counts.has(n)).toBe(false);
      else expect(counts.has(n)).toBe(true);
    }
    expect(tried).toBe(used + 2);
    expect(tornSeen).toBeGreaterThan(0);
    expect(size).toBeGreaterThan(used);
  });

  it('a batch cut in half is dropped as a whole and reported as torn bytes', async () => {
    const snap = await unsyncedSnapshot();
    const seg = readdirSync(snap).find((f) => f.endsWith('.seg'))!;
    const bytes = readFileSync(join(snap, seg));
    const marker = bytes.indexOf(Buffer.from('b2'));
    expect(marker).toBeGreaterThan(0);
    const probe = tempDir();
    writeFileSync(join(probe, seg), Buffer.concat([bytes.subarray(0, marker), Buffer.alloc(bytes.length - marker)]));
    const { entries, torn } = recoverIn(probe);
    expect(entries).toEqual(SINGLES_A);
    expect(torn).toBeGreaterThan(0);

    // Through the public API too (on a fresh copy: recovery zeroes what it drops): stats
    // report it, offsets continue after the dropped batch, and the next open finds it clean.
    const work = tempDir();
    writeFileSync(join(work, seg), Buffer.concat([bytes.subarray(0, marker), Buffer.alloc(bytes.length - marker)]));
    const wal = await Walrus.open({ dir: work, shards: 1, blockBytes: BLOCK, segmentBlocks: 4 });
    try {
      expect(wal.stats().recoveredTornBytes).toBeGreaterThan(0);
      expect(wal.stats().recoveredClean).toBe(false);
      expect(wal.append('t', 'after')).toBe(SINGLES_A.length);
      const got = await collect(wal.iterate('t'));
      expect(got.map((e) => e.data.toString())).toEqual([...SINGLES_A, 'after']);
    } finally {
      await wal.close();
    }
    const wal2 = await Walrus.open({ dir: work, shards: 1, blockBytes: BLOCK, segmentBlocks: 4 });
    try {
      expect(wal2.stats().recoveredTornBytes).toBe(0);
      expect((await collect(wal2.iterate('t'))).map((e) => e.data.toString())).toEqual([...SINGLES_A, 'after']);
    } finally {
      await wal2.close();
    }
  });
});

describe('corruption of durable data', () => {
  async function durableLog(): Promise<{ dir: string; seg: string }> {
    const dir = tempDir();
    const wal = await Walrus.open({ dir, shards: 1, blockBytes: BLOCK, segmentBlocks: 4 });
    for (const s of ALL) wal.append('t', s);
    await wal.close();
    return { dir, seg: readdirSync(dir).find((f) => f.endsWith('.seg'))! };
  }

  it('a flipped bit inside synced data fails open with ERR_WALRUS_CORRUPT naming file and offset', async () => {
    const { dir, seg } = await durableLog();
    const path = join(dir, seg);
    const bytes = readFileSync(path);
    const at = bytes.indexOf(Buffer.from('a3'));
    bytes[at]! ^= 0x01;
    writeFileSync(path, bytes);
    const err = (await Walrus.open({ dir, shards: 1, blockBytes: BLOCK, segmentBlocks: 4 }).catch((e: unknown) => e)) as {
      code?: string;
      file?: string;
      offset?: number;
      message: string;
    };
    expect(err.code).toBe('ERR_WALRUS_CORRUPT');
    expect(err.file).toBe(path);
    expect(typeof err.offset).toBe('number');
    expect(err.offset!).toBeLessThanOrEqual(at);
    expect(err.message).toContain(path);
    expect(err.message).toContain(String(err.offset));
    // Nothing was truncated away: restoring the bit makes the log whole again.
    bytes[at]! ^= 0x01;
    writeFileSync(path, bytes);
    const wal = await Walrus.open({ dir, shards: 1, blockBytes: BLOCK, segmentBlocks: 4 });
    try {
      expect((await collect(wal.iterate('t'))).length).toBe(ALL.length);
    } finally {
      await wal.close();
    }
  });

  it('truncating synced data fails open with ERR_WALRUS_CORRUPT', async () => {
    const { dir, seg } = await durableLog();
    const path = join(dir, seg);
    const bytes = readFileSync(path);
    truncateSync(path, bytes.indexOf(Buffer.from('c1')));
    await expect(Walrus.open({ dir, shards: 1, blockBytes: BLOCK, segmentBlocks: 4 })).rejects.toMatchObject({ code: 'ERR_WALRUS_CORRUPT', file: path });
  });

  it('ignores other namespaces in subdirectories', async () => {
    const { dir } = await durableLog();
    mkdirSync(join(dir, 'ns'), { recursive: true });
    const other = await Walrus.open({ dir, key: 'ns', shards: 1 });
    other.append('t', 'mine');
    await other.close();
    const wal = await Walrus.open({ dir, shards: 1, blockBytes: BLOCK, segmentBlocks: 4 });
    try {
      expect((await collect(wal.iterate('t'))).length).toBe(ALL.length);
    } finally {
      await wal.close();
    }
  });
});
