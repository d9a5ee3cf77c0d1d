// The benchmark harness's own logic (bench/lib, the file-based peers): knob parsing, the
// hand-made framing and its read-back, topic spreading over shards, /proc/meminfo parsing.
// Nothing here needs the benchmark packages (bench/node_modules) or measures time.
import { afterEach, describe, expect, it } from 'vitest';
import { fsyncArg, numArg, rawArg, secondsArg } from '../bench/lib/config.mjs';
import { framePayloads, makePayloads } from '../bench/lib/payloads.mjs';
import { meminfoDirty } from '../bench/lib/sampler.mjs';
import { topicsOverShards } from '../bench/lib/walrus.mjs';
import { writev } from '../bench/peers/files.mjs';
import { topicHash } from '../dist/shared/format/topic.js';
import { FsyncSchedule } from '../dist/index.js';
import { tempDir } from './helpers.js';

const savedArgv = process.argv;
afterEach(() => {
  process.argv = savedArgv;
  delete process.env.BENCH_TEST_KNOB;
});

describe('bench knobs', () => {
  it('takes a flag (both spellings) over the environment, and the environment over the default', () => {
    process.env.BENCH_TEST_KNOB = '7';
    process.argv = ['node', 'x.mjs'];
    expect(numArg('knob', 'BENCH_TEST_KNOB', 3)).toBe(7);
    process.argv = ['node', 'x.mjs', '--knob=9'];
    expect(numArg('knob', 'BENCH_TEST_KNOB', 3)).toBe(9);
    process.argv = ['node', 'x.mjs', '--knob', '11'];
    expect(rawArg('knob', 'BENCH_TEST_KNOB')).toBe('11');
    delete process.env.BENCH_TEST_KNOB;
    process.argv = ['node', 'x.mjs'];
    expect(numArg('knob', 'BENCH_TEST_KNOB', 3)).toBe(3);
    process.argv = ['node', 'x.mjs', '--knob=0'];
    expect(() => numArg('knob', 'BENCH_TEST_KNOB', 3)).toThrow(/--knob \/ BENCH_TEST_KNOB must be a number >= 1/);
  });

  it('parses WALRUS_FSYNC as walrus does', () => {
    const make = (v: string) => {
      process.env.BENCH_TEST_KNOB = v;
      return fsyncArg('no-such-flag', 'BENCH_TEST_KNOB').make(FsyncSchedule);
    };
    expect(make('sync-each')).toBe(FsyncSchedule.SyncEach);
    expect(make('no-fsync')).toBe(FsyncSchedule.NoFsync);
    expect(make('async')).toEqual(FsyncSchedule.milliseconds(200));
    expect(make('25ms')).toEqual(FsyncSchedule.milliseconds(25));
    expect(() => make('sometimes')).toThrow(/sync-each, no-fsync, async or <n>ms/);
  });

  it('reads durations in seconds, ms and minutes', () => {
    const secs = (v: string) => {
      process.env.BENCH_TEST_KNOB = v;
      return secondsArg('no-such-flag', 'BENCH_TEST_KNOB', 1);
    };
    expect(secs('10')).toBe(10);
    expect(secs('500ms')).toBe(0.5);
    expect(secs('2m')).toBe(120);
    expect(() => secs('ten')).toThrow(/must be a duration/);
  });
});

describe('bench payloads and framing', () => {
  it('generates the same lengths for the same seed, within 500-1000 bytes, contiguous', () => {
    const a = makePayloads(2000);
    const b = makePayloads(2000);
    expect(a.payloads.map((p: Buffer) => p.length)).toEqual(b.payloads.map((p: Buffer) => p.length));
    expect(Math.min(...a.payloads.map((p: Buffer) => p.length))).toBeGreaterThanOrEqual(500);
    expect(Math.max(...a.payloads.map((p: Buffer) => p.length))).toBeLessThanOrEqual(1000);
    expect(a.payloads.reduce((n: number, p: Buffer) => n + p.length, 0)).toBe(a.totalBytes);
  });

  it('frames each payload as u32 length + bytes', () => {
    const { payloads } = makePayloads(50);
    const { framedAll, framed } = framePayloads(payloads);
    let at = 0;
    for (let i = 0; i < payloads.length; i++) {
      expect(framedAll.readUInt32LE(at)).toBe(payloads[i].length);
      expect(framed[i].subarray(4).equals(payloads[i])).toBe(true);
      at += 4 + payloads[i].length;
    }
    expect(at).toBe(framedAll.length);
  });

  it('the writevSync peer reads back every record it wrote, in order, across read chunks', async () => {
    const dir = tempDir('walrus-bench-lib-');
    // 12,000 records (~9 MB) span three 4 MiB read chunks, so records cut by a chunk end occur.
    const { payloads } = makePayloads(6000);
    const { framed } = framePayloads(payloads);
    const data = { payloads, payloadAt: (s: number) => payloads[s % 6000], framedAt: (s: number) => framed[s % 6000] };
    const h = await writev.open(dir, 'group', data);
    for (let seq = 0; seq < 12_000; seq += 1000) h.writeBatch(seq, 1000);
    h.writeOne(12_000);
    const seen: number[] = [];
    const back = h.readAll((seq: number, got: Buffer) => {
      seen.push(seq);
      expect(got.equals(payloads[seq % 6000])).toBe(true);
    }, 97);
    h.close();
    const bytes = Array.from({ length: 12_001 }, (_, s) => payloads[s % 6000].length).reduce((a, b) => a + b, 0);
    expect(back).toEqual({ entries: 12_001, bytes });
    expect(seen.length).toBe(Math.ceil(12_001 / 97));
  });
});

describe('bench helpers', () => {
  it('spreads topics over shards round-robin by the stable hash', () => {
    const topics = topicsOverShards(12, 4, 'p');
    expect(new Set(topics).size).toBe(12);
    topics.forEach((t: string, k: number) => expect(topicHash(Buffer.from(t, 'utf8')) % 4).toBe(k % 4));
  });

  it('reads Dirty and Writeback from /proc/meminfo', () => {
    const m = meminfoDirty();
    expect(m.dirtyMB).toBeGreaterThanOrEqual(0);
    expect(m.writebackMB).toBeGreaterThanOrEqual(0);
  });
});
