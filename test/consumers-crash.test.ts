/**
 * Named consumers across kill -9 (issue 16): four consumers of different consistencies read
 * two shared topics at once in a child process (fixtures/consumers-child.mjs), which is killed
 * at a random point of its output, again and again, then drained. From what each consumer had
 * in its hands before each kill (the lines printed after each read resolved), per consumer
 * and topic:
 * - no consumer skips an entry, except that a StrictlyAtOnce read in flight at a kill is
 *   at-most-once (its entries were consumed before the caller had them: at most one read
 *   per kill, also in a run killed before that consumer printed anything);
 * - StrictlyAtOnce consumers never get an entry twice;
 * - the atLeastOnce(3) consumers get at most (3 - 1) + the last read's entries again (4 for
 *   'a', which fetches 4 at a time; 1 for the subscriber 'l', each of whose entries is one
 *   read, whether it came from a peek or from memory);
 * - every consumer ends at the end of every topic, whatever the others did (a consumer's
 *   progress never moves another's: each reads every entry).
 * The reads run with read-ahead (issue 15), which must change none of this: the children
 * report how many reads their read-aheads answered. The subscriber 'l' also reads a third
 * topic, 'gamma', that each child appends to while it runs, so that it delivers entries from
 * memory (main/live-tail.ts) up to the kill; the same rules hold for it there (checked up to
 * the end the draining child reports), and the children report how many it delivered so.
 */
import { spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Walrus } from '../dist/index.js';
import { tempDir } from './helpers.js';

const CHILD = resolve('test/fixtures/consumers-child.mjs');
const TOPICS = ['alpha', 'beta'] as const;
const CYCLES = Number(process.env.WALRUS_CONSUMERS_CYCLES ?? 25);
/**
 * Entries per topic: a run prints at most 60 lines and the consumers need 8 lines per offset
 * (four consumers, two topics) to drain, so 20 offsets per cycle keep every killed run from
 * exhausting the log (a run that finds nothing to print would never reach its kill).
 */
const ENTRIES = Math.max(400, CYCLES * 20);

/** The most entries one read in flight can hold, per consumer (fixtures/consumers-child.mjs; d: 30 bytes of payloads of at least 6). */
const IN_FLIGHT = { s: 1, a: 4, d: 5, l: 0 } as Record<string, number>;
/** What may be delivered again after a kill: atLeastOnce(3) with reads of 4; a subscriber's every entry is one read. */
const REDELIVER = { s: 0, a: 2 + 4, d: 0, l: 2 + 1 } as Record<string, number>;
/** The atLeastOnce consumers: they never skip an entry. */
const AT_LEAST_ONCE = new Set(['a', 'l']);

/** "<consumer> <topic>" -> offsets printed in one run; "ra" -> reads answered from read-aheads; "lt" -> entries delivered from memory; "end" -> gamma's end (draining run). */
type Lines = Map<string, number[]>;

/**
 * Runs the child; kills it with SIGKILL after `killAfter` lines (null: lets it drain). With
 * `onGamma` only gamma's appends and subscriber run, and the kill comes after `killAfter`
 * lines delivered once the subscriber delivers from memory.
 */
function run(dir: string, killAfter: number | null, onGamma = false): Promise<Lines> {
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, [CHILD, dir, killAfter === null ? '1' : '0', onGamma ? '1' : '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
    const seen: Lines = new Map();
    if (onGamma) seen.set('gammaOnly', []);
    let buffered = '';
    let count = 0;
    let stderr = '';
    let finished = false;
    child.stderr.on('data', (d) => (stderr += d));
    child.stdout.on('data', (d) => {
      buffered += d;
      const lines = buffered.split('\n');
      buffered = lines.pop()!;
      for (const line of lines) {
        if (line === 'done') {
          finished = true;
          continue;
        }
        if (line.startsWith('ra ') || line.startsWith('lt ')) {
          seen.set(line.slice(0, 2), [Number(line.slice(3))]);
          continue;
        }
        if (line.startsWith('end ')) {
          seen.set('end', [Number(line.split(' ')[2])]);
          continue;
        }
        const [who, topic, offset] = line.split(' ');
        const key = `${who} ${topic}`;
        if (!seen.has(key)) seen.set(key, []);
        seen.get(key)!.push(Number(offset));
        // With onGamma lines count once the subscriber delivers from memory (it first catches
        // up with what earlier runs appended, from peeks): it is killed while delivering
        // from memory. Otherwise every line counts, gamma's too.
        const counts = !onGamma || seen.has('lt');
        if (killAfter !== null && counts && ++count === killAfter) child.kill('SIGKILL');
      }
    });
    child.on('error', fail);
    child.on('close', (code, signal) => {
      if (killAfter === null && (code !== 0 || !finished)) fail(new Error(`the draining child exited with ${code ?? signal}: ${stderr}`));
      else if (killAfter !== null && signal !== 'SIGKILL') fail(new Error(`the child ended before the kill (${code ?? signal}): ${stderr}`));
      else done(seen);
    });
  });
}

describe('named consumers across kill -9', () => {
  it(`${CYCLES} kill cycles with four consumers of two shared topics: no skip, no StrictlyAtOnce redelivery, atLeastOnce within its bound`, async () => {
    const dir = tempDir();
    const wal = await Walrus.open({ dir, shards: 2 });
    for (const t of TOPICS) for (let i = 0; i < ENTRIES; i++) wal.append(t, `${t}:${i}`);
    await wal.close();

    const runs: Lines[] = [];
    // Each run prints at most 60 lines of the 8 x ENTRIES the consumers need (see ENTRIES).
    let seed = 7;
    const rand = (n: number): number => ((seed = (seed * 1103515245 + 12345) >>> 0) % n) + 1;
    // Every other run only appends to gamma and delivers it, killed while delivering from memory.
    for (let c = 0; c < CYCLES; c++) runs.push(await run(dir, rand(60), c % 2 === 1));
    runs.push(await run(dir, null));
    const servedAhead = runs.reduce((n, r) => n + (r.get('ra')?.[0] ?? 0), 0);
    expect(servedAhead).toBeGreaterThan(0);
    const fromMemory = runs.reduce((n, r) => n + (r.get('lt')?.[0] ?? 0), 0);
    expect(fromMemory).toBeGreaterThan(0);
    const gammaEnd = runs[runs.length - 1]!.get('end')![0]!;

    const report: string[] = [];
    const checks: [string, string, number][] = [];
    for (const who of ['s', 'a', 'd', 'l']) for (const t of TOPICS) checks.push([who, t, ENTRIES]);
    checks.push(['l', 'gamma', gammaEnd]);
    for (const [who, t, end] of checks) {
      {
        const key = `${who} ${t}`;
        let next = 0; // the lowest offset this consumer never had
        let skipped = 0;
        let again = 0;
        // Kills since this consumer last printed: each can take one read in flight (a run
        // killed before it printed anything for this topic still had that read).
        let kills = 0;
        runs.forEach((r, k) => {
          // A gamma-only run read nothing else: no read of another pair was in flight at its kill.
          if (r.has('gammaOnly') && key !== 'l gamma') return;
          const got = r.get(key) ?? [];
          if (got.length === 0) {
            kills++;
            return;
          }
          // Within a run, one reader per consumer and topic: consecutive offsets.
          for (let i = 1; i < got.length; i++) expect(got[i], `${key}, run ${k}`).toBe(got[i - 1]! + 1);
          const first = got[0]!;
          if (first > next) {
            // Only a StrictlyAtOnce read in flight at each kill since may be lost.
            expect(first - next, `${key}: skipped entries at the start of run ${k}`).toBeLessThanOrEqual(IN_FLIGHT[who]! * (kills + 1));
            expect(AT_LEAST_ONCE.has(who), `${key}: the atLeastOnce consumer skipped ${first - next} entries at run ${k}`).toBe(false);
            skipped += first - next;
          } else if (first < next) {
            expect(next - first, `${key}: delivered again at run ${k}`).toBeLessThanOrEqual(REDELIVER[who]!);
            again += next - first;
          }
          next = Math.max(next, got[got.length - 1]! + 1);
          kills = 0;
        });
        expect(next, `${key}: consumed to the end`).toBe(end);
        report.push(`${key}: ${skipped} lost in flight, ${again} delivered again`);
      }
    }
    console.log(`consumers across ${CYCLES} kills (${servedAhead} reads answered from read-aheads; ${fromMemory} entries of gamma, ${gammaEnd} in all, delivered from memory):\n  ${report.join('\n  ')}`);
  }, 300_000);
});
