// A/B: two builds of walrus-ts side by side, on the same workloads, in alternating child
// processes (A B B A A B ...), so that a drift of the machine's speed hits both alike. For a
// change that must not cost speed (a refactor), build the old tree in another checkout and
// compare:
//
//   node bench/ab.mjs <dist of A> <dist of B> [--rounds=5] [--dir=/path/on/the/disk]
//
// Each round runs every workload once per build, each in a fresh process; the table gives
// each build's median and the median of the per-round ratios B/A (for throughput above 1 means
// B is faster; for latency below 1 does).
// Workloads (2 shards, 128-byte entries over 64 topics):
//   append         1,000,000 appends, NoFsync, then sync()         entries/s
//   appendAndSync  20,000 appendAndSync with 64 in flight (group commit), entries/s
//   batchRead      drain those 1,000,000 entries with batchRead(1 MiB)     entries/s
//   syncLatencyP50 / P99  3,000 appendAndSync one at a time: latency percentiles (us; lower is
//                  better, and the ratio column says B/A of the time, so below 1 is faster)
//   readNext       5,000 readNext (StrictlyAtOnce: a durable cursor each; 64 topics in turn), reads/s
// Results also go to bench/results/ab-<time>.csv.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { median } from './lib/stats.mjs';
import { machineLines, resultsDir, stamp, table, writeCsv } from './lib/report.mjs';

/** Each workload's unit, and whether more is better (throughput) or less (latency). */
const WORKLOADS = ['append', 'appendAndSync', 'syncLatencyP50', 'syncLatencyP99', 'batchRead', 'readNext'];
const UNIT = { append: 'entries/s', appendAndSync: 'entries/s', syncLatencyP50: 'us', syncLatencyP99: 'us', batchRead: 'entries/s', readNext: 'reads/s' };
const LOWER_IS_BETTER = new Set(['syncLatencyP50', 'syncLatencyP99']);
const TOPICS = 64;
const ENTRY = Buffer.alloc(128, 7);
/** readNext under StrictlyAtOnce makes its cursor durable before it returns: an fsync each. */
const READS = 5_000;

function arg(name, fallback) {
  const a = process.argv.find((x) => x.startsWith(`--${name}=`));
  return a === undefined ? fallback : a.slice(name.length + 3);
}

async function child(dist, workload, root) {
  const { Walrus, FsyncSchedule } = await import(pathToFileURL(path.join(dist, 'index.js')).href);
  const dir = mkdtempSync(path.join(root, 'walrus-ab-'));
  const wal = await Walrus.open({ dir, shards: 2, fsync: FsyncSchedule.NoFsync });
  try {
    const fill = async (n) => {
      for (let i = 0; i < n; i++) {
        try {
          wal.append(`t${i % TOPICS}`, ENTRY);
        } catch (e) {
          if (e.code !== 'ERR_WALRUS_BACKPRESSURE') throw e;
          await wal.drain();
          i--;
        }
      }
      await wal.sync();
    };
    const timed = async (n, f) => {
      const t0 = process.hrtime.bigint();
      const done = await f();
      return (typeof done === 'number' ? done : n) / (Number(process.hrtime.bigint() - t0) / 1e9);
    };
    switch (workload) {
      case 'append':
        return await timed(1_000_000, () => fill(1_000_000));
      case 'syncLatencyP50':
      case 'syncLatencyP99': {
        const lat = [];
        for (let i = 0; i < 3000; i++) {
          const t0 = process.hrtime.bigint();
          await wal.appendAndSync(`t${i % TOPICS}`, ENTRY);
          lat.push(Number(process.hrtime.bigint() - t0) / 1e3);
        }
        lat.sort((x, y) => x - y);
        return lat[Math.floor(lat.length * (workload === 'syncLatencyP50' ? 0.5 : 0.99))];
      }
      case 'appendAndSync': {
        const n = 20_000;
        let next = 0;
        const lane = async () => {
          while (next < n) await wal.appendAndSync(`t${next++ % TOPICS}`, ENTRY);
        };
        return await timed(n, () => Promise.all(Array.from({ length: 64 }, lane)));
      }
      case 'batchRead':
        await fill(1_000_000);
        return await timed(0, async () => {
          let read = 0;
          for (let t = 0; t < TOPICS; t++) {
            for (let b = await wal.batchRead(`t${t}`, 1 << 20); b.length > 0; b = await wal.batchRead(`t${t}`, 1 << 20)) read += b.length;
          }
          return read;
        });
      case 'readNext':
        await fill(READS);
        return await timed(READS, async () => {
          for (let i = 0; i < READS; i++) if ((await wal.readNext(`t${i % TOPICS}`)) === null) throw new Error('ran out of entries');
        });
      default:
        throw new Error(`unknown workload ${workload}`);
    }
  } finally {
    await wal.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[2] === '--child') {
  const [, , , dist, workload, root] = process.argv;
  console.log(JSON.stringify({ value: await child(dist, workload, root) }));
  process.exit(0);
}

const [distA, distB] = process.argv.slice(2).filter((a) => !a.startsWith('--')).map((d) => path.resolve(d));
if (!distA || !distB) throw new Error('usage: node bench/ab.mjs <dist of A> <dist of B> [--rounds=5] [--dir=DIR]');
const rounds = Number(arg('rounds', '5'));
const root = arg('dir', tmpdir());
const rates = { A: {}, B: {} };
const ratios = {};
for (const w of WORKLOADS) {
  rates.A[w] = [];
  rates.B[w] = [];
  ratios[w] = [];
}
const me = new URL(import.meta.url).pathname;
for (let r = 0; r < rounds; r++) {
  const order = r % 2 === 0 ? ['A', 'B'] : ['B', 'A'];
  for (const w of WORKLOADS) {
    const got = {};
    for (const which of order) {
      const out = spawnSync(process.execPath, [me, '--child', which === 'A' ? distA : distB, w, root], { encoding: 'utf8' });
      if (out.status !== 0) throw new Error(`${which} ${w} failed:\n${out.stderr}`);
      got[which] = JSON.parse(out.stdout.trim().split('\n').at(-1)).value;
      rates[which][w].push(got[which]);
    }
    ratios[w].push(got.B / got.A);
    process.stderr.write(`round ${r + 1}/${rounds} ${w}: A ${Math.round(got.A)}, B ${Math.round(got.B)} ${UNIT[w]}\n`);
  }
}
const rows = WORKLOADS.map((w) => ({
  workload: w,
  unit: UNIT[w],
  a: Math.round(median(rates.A[w])),
  b: Math.round(median(rates.B[w])),
  ratio: +median(ratios[w]).toFixed(3),
  low: +Math.min(...ratios[w]).toFixed(3),
  high: +Math.max(...ratios[w]).toFixed(3),
}));
console.log(machineLines('walrus-ts A/B', 'as each build chooses', root).join('\n'));
console.log(`  A       : ${distA}\n  B       : ${distB}\n  ${rounds} rounds\n`);
const header = ['workload', 'unit', 'A median', 'B median', 'B/A (median of paired)', 'B/A range', 'B is'];
const verdict = (r) => {
  const better = LOWER_IS_BETTER.has(r.workload) ? 1 / r.ratio : r.ratio;
  return better >= 1 ? `${((better - 1) * 100).toFixed(1)}% better` : `${((1 - better) * 100).toFixed(1)}% worse`;
};
console.log(
  table(
    header,
    rows.map((r) => [r.workload, UNIT[r.workload], r.a, r.b, r.ratio.toFixed(3), `${r.low.toFixed(2)}-${r.high.toFixed(2)}`, verdict(r)]),
    new Set([2, 3, 4]),
  ),
);
const csv = path.join(resultsDir(), `ab-${stamp(new Date())}.csv`);
writeCsv(csv, ['workload', 'unit', 'a', 'b', 'ratio', 'low', 'high'], rows);
console.log(`\nCSV: ${csv}`);
