/**
 * Model-based property of the public API: the log behaves like an in-memory list of entries
 * per topic with one cursor each, across append, batchAppend, readNext, batchRead, iterate,
 * sync, deletion of consumed segments and clean close/open cycles, on logs of every shape
 * the options allow (model-gen.ts). `npm test` runs a bounded number of sequences;
 * `npm run test:properties-long` (WALRUS_PROPERTIES_LONG=1) runs many more, longer ones, on
 * more topics. WALRUS_PROPERTIES_SEED (and _PATH) replay a reported counterexample.
 */
import { rmSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Walrus } from '../dist/index.js';
import { ramTempDir } from './helpers.js';
import {
  Append,
  BatchAppend,
  BatchRead,
  ConsumeAll,
  INVALID_NAMES,
  InvalidTopic,
  Iterate,
  type InvalidKind,
  type Model,
  type Real,
  ReadNext,
  Reopen,
  Spread,
  Sync,
  WaitDeleted,
  topicRefArb,
} from './model-commands.js';
import { GENERAL, LONG, MANY, type RunSizes, configArb, openOptions, sizeArb, topicNames, validTopic } from './model-gen.js';

const seedArb = fc.nat({ max: 0x7fffffff });

const commandArbs = [
  fc.tuple(topicRefArb, sizeArb, seedArb).map(([t, s, seed]) => new Append(t, s, seed)),
  fc
    .tuple(topicRefArb, fc.array(sizeArb, { minLength: 0, maxLength: 8 }), seedArb, fc.boolean())
    .map(([t, s, seed, over]) => new BatchAppend(t, s, seed, over && s.length === 0)),
  fc.tuple(fc.nat(), fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 300 })), fc.nat({ max: 200 }), seedArb).map(([start, n, size, seed]) => new Spread(start, n, size, seed)),
  fc.tuple(topicRefArb, fc.boolean()).map(([t, c]) => new ReadNext(t, c)),
  fc.tuple(topicRefArb, fc.nat({ max: 5000 }), fc.boolean()).map(([t, n, c]) => new BatchRead(t, n, c)),
  fc.nat({ max: 1 << 20 }).map((n) => new ConsumeAll(n)),
  fc.tuple(topicRefArb, fc.nat({ max: 12 })).map(([t, b]) => new Iterate(t, b)),
  fc.constant(new Sync()),
  fc.constant(new WaitDeleted()),
  fc.tuple(fc.integer({ min: 1, max: 3 }), fc.boolean()).map(([n, w]) => new Reopen(n, w)),
  fc
    .tuple(fc.constantFrom<InvalidKind>('empty', 'nul', 'surrogate', 'long'), fc.constantFrom('append', 'batchAppend', 'readNext', 'batchRead', 'iterate') as fc.Arbitrary<InvalidTopic['op']>)
    .map(([k, op]) => new InvalidTopic(k, op)),
];

/** fast-check parameters; a reported seed and path replay one counterexample. */
function params(sizes: RunSizes, shrink: boolean): fc.Parameters<unknown> {
  const seed = process.env.WALRUS_PROPERTIES_SEED;
  const path = process.env.WALRUS_PROPERTIES_PATH;
  return {
    numRuns: sizes.numRuns,
    endOnFailure: !shrink,
    ...(seed !== undefined ? { seed: Number(seed) } : {}),
    ...(path !== undefined ? { path } : {}),
  };
}

/**
 * Runs the model over logs drawn with `sizes`; `first` commands run before the drawn ones.
 * Each run's directory goes when the run ends: hundreds of runs (shrinking included) would
 * otherwise pile up in RAM until the test ends.
 */
async function checkModel(sizes: RunSizes, firstArb: fc.Arbitrary<fc.AsyncCommand<Model, Real>[]>, shrink: boolean): Promise<void> {
  let runs = 0;
  let maxTopics = 0;
  let commands = 0;
  await fc.assert(
    fc.asyncProperty(configArb(sizes), firstArb, fc.commands(commandArbs, { maxCommands: sizes.maxCommands, ...(LONG ? { size: 'large' as const } : {}) }), async (cfg, first, cmds) => {
      runs++;
      maxTopics = Math.max(maxTopics, cfg.topicCount);
      const dir = ramTempDir('walrus-model-');
      const names = topicNames(cfg);
      const model: Model = { cfg, names, entries: names.map(() => []), cursors: names.map(() => 0), used: [] };
      const real: Real = { dir, wal: await Walrus.open(openOptions(cfg, dir)) };
      try {
        for (const c of first) await c.run(model, real);
        await fc.asyncModelRun(() => ({ model, real }), cmds);
        // Whatever the sequence ended with, a clean close and open keeps all of it.
        await new Reopen(1, false).run(model, real);
        await real.wal.close();
        commands += [...cmds].length;
      } finally {
        await real.wal.close().catch(() => {});
        rmSync(dir, { recursive: true, force: true });
      }
    }),
    params(sizes, shrink),
  );
  console.log(`model-based test: ${runs} runs (shrinking included), up to ${maxTopics} topics, ${commands} commands in passing runs`);
}

describe('model: append / batchAppend / readNext / batchRead / iterate / deletion / reopen', () => {
  it('the generated invalid names are exactly what the API refuses', () => {
    for (const n of Object.values(INVALID_NAMES)) expect(validTopic(n)).toBe(false);
    expect(validTopic('\uFEFF')).toBe(true);
    expect(validTopic('\u00E9'.repeat(127) + 'x')).toBe(true);
  });

  it(`the log behaves like an in-memory list of entries per topic with one cursor each (${GENERAL.minTopics} to ${GENERAL.maxTopics} topics)`, async () => {
    await checkModel(GENERAL, fc.constant([]), true);
  }, LONG ? 3_600_000 : 300_000);

  // Every topic gets a record first, and is consumed at once in half the runs (the shape of
  // issue 11's first report), then the drawn commands. Shrinking such a run re-runs it at
  // thousands of topics: only in the long mode.
  it(`the same with ${MANY.minTopics} to ${MANY.maxTopics} topics, each with an entry`, async () => {
    const firstArb = fc.boolean().map((consume) => [new Spread(0, 0, 16, 1), ...(consume ? [new ConsumeAll(1 << 20)] : [])]);
    await checkModel(MANY, firstArb, LONG);
  }, LONG ? 3_600_000 : 300_000);
});
