/**
 * The portable I/O path (src/shared/portable/, docs/ARCHITECTURE.md "The two I/O paths"):
 * its checksums give the addon's bytes, a log written on either path reads the same on the
 * other, the addon's absence is announced in one stderr line, stats() names the path, what
 * only the addon has fails clearly, its test seams do not ship, and the directory lock
 * excludes across processes and paths and survives kill -9 (src/main/lock.ts).
 *
 * Runs in the 'fd' project: this process loads the addon, and takes the portable path per
 * open (`io: 'portable'`) or in child processes (WALRUS_NATIVE=0, or a copy of the package
 * without build/, where the addon cannot load).
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, symlinkSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { FsyncSchedule, Walrus } from '../dist/index.js';
import type { NativeBinding } from '../dist/shared/native.js';
import { portableBinding } from '../dist/shared/portable/index.js';
import { RECORD_HEADER_BYTES, REC_FLAGS, REC_KIND, REC_LEN, REC_OFFSET_HI, REC_OFFSET_LO, REC_REMAINING, REC_TOPIC, RUN_OUT_FIELDS, RecordKind, recordFootprint } from '../dist/shared/format/layout.js';
import { PACKAGE_ROOT } from './package-link.js';
import { collect, pseudoRandom, tempDir } from './helpers.js';

const addon = createRequire(import.meta.url)('#walrus-addon') as NativeBinding;
const portable = portableBinding;

/** Deterministic numbers (mulberry32). */
function numbers(seed: number): { int(min: number, max: number): number; u32(): number } {
  let s = seed >>> 0;
  const next = (): number => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
  return { int: (min, max) => min + Math.floor(next() * (max - min + 1)), u32: () => Math.floor(next() * 2 ** 32) };
}

interface Frames {
  buf: Uint8Array;
  positions: number[];
}

/**
 * Random frames back to back: mostly Entry frames of topic 7 with consecutive offsets from
 * `first` (a run sealRun takes), with now and then another kind, topic, flag or offset gap,
 * random `remaining`, random payloads; `shared`: the buffer is a view of a SharedArrayBuffer
 * at a 256-byte offset, as the ring's data is.
 */
function frames(seed: number, count: number, first: number, shared: boolean): Frames {
  const r = numbers(seed);
  const lens = Array.from({ length: count }, () => r.int(0, 300));
  const total = lens.reduce((a, l) => a + recordFootprint(l), 0) + r.int(0, 40);
  const buf = shared ? new Uint8Array(new SharedArrayBuffer(total + 256), 256, total) : new Uint8Array(total);
  buf.set(pseudoRandom(seed, total));
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const positions: number[] = [];
  let at = 0;
  let offset = first;
  for (const len of lens) {
    positions.push(at);
    dv.setUint32(at + REC_LEN, len, true);
    const odd = r.int(0, 19);
    dv.setUint32(at + REC_TOPIC, odd === 0 ? 8 : 7, true);
    buf[at + REC_KIND] = odd === 1 ? RecordKind.Meta : RecordKind.Entry;
    buf[at + REC_FLAGS] = odd === 2 ? 1 : 0;
    const off = odd === 3 ? offset + 2 : offset;
    dv.setUint32(at + REC_OFFSET_LO, off % 2 ** 32, true);
    dv.setUint32(at + REC_OFFSET_HI, Math.floor(off / 2 ** 32), true);
    dv.setUint32(at + REC_REMAINING, r.int(1, 3), true);
    buf.fill(0, at + RECORD_HEADER_BYTES + len, at + recordFootprint(len));
    offset++;
    at += recordFootprint(len);
  }
  return { buf, positions };
}

function copy(b: Uint8Array): Uint8Array {
  return new Uint8Array(b);
}

describe('checksums: the portable code gives the addon bytes', () => {
  it('crc32c, with a seed continuing a previous result', () => {
    const r = numbers(1);
    for (let i = 0; i < 300; i++) {
      const a = pseudoRandom(i, r.int(0, 5000));
      const b = pseudoRandom(i + 1000, r.int(0, 5000));
      const seed = r.u32();
      expect(portable.crc32c(a)).toBe(addon.crc32c(a));
      expect(portable.crc32c(b, seed)).toBe(addon.crc32c(b, seed));
      const both = Buffer.concat([a, b]);
      expect(portable.crc32c(b, portable.crc32c(a))).toBe(addon.crc32c(both));
      expect(portable.crc32c(both)).toBe(addon.crc32c(b, addon.crc32c(a)));
    }
  });

  it('sealFrames and verifyFrames, on random frames with random damage and bounds', () => {
    const r = numbers(2);
    for (let i = 0; i < 200; i++) {
      const f = frames(100 + i, r.int(1, 40), r.u32(), i % 2 === 0);
      const sealed = f.positions.filter(() => r.int(0, 9) > 0);
      const p = copy(f.buf);
      const n = copy(f.buf);
      const positions = new Uint32Array([...sealed, 0]);
      portable.sealFrames(p, positions, sealed.length);
      addon.sealFrames(n, positions, sealed.length);
      expect(Buffer.from(p).equals(Buffer.from(n))).toBe(true);
      // Damage a few bytes, then walk from random frames to random ends.
      for (let d = r.int(0, 3); d > 0; d--) n[r.int(0, n.length - 1)]! ^= 1 << r.int(0, 7);
      for (let k = 0; k < 10; k++) {
        const start = r.int(0, 3) === 0 ? r.int(0, n.length) : f.positions[r.int(0, f.positions.length - 1)]!;
        const end = r.int(start, n.length);
        expect(portable.verifyFrames(n, start, end)).toBe(addon.verifyFrames(n, start, end));
      }
    }
    const small = new Uint8Array(40);
    expect(() => portable.sealFrames(small, new Uint32Array([20]), 1)).toThrow(RangeError);
    expect(() => addon.sealFrames(small, new Uint32Array([20]), 1)).toThrow(RangeError);
    expect(() => portable.verifyFrames(small, 0, 41)).toThrow(RangeError);
    expect(() => addon.verifyFrames(small, 0, 41)).toThrow(RangeError);
  });

  it('sealRun: same bytes taken, salts, CRCs, out counts and index pairs', () => {
    const r = numbers(3);
    for (let i = 0; i < 300; i++) {
      const first = r.int(0, 3) === 0 ? 2 ** 32 - r.int(1, 5) : r.int(0, 1000);
      const f = frames(500 + i, r.int(1, 60), first, i % 2 === 1);
      const p = copy(f.buf);
      const n = copy(f.buf);
      const start = f.positions[r.int(0, Math.min(2, f.positions.length - 1))]!;
      const k = f.positions.indexOf(start);
      const limit = r.int(start, f.buf.length);
      const room = r.int(0, 2) === 0 ? r.int(0, f.buf.length) : Number.MAX_SAFE_INTEGER;
      const offset = first + k;
      const indexBase = offset - r.int(0, Math.min(offset, 20));
      const indexEvery = r.int(1, 8);
      const outLength = RUN_OUT_FIELDS + r.int(0, 12);
      const salt = r.u32();
      const po = new Float64Array(outLength);
      const no = new Float64Array(outLength);
      const pt = portable.sealRun(p, start, limit, 7, offset, salt, room, po, indexBase, indexEvery);
      const nt = addon.sealRun(n, start, limit, 7, offset, salt, room, no, indexBase, indexEvery);
      expect(pt).toBe(nt);
      expect([...po]).toEqual([...no]);
      expect(Buffer.from(p).equals(Buffer.from(n))).toBe(true);
    }
    expect(() => portable.sealRun(new Uint8Array(64), 0, 64, 1, 0, 0, 64, new Float64Array(2), 0, 1)).toThrow(RangeError);
    expect(() => addon.sealRun(new Uint8Array(64), 0, 64, 1, 0, 0, 64, new Float64Array(2), 0, 1)).toThrow(RangeError);
  });
});

/** Every topic's entries, read by iterate. */
async function contents(wal: Walrus, topics: string[]): Promise<Map<string, string[]>> {
  const out = new Map<string, string[]>();
  for (const t of topics) out.set(t, (await collect(wal.iterate(t))).map((e) => Buffer.from(e.data).toString('base64')));
  return out;
}

async function writeSome(wal: Walrus, seed: number): Promise<void> {
  for (let i = 0; i < 300; i++) wal.append(`t${i % 4}`, pseudoRandom(seed + i, (i * 131) % 3000));
  wal.batchAppend('t1', [pseudoRandom(seed, 10), pseudoRandom(seed + 1, 70_000), pseudoRandom(seed + 2, 0)]);
  await wal.sync();
}

describe('a log written on one path reads the same on the other', () => {
  const topics = ['t0', 't1', 't2', 't3'];
  const geometry = { shards: 2, blockBytes: 4096, segmentBlocks: 8, fsync: FsyncSchedule.NoFsync };

  it.each([
    ['native', 'portable'],
    ['portable', 'native'],
  ] as const)('written on %s, reopened on %s, then on the first again', async (a, b) => {
    const dir = tempDir('walrus-paths-');
    let wal = await Walrus.open({ dir, ...geometry, io: a });
    const nativeIo = addon.uringSupported() ? 'io_uring+pwritev' : 'pwritev';
    expect(wal.stats().io).toBe(a === 'portable' ? 'portable' : nativeIo);
    await writeSome(wal, 1);
    const written = await contents(wal, topics);
    await wal.close();

    wal = await Walrus.open({ dir, ...geometry, io: b });
    expect(wal.stats().io).toBe(b === 'portable' ? 'portable' : nativeIo);
    expect(wal.stats().recoveredClean).toBe(true);
    expect(await contents(wal, topics)).toEqual(written);
    // Consume part of a topic (cursor records) and write more on this path.
    for (let i = 0; i < 50; i++) expect((await wal.readNext('t2'))?.offset).toBe(i);
    await writeSome(wal, 2);
    const more = await contents(wal, topics);
    await wal.close();

    wal = await Walrus.open({ dir, ...geometry, io: a });
    try {
      expect(await contents(wal, topics)).toEqual(more);
      expect((await wal.readNext('t2'))?.offset).toBe(50);
    } finally {
      await wal.close();
    }
  });
});

describe('what only the addon has, on the portable path', () => {
  it.each(['mmap', 'memory'] as const)("the '%s' backend fails with ERR_WALRUS_ADDON_REQUIRED, before any file is made", async (backend) => {
    const dir = join(tempDir('walrus-noaddon-'), 'log');
    await expect(Walrus.open({ dir, backend, io: 'portable' })).rejects.toMatchObject({
      code: 'ERR_WALRUS_ADDON_REQUIRED',
      message: expect.stringMatching(new RegExp(`'${backend}' backend needs the native addon.*options.io is 'portable'`)),
    });
    expect(existsSync(dir)).toBe(false);
  });

  it('the binding refuses mapped contexts and memory files with the same code', () => {
    const ring = new SharedArrayBuffer(4096);
    expect(() => new portable.IoContext(ring, false, 1, true)).toThrow(expect.objectContaining({ code: 'ERR_WALRUS_ADDON_REQUIRED' }));
    expect(() => portable.memfdCreate('x')).toThrow(expect.objectContaining({ code: 'ERR_WALRUS_ADDON_REQUIRED' }));
    expect(() => portable.fallocate(0, 0, 1)).toThrow(expect.objectContaining({ code: 'EOPNOTSUPP', errno: 95, syscall: 'fallocate' }));
    expect(portable.uringSupported()).toBe(false);
  });

  it('reports failed calls as the addon does (positive errno, its syscall names)', () => {
    const dir = tempDir('walrus-errors-');
    const missing = join(dir, 'missing');
    const flags = portable.constants.O_RDONLY;
    const p = (() => {
      try {
        portable.open(missing, flags, 0);
      } catch (e) {
        return e as NodeJS.ErrnoException;
      }
    })();
    const n = (() => {
      try {
        addon.open(missing, addon.constants.O_RDONLY, 0);
      } catch (e) {
        return e as NodeJS.ErrnoException;
      }
    })();
    expect(p).toMatchObject({ code: n!.code, errno: n!.errno, syscall: n!.syscall, message: n!.message });
    expect(() => portable.fdatasync(987654)).toThrow(expect.objectContaining({ code: 'EBADF', errno: 9, syscall: 'fdatasync', message: 'EBADF: bad file descriptor, fdatasync' }));
  });

  it('options.io is validated like the other options', async () => {
    await expect(Walrus.open({ dir: tempDir(), io: 'fast' as 'auto' })).rejects.toMatchObject({ name: 'TypeError', code: 'ERR_INVALID_ARG_VALUE', message: expect.stringContaining('options.io') });
  });
});

/** Runs `script` (ESM) with node in `cwd`; resolves with its exit code, stdout and stderr. */
function run(script: string, env: NodeJS.ProcessEnv, args: string[] = []): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [...args, '--input-type=module', '-e', script], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    p.on('error', reject);
    p.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

/** The environment of a child, without WALRUS_NATIVE / WALRUS_QUIET unless given. */
function childEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.WALRUS_NATIVE;
  delete env.WALRUS_QUIET;
  delete env.NODE_DEBUG;
  return { ...env, ...extra };
}

describe('where the addon does not load (a copy of the package without build/)', () => {
  /** The package as an install without a compiler leaves it: package.json and dist/, no build/. */
  function packageWithoutAddon(): string {
    const root = join(tempDir('walrus-noaddon-pkg-'), 'walrus-ts');
    mkdirSync(root);
    cpSync(join(PACKAGE_ROOT, 'package.json'), join(root, 'package.json'));
    cpSync(join(PACKAGE_ROOT, 'dist'), join(root, 'dist'), { recursive: true });
    symlinkSync(join(PACKAGE_ROOT, 'node_modules'), join(root, 'node_modules'), 'dir');
    return root;
  }

  const script = (root: string, dir: string, io = 'auto') => `
    import { Walrus } from ${JSON.stringify(pathToFileURL(join(root, 'dist', 'index.js')).href)};
    try {
      const wal = await Walrus.open({ dir: ${JSON.stringify(dir)}, shards: 2, io: ${JSON.stringify(io)} });
      for (let i = 0; i < 100; i++) wal.append('t', 'x' + i);
      await wal.sync();
      let n = 0;
      for await (const e of wal.iterate('t')) n++;
      process.stdout.write(JSON.stringify({ io: wal.stats().io, n }));
      await wal.close();
    } catch (e) {
      process.stdout.write(JSON.stringify({ error: e.code, message: e.message }));
    }`;

  it('uses the portable path, says so in one stderr line, and WALRUS_QUIET=1 hides it', async () => {
    const root = packageWithoutAddon();
    const loud = await run(script(root, tempDir()), childEnv());
    expect(JSON.parse(loud.stdout)).toEqual({ io: 'portable', n: 100 });
    const lines = loud.stderr.split('\n').filter((l) => l !== '');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^walrus-ts: the native addon did not load \(.*walrus\.node.*\); using the portable node:fs I\/O path/);
    const quiet = await run(script(root, tempDir()), childEnv({ WALRUS_QUIET: '1' }));
    expect(JSON.parse(quiet.stdout)).toEqual({ io: 'portable', n: 100 });
    expect(quiet.stderr).toBe('');
  });

  it("io: 'native' fails with ERR_WALRUS_ADDON_REQUIRED", async () => {
    const root = packageWithoutAddon();
    const out = await run(script(root, tempDir(), 'native'), childEnv({ WALRUS_QUIET: '1' }));
    expect(JSON.parse(out.stdout)).toMatchObject({ error: 'ERR_WALRUS_ADDON_REQUIRED', message: expect.stringContaining("options.io is 'native'") });
  });

  it('WALRUS_NATIVE=0 selects the portable path without a line, where the addon loads', async () => {
    const out = await run(script(PACKAGE_ROOT, tempDir()), childEnv({ WALRUS_NATIVE: '0' }));
    expect(JSON.parse(out.stdout)).toEqual({ io: 'portable', n: 100 });
    expect(out.stderr).toBe('');
  });
});

describe('the test seams of the portable path do not ship', () => {
  it('npm pack leaves out test/portable-faults.cjs and packs the no-op module #walrus-portable-faults resolves to', () => {
    const out = execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: PACKAGE_ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    const files = (JSON.parse(out) as { files: { path: string }[] }[])[0]!.files.map((f) => f.path);
    expect(files).toContain('dist/shared/portable/no-faults.cjs');
    expect(files.filter((f) => f.startsWith('test/'))).toEqual([]);
    expect(JSON.parse(readFileSync(join(PACKAGE_ROOT, 'package.json'), 'utf8')).imports['#walrus-portable-faults'].default).toBe('./dist/shared/portable/no-faults.cjs');
  });

  it('without --conditions=walrus-test the binding has no seams; with it, the addon test build has the same four', async () => {
    const url = pathToFileURL(join(PACKAGE_ROOT, 'dist', 'shared', 'portable', 'index.js')).href;
    const probe = `
      import { portableBinding as b } from ${JSON.stringify(url)};
      const c = new b.IoContext(new SharedArrayBuffer(64), false, 1);
      process.stdout.write(JSON.stringify({ seams: b.testSeams === undefined ? null : Object.keys(b.testSeams).sort(), inject: typeof c.injectFault }));`;
    const shipped = await run(probe, childEnv());
    expect(JSON.parse(shipped.stdout)).toEqual({ seams: null, inject: 'undefined' });
    const test = await run(probe, childEnv(), ['--conditions=walrus-test']);
    expect(JSON.parse(test.stdout)).toEqual({ seams: Object.keys(addon.testSeams!).sort(), inject: 'function' });
  });
});

describe('the directory lock across processes and paths', () => {
  const INDEX = pathToFileURL(join(PACKAGE_ROOT, 'dist', 'index.js')).href;
  type Path = 'native' | 'portable';

  /** A child on `path` that opens `dir`, prints "open" or the error code, and holds it until stdin closes. */
  function holder(dir: string, path: Path): { p: ChildProcess; first: Promise<string> } {
    const script = `
      import { Walrus } from ${JSON.stringify(INDEX)};
      try {
        const wal = await Walrus.open({ dir: ${JSON.stringify(dir)}, shards: 1 });
        process.stdout.write((wal.stats().io === 'portable' ? 'portable' : 'native') + '\\n');
        process.stdin.resume();
        process.stdin.on('end', async () => { await wal.close(); process.exit(0); });
      } catch (e) {
        process.stdout.write((e.code ?? 'error') + ' ' + e.message + '\\n');
        process.exit(0);
      }`;
    const env = childEnv(path === 'portable' ? { WALRUS_NATIVE: '0' } : {});
    const p = spawn(process.execPath, ['--input-type=module', '-e', script], { env, stdio: ['pipe', 'pipe', 'inherit'] });
    const first = new Promise<string>((resolve, reject) => {
      let out = '';
      p.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('\n')) resolve(out.trim());
      });
      p.on('error', reject);
      p.on('exit', () => resolve(out.trim()));
    });
    return { p, first };
  }

  async function stop(h: { p: ChildProcess }): Promise<void> {
    const gone = new Promise((r) => h.p.on('exit', r));
    h.p.stdin!.end();
    await gone;
  }

  const pairs: [Path, Path][] = [
    ['native', 'native'],
    ['portable', 'portable'],
    ['native', 'portable'],
    ['portable', 'native'],
  ];

  it.each(pairs)('a %s holder refuses a %s opener; once it closes, the opener gets the log', async (a, b) => {
    const dir = tempDir('walrus-xlock-');
    const first = holder(dir, a);
    expect(await first.first).toBe(a);
    const second = holder(dir, b);
    expect(await second.first).toMatch(/^ERR_WALRUS_LOCKED /);
    await stop(first);
    const third = holder(dir, b);
    expect(await third.first).toBe(b);
    await stop(third);
  }, 60_000);

  it.each(['native', 'portable'] as const)('kill -9 of a portable holder frees the log for a %s opener, and that opener removes the dead record', async (b) => {
    const dir = tempDir('walrus-xlock-');
    const first = holder(dir, 'portable');
    expect(await first.first).toBe('portable');
    const records = readdirSync(dir).filter((f) => f.startsWith('walrus.owner.'));
    expect(records).toHaveLength(1);
    const gone = new Promise((r) => first.p.on('exit', r));
    first.p.kill('SIGKILL');
    await gone;
    expect(existsSync(join(dir, records[0]!))).toBe(true);
    const second = holder(dir, b);
    expect(await second.first).toBe(b);
    expect(existsSync(join(dir, records[0]!))).toBe(false);
    await stop(second);
  }, 60_000);
});

describe('owner records (Linux)', () => {
  // The planted records name this test process (alive) unless a test says otherwise.
  const stat = readFileSync('/proc/self/stat', 'latin1');
  const me = {
    walrus: 'owner',
    pid: process.pid,
    start: stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]!,
    boot: readFileSync('/proc/sys/kernel/random/boot_id', 'latin1').trim(),
    pidns: readlinkSync('/proc/self/ns/pid'),
    host: hostname(),
  };

  function plant(dir: string, fields: Record<string, unknown>): string {
    const file = join(dir, 'walrus.owner.00000000000000aa');
    writeFileSync(file, JSON.stringify({ ...me, path: 'portable', since: new Date(0).toISOString(), ...fields }), { mode: 0o600 });
    return file;
  }

  /**
   * Opens and closes `dir` in a child process on `path` (the lock is taken by the process's
   * main thread, so the portable lock needs a process without the addon: WALRUS_NATIVE=0);
   * rejects with what the open threw.
   */
  async function opens(dir: string, path: 'native' | 'portable'): Promise<void> {
    const script = `
      import { Walrus } from ${JSON.stringify(pathToFileURL(join(PACKAGE_ROOT, 'dist', 'index.js')).href)};
      try {
        const wal = await Walrus.open({ dir: ${JSON.stringify(dir)}, shards: 1 });
        const io = wal.stats().io === 'portable' ? 'portable' : 'native';
        await wal.close();
        process.stdout.write(JSON.stringify({ io }));
      } catch (e) {
        process.stdout.write(JSON.stringify({ error: { code: e.code, file: e.file, message: e.message } }));
      }`;
    const out = await run(script, childEnv(path === 'portable' ? { WALRUS_NATIVE: '0' } : {}));
    const result = JSON.parse(out.stdout) as { io?: string; error?: object };
    if (result.error !== undefined) throw result.error;
    expect(result.io).toBe(path);
  }

  it.each(['native', 'portable'] as const)('a record naming a live pid with another start time (a reused pid) is taken over (%s)', async (io) => {
    const dir = tempDir('walrus-rec-');
    const file = plant(dir, { start: String(Number(me.start) + 1) });
    await opens(dir, io);
    expect(existsSync(file)).toBe(false);
  });

  it.each(['native', 'portable'] as const)('a record of a pid that does not exist is taken over (%s)', async (io) => {
    const dir = tempDir('walrus-rec-');
    const pid = Number(readFileSync('/proc/sys/kernel/pid_max', 'latin1')) - 1;
    expect(existsSync(`/proc/${pid}`)).toBe(false);
    const file = plant(dir, { pid });
    await opens(dir, io);
    expect(existsSync(file)).toBe(false);
  });

  it.each(['native', 'portable'] as const)('a record from another PID namespace (another container) is refused, naming the holder and the file to delete (%s)', async (io) => {
    const dir = tempDir('walrus-rec-');
    const file = plant(dir, { pidns: 'pid:[1]', pid: 1234 });
    await expect(opens(dir, io)).rejects.toMatchObject({
      code: 'ERR_WALRUS_LOCKED',
      file,
      message: expect.stringMatching(/names pid 1234 on .* PID namespace pid:\[1\].*another container.*delete .*walrus\.owner\.00000000000000aa and open again/),
    });
    expect(existsSync(file)).toBe(true);
  });

  it('a record from another host is refused; one from an earlier boot of this host is taken over', async () => {
    const dir = tempDir('walrus-rec-');
    const other = plant(dir, { boot: 'another-boot', host: `${me.host}-elsewhere` });
    await expect(opens(dir, 'portable')).rejects.toMatchObject({ code: 'ERR_WALRUS_LOCKED', message: expect.stringContaining(`written on host ${me.host}-elsewhere`) });
    expect(existsSync(other)).toBe(true);
    const earlier = plant(dir, { boot: 'an-earlier-boot' });
    await opens(dir, 'portable');
    expect(existsSync(earlier)).toBe(false);
  });

  it("a native record of a live process: a native opener, holding the flock, knows it is stale; a portable opener cannot and refuses", async () => {
    // What a copy of a live log's directory holds (a backup taken while it was open).
    const dir = tempDir('walrus-rec-');
    const file = plant(dir, { path: 'native' });
    await expect(opens(dir, 'portable')).rejects.toMatchObject({ code: 'ERR_WALRUS_LOCKED', message: expect.stringContaining(`by pid ${process.pid}`) });
    expect(existsSync(file)).toBe(true);
    await opens(dir, 'native');
    expect(existsSync(file)).toBe(false);
  });
});
