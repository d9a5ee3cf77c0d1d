import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { Walrus, ReadConsistency } from '../dist/index.js';
import { runCrashCycles, violations } from './fixtures/crash-harness.mjs';
import { genPayload, payloadGen } from './fixtures/payload.mjs';
import { tempDir } from './helpers.js';

const CHILD = fileURLToPath(new URL('./fixtures/crash-child.mjs', import.meta.url));

describe('kill -9 cycles of a child appending and consuming', () => {
  // The harness (test/fixtures/crash-harness.mjs): two namespaces (StrictlyAtOnce and
  // atLeastOnce(8)), 2 shards each, 10 topics with hostile names, tiny blocks, segments and
  // rings so that rotation, deletion of consumed segments and ring wrap happen; a random fsync
  // schedule and I/O path per cycle. Long runs: `npm run test:crash-long`.
  it('loses no acknowledged entry, corrupts, duplicates or halves nothing, and keeps every cursor promise', async () => {
    const { figures, messages } = await runCrashCycles({ base: tempDir(), cycles: 6, seed: 20261122 });
    expect(messages).toEqual([]);
    expect(violations(figures)).toBe(0);
    expect(figures.cycles).toBe(6);
    // The run exercised what it checks.
    expect(figures.ackedEntries).toBeGreaterThan(0);
    expect(figures.delivered).toBeGreaterThan(0);
  }, 120_000);

  it('releases the directory lock when the holder dies', async () => {
    const dir = tempDir();
    const config = { dir, seed: 7, gen: 1, shards: 2, fsync: 'ms', ioUring: 'auto', ringBytes: 1 << 20, blockBytes: 65536, segmentBlocks: 4, instances: [{ key: '', consistency: 'strict', topics: ['t'], produce: [0], consume: [], next: [0] }] };
    const child = spawn(process.execPath, [CHILD, JSON.stringify(config)], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve) => child.stdout.on('data', (d: Buffer) => d.toString().startsWith('ready') && resolve()));
    child.kill('SIGKILL');
    await new Promise((r) => child.on('exit', r));
    const wal = await Walrus.open({ dir, shards: 2 });
    await wal.close();
  });
});

describe('directory lock', () => {
  it('refuses a second open of the same namespace in the same process, allows other keys', async () => {
    const dir = tempDir();
    const a = await Walrus.open({ dir });
    try {
      await expect(Walrus.open({ dir })).rejects.toMatchObject({ code: 'ERR_WALRUS_LOCKED' });
      const b = await Walrus.open({ dir, key: 'other' });
      await b.close();
    } finally {
      await a.close();
    }
    const again = await Walrus.open({ dir });
    await again.close();
  });
});

const QUEUES = ['q1', 'q2', 'q3'];

/**
 * Starts a consuming child, kills it with SIGKILL after `ms`; returns the highest offset it
 * printed per topic, and the topic of the readNext that was in flight at the kill.
 */
function consumeAndKill(dir: string, mode: string, ms: number): Promise<{ last: Map<string, number>; inflight: string | undefined }> {
  return new Promise((resolve, reject) => {
    // The crash child with nothing to produce: it only consumes (tiny segments, so that
    // consumed ones are deleted while it runs and gets killed).
    const config = {
      dir,
      seed: ms,
      gen: 2,
      shards: 2,
      fsync: 'ms',
      ioUring: 'auto',
      ringBytes: 1 << 20,
      blockBytes: 4096,
      segmentBlocks: 4,
      instances: [{ key: '', consistency: mode === 'strict' ? 'strict' : Number(mode), topics: QUEUES, produce: [], consume: [0, 1, 2], next: [300, 300, 300], paceMs: 0, readNextOnly: true }],
    };
    const child = spawn(process.execPath, [CHILD, JSON.stringify(config)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    let timer: NodeJS.Timeout | undefined;
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (timer === undefined && out.includes('ready\n')) timer = setTimeout(() => child.kill('SIGKILL'), ms);
    });
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('exit', (code, signal) => {
      if (signal !== 'SIGKILL') return reject(new Error(`consumer exited with ${code}/${signal}: ${err}`));
      const last = new Map<string, number>();
      let inflight: string | undefined;
      for (const line of out.split('\n')) {
        const [tag, , index, off] = line.split(' ');
        const topic = QUEUES[Number(index)];
        expect(tag).not.toBe('X');
        if (tag === 'R') inflight = topic;
        if (tag === 'D') {
          // Within one consumer process, a topic's entries come in order, each once.
          const prev = last.get(topic!);
          if (prev !== undefined) expect(Number(off)).toBe(prev + 1);
          last.set(topic!, Number(off));
        }
      }
      resolve({ last, inflight });
    });
  });
}

describe('kill -9 of a consuming child process', () => {
  it.each([
    ['StrictlyAtOnce never redelivers', 'strict', 0],
    ['atLeastOnce(8) redelivers at most 8 and skips none', '8', 8],
  ])('%s', async (_name, mode, n) => {
    const dir = tempDir();
    const consistency = mode === 'strict' ? ReadConsistency.StrictlyAtOnce : ReadConsistency.atLeastOnce(n);
    const geometry = { blockBytes: 4096, segmentBlocks: 4 };
    const setup = await Walrus.open({ dir, shards: 2, consistency, ...geometry });
    for (let i = 0; i < 900; i++) setup.append(QUEUES[i % 3]!, genPayload(QUEUES[i % 3]!, Math.floor(i / 3), 1));
    await setup.close();
    const setupFiles = readdirSync(dir).filter((f) => f.endsWith('.seg')).length;
    let redelivered = 0;
    let delivered = 0;
    const cursor = new Map<string, number>(QUEUES.map((q) => [q, 0]));
    for (let cycle = 0; cycle < 4; cycle++) {
      const { last, inflight } = await consumeAndKill(dir, mode, 80 + cycle * 40);
      const wal = await Walrus.open({ dir, shards: 2, consistency, ...geometry });
      try {
        for (const q of QUEUES) {
          const printed = last.get(q);
          const from = cursor.get(q)!;
          const peek = await wal.readNext(q, false);
          const next = peek ? peek.offset : 300;
          if (printed === undefined) {
            // Nothing delivered in this cycle: the cursor did not move backwards.
            expect(next).toBeGreaterThanOrEqual(from);
            continue;
          }
          delivered += printed + 1 - from;
          if (mode === 'strict') {
            expect(next).toBeGreaterThan(printed);
          } else {
            // The readNext in flight at the kill may have moved the cursor one further.
            expect(next).toBeLessThanOrEqual(printed + 1 + (inflight === q ? 1 : 0));
            expect(next).toBeGreaterThanOrEqual(printed + 1 - n);
            redelivered += printed + 1 - next;
          }
          cursor.set(q, next);
        }
      } finally {
        await wal.close();
      }
    }
    expect(delivered).toBeGreaterThan(0);
    if (mode === 'strict') expect(redelivered).toBe(0);
    // What remains reads back intact; consuming the rest deletes every consumed segment.
    const check = await Walrus.open({ dir, shards: 2, consistency, ...geometry });
    try {
      for (const q of QUEUES) for await (const e of check.iterate(q)) expect(payloadGen(q, e.offset, e.data)).toBe(1);
      for (const q of QUEUES) while ((await check.batchRead(q, 1 << 20)).length > 0);
      const segs = () => readdirSync(dir).filter((f) => f.endsWith('.seg')).length;
      for (let waited = 0; segs() > 4 && waited < 5000; waited += 20) await new Promise((r) => setTimeout(r, 20));
      expect(segs()).toBeLessThanOrEqual(4); // per shard: the segment being written and the spare
      expect(segs()).toBeLessThan(setupFiles);
    } finally {
      await check.close();
    }
  }, 120_000);
});
