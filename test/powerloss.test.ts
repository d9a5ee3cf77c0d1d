/**
 * Simulated power loss (docs/DURABILITY.md, "Simulated power loss"): the test addon's
 * power-loss journal (WALRUS_TEST_POWERLOSS, native/test/powerloss.cc; every child here runs
 * with TEST_ADDON_FLAG, which loads that build) and the power cut that applies it
 * (test/fixtures/powerloss.mjs), first on hand-made files through both I/O paths, then under
 * the crash-cycle harness, then the negative control that proves the harness sees a missing
 * fsync.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, realpathSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { Walrus, ReadConsistency } from '../dist/index.js';
import { runCrashCycles, violations } from './fixtures/crash-harness.mjs';
import { genPayload } from './fixtures/payload.mjs';
import { applyPowerLoss, readJournal } from './fixtures/powerloss.mjs';
import { TEST_ADDON_FLAG } from './fixtures/test-addon.mjs';
import { tempDir } from './helpers.js';

const CHILD = fileURLToPath(new URL('./fixtures/powerloss-child.mjs', import.meta.url));
const HARNESS_CHILD = fileURLToPath(new URL('./fixtures/crash-child.mjs', import.meta.url));

/**
 * Runs node with `args` until its standard output satisfies `ready`, then kills it with
 * SIGKILL and waits for it to be gone; returns what it printed. Rejects if it exits first.
 */
async function killWhenReady(args: string[], ready: (out: string) => boolean, env: NodeJS.ProcessEnv = process.env): Promise<string> {
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
  let out = '';
  let err = '';
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (ready(out)) resolve();
    });
    child.on('exit', (code) => reject(new Error(`child exited with ${code}: ${err}`)));
  });
  const exited = new Promise((r) => child.on('exit', r));
  child.kill('SIGKILL');
  await exited;
  return out;
}

/** Runs powerloss-child.mjs until it is ready, kills it, cuts the power; returns the data dir. */
async function cut(path: 'pwritev' | 'uring', mode: 'dropAll' | 'keepAll' | 'random', sector: number, nosync = false, seed = 1) {
  const base = tempDir();
  const journal = join(base, 'journal');
  const data = join(base, 'data');
  mkdirSync(journal);
  mkdirSync(data);
  await killWhenReady([TEST_ADDON_FLAG, CHILD, journal, String(sector), data, path, ...(nosync ? ['nosync'] : [])], (out) => out.includes('ready'));
  let s = seed;
  const rand = (n: number) => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return (s >>> 8) % n;
  };
  const figures = applyPowerLoss(journal, { mode, rand, sector });
  return { data, figures };
}

const file = (data: string, name: string) => readFileSync(join(data, name));
const filled = (n: number, byte: number) => Buffer.alloc(n, byte);

describe.each(['pwritev', 'uring'] as const)('the power cut, %s path', (path) => {
  it('dropAll: synced bytes stay, unsynced writes and the appended tail go, an unsynced creation vanishes, an unsynced unlink is undone', async () => {
    const { data, figures } = await cut(path, 'dropAll', 512);
    expect(file(data, 'durable').equals(filled(10000, 0x11))).toBe(true);
    expect(existsSync(join(data, 'new-entry'))).toBe(false);
    expect(file(data, 'unlinked').equals(filled(4096, 0x55))).toBe(true);
    expect(figures).toMatchObject({ createsUndone: 1, unlinksUndone: 1, sizesReverted: 1 });
    // [3000, 6000) spans 512-byte sectors 5..11; the append at 10,000 began inside sector 19,
    // whose synced first 272 bytes come back with it. Sectors past 10,000 went with the size.
    expect(figures.sectorsDropped).toBe(8);
  });

  it('keepAll: everything written is there, as after a plain process crash', async () => {
    const { data, figures } = await cut(path, 'keepAll', 4096);
    const want = Buffer.concat([filled(3000, 0x11), filled(3000, 0x22), filled(4000, 0x11), filled(5000, 0x33)]);
    expect(file(data, 'durable').equals(want)).toBe(true);
    expect(file(data, 'new-entry').equals(filled(5000, 0x44))).toBe(true);
    expect(existsSync(join(data, 'unlinked'))).toBe(false);
    expect(figures.sectorsDropped + figures.sectorsGarbage + figures.createsUndone + figures.unlinksUndone).toBe(0);
  });

  it('random: each unsynced 512-byte sector is old, new or garbage on its own; bytes nobody wrote since the sync never change', async () => {
    const seen = { old: 0, new: 0, garbage: 0 };
    for (let seed = 1; seed <= 4; seed++) {
      const { data } = await cut(path, 'random', 512, false, seed);
      const got = file(data, 'durable');
      expect([10000, 15000]).toContain(got.length);
      expect(got.subarray(0, 3000).equals(filled(3000, 0x11))).toBe(true);
      expect(got.subarray(6000, 10000).equals(filled(4000, 0x11))).toBe(true);
      for (let s = 2560; s < 6144; s += 512) {
        const part = got.subarray(Math.max(s, 3000), Math.min(s + 512, 6000));
        if (part.equals(filled(part.length, 0x11))) seen.old++;
        else if (part.equals(filled(part.length, 0x22))) seen.new++;
        else seen.garbage++;
      }
    }
    // 28 sector draws: each outcome shows up (the draw is 2/5 old, 2/5 new, 1/5 garbage).
    expect(seen.old).toBeGreaterThan(0);
    expect(seen.new).toBeGreaterThan(0);
    expect(seen.garbage).toBeGreaterThan(0);
  });

  it('with fsync skipped (the negative control switch) nothing is durable: dropAll leaves no file at all', async () => {
    const { data } = await cut(path, 'dropAll', 4096, true);
    expect(existsSync(join(data, 'durable'))).toBe(false);
    expect(existsSync(join(data, 'new-entry'))).toBe(false);
  });
});

describe('sync() after atLeastOnce reads', () => {
  // Found by the power-loss crash cycles: sync() waited only for ring positions, so after
  // reads (and no appends) it resolved without an fsync and the cursor records stayed
  // unsynced; a power cut then redelivered everything read since the previous fsync.
  it.each([true, false])('makes the cursor durable, NoFsync, ioUring %s', async (ioUring) => {
    const base = tempDir();
    const dir = join(base, 'data');
    const journal = join(base, 'journal');
    mkdirSync(journal);
    const topics = ['q'];
    const setup = await Walrus.open({ dir, shards: 1 });
    for (let i = 0; i < 200; i++) setup.append('q', genPayload('q', i, 1));
    await setup.close();
    const config = { dir, seed: 3, gen: 2, shards: 1, fsync: 'noFsync', ioUring, ringBytes: 65536, blockBytes: 1 << 20, segmentBlocks: 64, instances: [{ key: '', consistency: 4, topics, produce: [], consume: [0], next: [200], paceMs: 0, readMax: 0 }] };
    const out = await killWhenReady([TEST_ADDON_FLAG, HARNESS_CHILD, JSON.stringify(config)], (o) => /^C 0 0 \d+$/m.test(o), { ...process.env, WALRUS_TEST_POWERLOSS: `${journal}:4096` });
    const marks = [...out.matchAll(/^C 0 0 (\d+)$/gm)].map((m) => Number(m[1]));
    const delivered = [...out.matchAll(/^D 0 0 (\d+) /gm)].map((m) => Number(m[1]));
    applyPowerLoss(journal, { mode: 'dropAll', rand: () => 0, sector: 4096 });
    const wal = await Walrus.open({ dir, shards: 1, consistency: ReadConsistency.atLeastOnce(4) });
    try {
      const next = (await wal.readNext('q', false))?.offset ?? 200; // 200: all consumed
      // A C line names where the last read before a resolved sync() started: that read
      // committed everything before it, and a record is at most n - 1 = 3 behind.
      expect(next).toBeGreaterThanOrEqual(marks[marks.length - 1]! - 3);
      expect(next).toBeLessThanOrEqual(delivered[delivered.length - 1]! + 1);
    } finally {
      await wal.close();
    }
  }, 60_000);
});

describe('sync() after an empty atLeastOnce read', () => {
  // An empty checkpointing read commits what the read before it returned, and may write the
  // cursor record for it; sync() must make that record durable too. It did not: only reads
  // that returned entries asked sync() for a cursor fsync.
  it('makes the commit of the read before it durable', async () => {
    const base = tempDir();
    const dir = join(base, 'data');
    const journal = join(base, 'journal');
    mkdirSync(journal);
    const code = `
      const { Walrus, ReadConsistency, FsyncSchedule } = await import(${JSON.stringify(new URL('../dist/index.js', import.meta.url).href)});
      const wal = await Walrus.open({ dir: ${JSON.stringify(dir)}, shards: 1, fsync: FsyncSchedule.NoFsync, consistency: ReadConsistency.atLeastOnce(4) });
      for (let i = 0; i < 20; i++) wal.append('q', 'job ' + i);
      if ((await wal.batchRead('q', 1 << 20)).length !== 20) throw new Error('expected 20 entries');
      await wal.sync();
      if ((await wal.batchRead('q', 1 << 20)).length !== 0) throw new Error('expected none');
      await wal.sync();
      process.stdout.write('synced\\n');
      setInterval(() => {}, 1000);`;
    await killWhenReady([TEST_ADDON_FLAG, '--input-type=module', '-e', code], (out) => out.includes('synced'), { ...process.env, WALRUS_TEST_POWERLOSS: `${journal}:4096` });
    applyPowerLoss(journal, { mode: 'dropAll', rand: () => 0, sector: 4096 });
    const wal = await Walrus.open({ dir, shards: 1, consistency: ReadConsistency.atLeastOnce(4) });
    try {
      expect(await wal.readNext('q', false)).toBeNull();
    } finally {
      await wal.close();
    }
  }, 60_000);
});

describe('a new namespace directory', () => {
  // Found while modelling directory durability: open() created the namespace directories
  // with mkdir and never fsynced their parents, so a power loss could take a new namespace
  // away with every (fsynced) segment in it. The journal shows each parent fsynced.
  it('is made durable in its parent, at every level open creates', async () => {
    const base = realpathSync(tempDir());
    const journal = join(base, 'journal');
    mkdirSync(journal);
    const dir = join(base, 'a', 'b');
    const code = `
      import { createRequire } from 'node:module';
      const native = createRequire(${JSON.stringify(import.meta.url)})('#walrus-addon');
      native.testSeams.powerLoss(${JSON.stringify(journal)}, 4096, false);
      const { Walrus } = await import(${JSON.stringify(new URL('../dist/index.js', import.meta.url).href)});
      const wal = await Walrus.open({ dir: ${JSON.stringify(dir)}, key: 'k', shards: 1 });
      await wal.close();`;
    const child = spawn(process.execPath, [TEST_ADDON_FLAG, '--input-type=module', '-e', code], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const status = await new Promise((r) => child.on('exit', r));
    expect(err).toBe('');
    expect(status).toBe(0);
    const synced = new Set(readJournal(journal).filter((r: { type: string }) => r.type === 'Y').map((r: { body: Buffer }) => r.body.toString()));
    for (const parent of [base, join(base, 'a'), dir]) expect(synced).toContain(parent);
  });
});

describe('a background sync (datasyncInBackground)', () => {
  // The spare segment and a deletion's records are made durable on a detached thread; the
  // journal marks what such a sync covers when it starts ('S', 'Q') and credits it when it
  // succeeded ('E'): what came before its start is durable, nothing after it.
  it('credits the changes before its start, of the file and of its directory, and none after', async () => {
    const base = realpathSync(tempDir());
    const journal = join(base, 'journal');
    const data = join(base, 'data');
    mkdirSync(journal);
    mkdirSync(data);
    const code = `
      import { createRequire } from 'node:module';
      const native = createRequire(${JSON.stringify(import.meta.url)})('#walrus-addon');
      const { O_RDWR, O_CREAT, O_EXCL, O_RDONLY, O_DIRECTORY } = native.constants;
      native.testSeams.powerLoss(${JSON.stringify(journal)}, 4096, false);
      const dir = ${JSON.stringify(data)};
      const create = (name, byte) => {
        const fd = native.open(dir + '/' + name, O_RDWR | O_CREAT | O_EXCL, 0o600);
        native.pwritev(fd, [Buffer.alloc(4096, byte)], 0);
        return fd;
      };
      const f = create('f', 0x11);
      native.fdatasync(f);
      const d = native.open(dir, O_RDONLY | O_DIRECTORY, 0);
      native.fsync(d);
      native.pwritev(f, [Buffer.alloc(4096, 0x22)], 0);
      native.close(create('early', 0x44));
      const h = native.datasyncInBackground(dir + '/f', dir);
      native.pwritev(f, [Buffer.alloc(4096, 0x33)], 4096);
      native.pwritev(f, [Buffer.alloc(100, 0x55)], 0);
      native.close(create('late', 0x66));
      if (native.backgroundSyncResult(h, true) !== 0) throw new Error('the background sync failed');
      process.stdout.write('ready\\n');
      setInterval(() => {}, 1000);`;
    await killWhenReady([TEST_ADDON_FLAG, '--input-type=module', '-e', code], (out) => out.includes('ready'));
    const types = readJournal(journal).map((r: { type: string }) => r.type);
    expect(types.filter((t: string) => 'SQE'.includes(t))).toEqual(['S', 'Q', 'E']);
    const figures = applyPowerLoss(journal, { mode: 'dropAll', rand: () => 0, sector: 4096 });
    // The write before the start stays; the extension and the overwrite after it go.
    expect(file(data, 'f').equals(filled(4096, 0x22))).toBe(true);
    // Its entry was made durable by the sync of the directory, its data never was.
    expect(file(data, 'early').length).toBe(0);
    expect(existsSync(join(data, 'late'))).toBe(false);
    expect(figures).toMatchObject({ createsUndone: 1, sizesReverted: 2 });
  });

  it('that never reported success credits nothing: the file is as its last sync left it', () => {
    const journal = tempDir();
    const data = realpathSync(tempDir());
    const path = join(data, 'f');
    writeFileSync(path, Buffer.concat([filled(4096, 0x22), filled(4096, 0x33)]));
    const ino = statSync(path).ino;
    const rec = (type: string, ...parts: (number | string | Buffer)[]) => {
      const body = Buffer.concat(
        parts.map((p) => {
          if (typeof p === 'string') return Buffer.from(p);
          if (Buffer.isBuffer(p)) return p;
          const b = Buffer.alloc(8);
          b.writeBigUInt64LE(BigInt(p));
          return b;
        }),
      );
      const head = Buffer.alloc(5);
      head.write(type, 0, 'latin1');
      head.writeUInt32LE(body.length, 1);
      return Buffer.concat([head, body]);
    };
    // After a sync of 4096 bytes of 0x11: 0x22 written, a background sync starts, 0x33
    // appended; the sync's success never made it into the journal.
    writeFileSync(
      join(journal, 'journal-1.bin'),
      Buffer.concat([
        rec('F', ino, path),
        rec('D', ino),
        rec('Z', ino, 4096),
        rec('P', ino, 0, filled(4096, 0x11)),
        rec('W', ino, 0, 4096),
        rec('S', 1, ino),
        rec('Z', ino, 4096),
        rec('W', ino, 4096, 4096),
      ]),
    );
    applyPowerLoss(journal, { mode: 'dropAll', rand: () => 0, sector: 4096 });
    expect(readFileSync(path).equals(filled(4096, 0x11))).toBe(true);
  });
});

describe('crash cycles through simulated power loss', () => {
  it('keeps every entry acknowledged as durable, byte-exact, and every cursor promise', async () => {
    const { figures, messages } = await runCrashCycles({ base: tempDir(), cycles: 8, seed: 5150, powerLoss: {} });
    expect(messages).toEqual([]);
    expect(violations(figures)).toBe(0);
    expect(figures.powerCuts).toBe(8);
    expect(figures.ackedEntries).toBeGreaterThan(0);
    expect(figures.delivered).toBeGreaterThan(0);
    // The cuts did drop unsynced data.
    expect(figures.cut.sectorsDropped + figures.cut.createsUndone).toBeGreaterThan(0);
  }, 180_000);

  it('negative control: with fsync skipped the same harness reports lost acknowledged entries', async () => {
    const { figures } = await runCrashCycles({ base: tempDir(), cycles: 2, seed: 77, powerLoss: { skipSync: true }, cutModes: ['dropAll'] });
    expect(figures.ackedEntries).toBeGreaterThan(0);
    expect(figures.lost).toBeGreaterThan(0);
  }, 120_000);
});
