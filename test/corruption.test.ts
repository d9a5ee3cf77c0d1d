/**
 * Corruption sweep (docs/DURABILITY.md): single-bit flips, truncations and garbage tails of
 * a small log, each recovered in this process by the worker's recovery code on a fresh copy
 * (see corruption-sweep.ts for the oracle). Two logs: a durable one (clean close; it holds
 * every meta record kind: topic, sync, close, cursor, trim, snapshot), where damage must be
 * reported as ERR_WALRUS_CORRUPT or be harmless, and an unsynced one (no sync mark), where
 * damage may cut the log to a prefix, counted as torn bytes.
 *
 * `npm test` runs every bit of every header (segment, block, record) and a stride of the
 * rest; `npm run test:corruption-long` (WALRUS_CORRUPTION_FULL=1) runs every bit and every
 * truncation of every file.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Fixture, Tally, durableFixture, flipBit, judge, overwrite, pseudoRandomGarbage, scratchRoot, truncate, unsyncedFixture } from './corruption-sweep.js';

const FULL = process.env.WALRUS_CORRUPTION_FULL === '1';
/** In the fast subset: one bit in BIT_STRIDE outside headers, one cut in CUT_STRIDE (see inFastSubset). */
const BIT_STRIDE = 127;
const CUT_STRIDE = 37;

let root: { dir: string; done: () => void };
const fixtures: Fixture[] = [];
const report: string[] = [];

beforeAll(async () => {
  root = scratchRoot();
  fixtures.push(await durableFixture(root.dir), await unsyncedFixture(root.dir));
}, 120_000);

afterAll(() => {
  root?.done();
  for (const line of report) console.log(line);
});

/** Whether a byte is in a segment or block header (64 bytes) or a record header (32). */
function headerAt(fx: Fixture, file: string, byte: number): 'block' | 'record' | null {
  const h = fx.headers.find((x) => x.file === file && byte >= x.from && byte < x.to);
  return h === undefined ? null : h.to - h.from === 64 ? 'block' : 'record';
}

/**
 * The fast subset: every bit of segment and block headers, one bit of every record-header
 * byte (which bit rotates from byte to byte), and one bit in BIT_STRIDE of everything else.
 */
function inFastSubset(fx: Fixture, file: string, bit: number): boolean {
  const kind = headerAt(fx, file, bit >> 3);
  if (kind === 'block') return true;
  if (kind === 'record') return (bit & 7) === ((bit >> 3) * 3) % 8;
  return bit % BIT_STRIDE === 0;
}

function finish(fx: Fixture, what: string, tally: Tally): void {
  report.push(`corruption sweep (${FULL ? 'full' : 'fast subset'}): ${fx.name} log, ${what}: ${tally.summary()}`);
  expect(tally.violations, tally.violations.join('\n')).toEqual([]);
}

describe.each([0, 1])('corruption of a small log (fixture %i)', (which) => {
  it('every single-bit flip of header bytes (and in the long run of every byte) is reported or harmless, never wrong data', () => {
    const fx = fixtures[which]!;
    const tally = new Tally();
    const work = join(root.dir, `flip-${fx.name}`);
    for (const [file, bytes] of fx.files) {
      for (let bit = 0; bit < bytes.length * 8; bit++) {
        if (!FULL && !inFastSubset(fx, file, bit)) continue;
        tally.add(`${file} bit ${bit}`, judge(fx, work, flipBit(fx.files, file, bit)));
      }
    }
    finish(fx, 'bit flips', tally);
    // The sweep reached every region: damage found (reported or repaired) and damage ignored.
    if (fx.durable) expect(tally.counts.get('corrupt') ?? 0).toBeGreaterThan(0);
    else expect(tally.counts.get('lostTail') ?? 0).toBeGreaterThan(0);
    expect(tally.counts.get('unaffected') ?? 0).toBeGreaterThan(0);
  }, 600_000);

  it('every truncation of every file is reported, harmless or (unsynced) a counted prefix', () => {
    const fx = fixtures[which]!;
    const tally = new Tally();
    const work = join(root.dir, `cut-${fx.name}`);
    const lastFile = [...fx.files.keys()].sort().at(-1);
    for (const [file, bytes] of fx.files) {
      for (let cut = 0; cut <= bytes.length; cut++) {
        const edge = fx.headers.some((h) => h.file === file && Math.abs(cut - h.from) <= 1);
        if (!FULL && cut % CUT_STRIDE !== 0 && !edge) continue;
        const result = judge(fx, work, truncate(fx.files, file, cut));
        // The last file cut to nothing or to its bare header looks exactly like a segment
        // creation cut short by a crash (docs/FORMAT.md): recovery removes it.
        if (file === lastFile && (cut === 0 || cut === 64)) tally.addKnownLimit(`${file} cut at ${cut}`, result);
        else tally.add(`${file} cut at ${cut}`, result);
      }
    }
    finish(fx, 'truncations', tally);
  }, 600_000);

  it('random garbage after the last record of a block is a torn tail: counted, zeroed, data intact', () => {
    const fx = fixtures[which]!;
    const tally = new Tally();
    const work = join(root.dir, `garbage-${fx.name}`);
    const seeds = FULL ? 64 : 6;
    for (const tail of fx.tails) {
      const room = tail.to - tail.from;
      for (let s = 0; s < seeds; s++) {
        const length = [1, 7, 31, 32, 33, 200, room][s % 7]!;
        const garbage = pseudoRandomGarbage(s * 7919 + tail.from, Math.min(length, room));
        const result = judge(fx, work, overwrite(fx.files, tail.file, tail.from, garbage));
        tally.add(`${tail.file} garbage of ${garbage.length} at ${tail.from}`, result);
        // A torn tail never fails the open and is always counted.
        if (result !== 'repaired') tally.add(`${tail.file} garbage at ${tail.from}`, `expected a counted torn tail, got ${result}`);
      }
    }
    finish(fx, 'garbage tails', tally);
    expect(tally.counts.get('repaired') ?? 0).toBeGreaterThan(0);
  }, 600_000);
});
