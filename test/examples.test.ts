// Every program in examples/ runs here as a child process against a temporary directory,
// and its output is checked against what the program must have done.
import { execFile } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { tempDir } from './helpers.js';

const EXAMPLES = fileURLToPath(new URL('../examples/', import.meta.url));
const run = async (name: string, ...args: string[]): Promise<string> => {
  const { stdout } = await promisify(execFile)(process.execPath, [`${EXAMPLES}${name}`, ...args], { timeout: 120_000 });
  return stdout;
};
const num = (out: string, re: RegExp): number => {
  const m = re.exec(out);
  if (!m) throw new Error(`${re} not found in:\n${out}`);
  return Number(m[1]);
};

// jetstream-outbox.mjs needs a nats-server: test/jetstream.test.ts runs it.
describe('examples', () => {
  it('every example has a test here', () => {
    expect(readdirSync(EXAMPLES).filter((f) => f.endsWith('.mjs')).sort()).toEqual(['bulk-aggregate.mjs', 'event-sourcing.mjs', 'ingest.mjs', 'jetstream-outbox.mjs', 'job-queue.mjs', 'piscina-producers.mjs', 'stream-pipeline.mjs', 'two-consumers.mjs']);
  });

  it('piscina-producers.mjs: a piscina pool\'s tasks append through the handle in its workerData; offsets dense, batches whole', async () => {
    const out = await run('piscina-producers.mjs', tempDir(), '200');
    expect(out).toContain('200 tasks appended from a pool of 4 threads');
    expect(out).toContain('audit offsets dense: true');
    // 200 tasks of 1 to 5 orders (task i: 1 + i % 5): 40 * (1 + 2 + 3 + 4 + 5).
    expect(out).toContain('orders read back: 600, batches whole at their offsets: true');
  });

  it('job-queue.mjs: every job handed out once across a clean restart, fewer fsyncs than reads; peek, process, checkpoint', async () => {
    const out = await run('job-queue.mjs', tempDir());
    expect(out).toContain('enqueued 1000 jobs');
    const before = num(out, /before restart: (\d+) jobs done/);
    expect(before).toBeGreaterThanOrEqual(500);
    expect(before).toBeLessThan(1000);
    expect(out).toContain('after restart: 1000 jobs done, each handed out once');
    const counts = [...out.matchAll(/w\d=(\d+)/g)].map((m) => Number(m[1]));
    expect(counts.reduce((a, b) => a + b, 0)).toBe(1000);
    expect(num(out, /fsyncs after the restart: (\d+)/)).toBeLessThan(1000 - 500);
    expect(out).toContain('peek, process, checkpoint: 100 critical jobs processed in order');
  });

  it('event-sourcing.mjs: replay rebuilds the balances from the typed events', async () => {
    const out = await run('event-sourcing.mjs', tempDir());
    expect(out).toContain('replayed 105 events');
    // Deposits of 10*i: odd i to alice (25,000), even i to bob (24,500); then -500 / +500.
    expect(out).toContain('alice: balance 24500, open, since 2026-01-01T00:00:00.000Z');
    expect(out).toContain('bob: balance 25000, closed, since 2026-01-01T00:00:01.000Z');
    // Shared structures keep each event small (the keys are not repeated in every record).
    expect(num(out, /\(([\d.]+) bytes each on average\)/)).toBeLessThan(40);
  });

  it('ingest.mjs: every acknowledged entry is read back; group commit uses fewer fsyncs than batches', async () => {
    const out = await run('ingest.mjs', tempDir(), '60');
    expect(out).toContain('ingested 60000 entries in 60 durable batches of 1000');
    expect(out).toContain('read back: 60000 entries');
    expect(num(out, /group commit: (\d+) fsyncs for 60 acknowledged batches/)).toBeLessThan(60);
  });

  it('bulk-aggregate.mjs: every click aggregated once, in fetches of up to 65,536, nothing left after commit and reopen', async () => {
    const out = await run('bulk-aggregate.mjs', tempDir(), '200000');
    // 16-byte events: 1 MiB holds 65,536, the entry cap: 3 full fetches and the rest.
    expect(out).toContain('aggregated 200000 clicks in 4 fetches (largest: 65536 entries)');
    expect(out).toContain(`views per page: ${Array(8).fill(25000).join(' ')}`);
    // User ids are i % 1000: 200 rounds of 0..999.
    expect(out).toContain(`sum of user ids: ${200 * 499_500}`);
    expect(out).toContain('after reopen: nothing left to read');
  });

  it('two-consumers.mjs: two named consumers of one topic each read every order once, across a restart, at their own pace', async () => {
    const out = await run('two-consumers.mjs', tempDir());
    expect(out).toContain('before restart: runner handled 600, audit recorded 512');
    expect(out).toContain('audit: committed 512, lag 488');
    expect(out).toContain('runner: committed 600, lag 400');
    expect(out).toContain('after restart: runner resumes at 600, audit at 512');
    // Totals are 1 + i % 50 for i < 1000: 20 rounds of 1..50.
    expect(out).toContain(`done: runner handled 1000 orders, audit recorded 1000, revenue ${20 * 1275}`);
  });

  it('stream-pipeline.mjs: the filter keeps every 7th click, all stored durably, source drained', async () => {
    const out = await run('stream-pipeline.mjs', tempDir());
    expect(out).toContain('consumed 5000 clicks, kept 715 home-page visits, stored 715');
    expect(out).toContain('first: u0 at 2023-11-14T22:13:20.000Z');
    expect(out).toContain('source cursor at the end: nothing left');
  });
});
