// The long crash runs (docs/DURABILITY.md, "Crash cycles and simulated power loss"):
//
//   npm run test:crash-long -- --cycles 300                  kill -9 cycles, then power-loss cycles
//   npm run test:crash-long -- --cycles 300 --mode powerloss only power-loss cycles
//   options: --mode crash|powerloss|both|negative  --seed N  --kill-ms MIN,MAX  --keep
//
// `negative` runs the power-loss cycles with fsync skipped (the negative control) and fails
// unless the harness detects lost acknowledged entries. Prints the figures; exits 1 on any
// violation.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { runCrashCycles, violations } from './fixtures/crash-harness.mjs';

const { values } = parseArgs({
  options: {
    cycles: { type: 'string', default: '300' },
    mode: { type: 'string', default: 'both' },
    seed: { type: 'string', default: String(Date.now() % 1_000_000) },
    'kill-ms': { type: 'string', default: '50,1500' },
    keep: { type: 'boolean', default: false },
  },
});
const cycles = Number(values.cycles);
const seed = Number(values.seed);
const killMs = values['kill-ms'].split(',').map(Number);
if (!Number.isSafeInteger(cycles) || cycles < 1) throw new RangeError(`--cycles must be a positive integer, got ${values.cycles}`);
if (!['crash', 'powerloss', 'both', 'negative'].includes(values.mode)) throw new RangeError(`--mode must be crash, powerloss, both or negative, got ${values.mode}`);

function report(name, { figures: f, messages }, seconds) {
  const c = f.cut;
  const rows = [
    ['cycles run', f.cycles],
    ['data directories / most topics in one', `${f.directories} / ${f.mostTopics}`],
    ['simulated power losses', f.powerCuts],
    ['acknowledged durable entries', f.ackedEntries],
    ['recovered entries checked', f.recoveredEntries],
    ['entries delivered to consumers', f.delivered],
    ['redeliveries (atLeastOnce, allowed)', f.redeliveries],
    ['  of which checks at the exact bound', f.redeliveryAtBound],
    ['StrictlyAtOnce entries lost in flight (allowed)', f.strictInflightLost],
    ['lost', f.lost],
    ['corrupt', f.corrupt],
    ['duplicates', f.duplicates],
    ['half batches', f.halfBatches],
    ['cursor regressions', f.cursorRegressions],
    ['StrictlyAtOnce redeliveries', f.strictRedeliveries],
    ['atLeastOnce redeliveries beyond the bound', f.overRedelivered],
    ['skipped entries', f.skipped],
    ['opens failed', f.openFailures],
  ];
  if (f.powerCuts > 0) {
    rows.push(
      ['unsynced sectors kept', c.sectorsKept],
      ['unsynced sectors dropped (old bytes back)', c.sectorsDropped],
      ['unsynced sectors torn into garbage', c.sectorsGarbage],
      ['writes torn across sectors', c.tornWrites],
      ['file sizes reverted', c.sizesReverted],
      ['unsynced creations undone (file vanished)', c.createsUndone],
      ['unsynced unlinks undone (file came back)', c.unlinksUndone],
    );
  }
  console.log(`\n${name}: ${seconds.toFixed(0)} s, seed ${seed}`);
  for (const [k, v] of rows) console.log(`  ${k.padEnd(44)} ${v}`);
  for (const m of messages) console.log(`  ! ${m}`);
}

const runs = values.mode === 'both' ? ['crash', 'powerloss'] : [values.mode];
let failed = false;
for (const mode of runs) {
  const base = mkdtempSync(join(tmpdir(), `walrus-crash-long-${mode}-`));
  const started = Date.now();
  try {
    const powerLoss = mode === 'crash' ? false : { skipSync: mode === 'negative' };
    const result = await runCrashCycles({
      base,
      cycles,
      seed,
      killMs,
      powerLoss,
      onViolation: (msg) => process.stderr.write(`${mode}: VIOLATION ${msg}\n`),
      log: (f) => {
        if (f.cycles % 10 === 0) process.stderr.write(`${mode}: ${f.cycles}/${cycles} cycles, ${f.ackedEntries} acknowledged, ${violations(f)} violations\n`);
      },
    });
    report(mode === 'negative' ? 'negative control (fsync skipped)' : mode === 'crash' ? 'kill -9 cycles' : 'kill -9 + simulated power loss cycles', result, (Date.now() - started) / 1000);
    if (mode === 'negative') {
      const caught = result.figures.lost > 0;
      console.log(`  negative control: ${caught ? 'lost acknowledged entries detected, as it must' : 'NOTHING DETECTED: the harness cannot see a missing fsync'}`);
      failed ||= !caught;
    } else {
      failed ||= violations(result.figures) > 0;
    }
  } finally {
    if (values.keep) console.log(`  kept ${base}`);
    else rmSync(base, { recursive: true, force: true });
  }
}
process.exit(failed ? 1 : 0);
