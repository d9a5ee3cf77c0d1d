/**
 * `walrus-ts bench`: a quick, self-contained comparison that works in an installed package
 * (which does not ship bench/): walrus `append` + one `sync()` against the best hand-made
 * Node baseline, fs.writevSync of 1,000-record batches + one fdatasync, on the same
 * pre-generated payloads, side by side in one run. `--full` runs the repository's benchmark
 * suite (`npm run bench`) and needs a clone.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, fdatasyncSync, mkdtempSync, openSync, rmSync, writevSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FsyncSchedule, Walrus, WalrusError } from '../index.js';
import { type CommandSpec, type Parsed, CliError, EXIT, intOption, stringOption } from './args.js';
import type { Out } from './output.js';

const BATCH = 1000;

export const benchSpec: CommandSpec = {
  name: 'bench',
  usage: 'walrus-ts bench [--entries N] [--dir D] [--full] [--json]',
  positionals: [],
  options: { entries: { type: 'string' }, dir: { type: 'string' }, full: { type: 'boolean' } },
  help: `Quick benchmark: appends N random payloads of 500-1000 bytes with walrus (append, then
one sync) and writes the same bytes with fs.writevSync in batches of ${BATCH} records (then
one fdatasync), side by side, and prints both rates and their ratio. Files go to a fresh
temporary directory under --dir, removed afterwards. Timings on a shared or virtual disk
vary by tens of percent between runs: compare the two numbers of one run.

Options:
  --entries N  records per run (default 200000, about 150 MB written twice)
  --dir D      where the temporary directory goes (default: the OS temp dir)
  --full       run the repository's benchmark suite (npm run bench) instead; needs a
               clone of the repository (an installed package does not ship bench/)
  --json       one JSON document on stdout (fields: docs/CLI.md)
  --help, -h   this text

Exit codes: 0 done, 64 usage error, 69 --full outside a clone, 74 I/O error.`,
};

export interface BenchRun {
  name: string;
  entries: number;
  bytes: number;
  seconds: number;
  entriesPerSecond: number;
  mbPerSecond: number;
}

export interface BenchReport {
  entries: number;
  payloadBytes: { min: number; max: number; total: number };
  runs: BenchRun[];
  /** walrus entries/s divided by the writevSync baseline's. */
  ratio: number;
}

function run(name: string, entries: number, bytes: number, seconds: number): BenchRun {
  return { name, entries, bytes, seconds, entriesPerSecond: entries / seconds, mbPerSecond: bytes / 1e6 / seconds };
}

async function walrusRun(dir: string, payloads: Buffer[], bytes: number): Promise<BenchRun> {
  // One shard and one topic, as the repository's walrus-append scenario: one topic lives in
  // one shard whatever the shard count.
  const wal = await Walrus.open({ dir, shards: 1, fsync: FsyncSchedule.NoFsync });
  try {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < payloads.length; ) {
      try {
        wal.append('bench', payloads[i]!);
        i++;
      } catch (err) {
        if (!(err instanceof WalrusError && err.code === 'ERR_WALRUS_BACKPRESSURE')) throw err;
        await wal.drain();
      }
    }
    await wal.sync();
    return run('walrus append + sync', payloads.length, bytes, Number(process.hrtime.bigint() - t0) / 1e9);
  } finally {
    await wal.close();
  }
}

function writevRun(file: string, payloads: Buffer[], bytes: number): BenchRun {
  const fd = openSync(file, 'w');
  try {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < payloads.length; i += BATCH) writevSync(fd, payloads.slice(i, i + BATCH));
    fdatasyncSync(fd);
    return run(`fs.writevSync x${BATCH} + fdatasync`, payloads.length, bytes, Number(process.hrtime.bigint() - t0) / 1e9);
  } finally {
    closeSync(fd);
  }
}

/** The repository root when this file runs from a clone (bench/ next to dist/), else null. */
function cloneRoot(): string | null {
  const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
  return existsSync(join(root, 'bench', 'append.mjs')) && existsSync(join(root, 'package.json')) ? root : null;
}

export async function runBench(args: Parsed, out: Out): Promise<number> {
  const entries = intOption(args.values, 'entries', 200_000, 1);
  const base = stringOption(args.values, 'dir', tmpdir());
  if (args.values.full === true) {
    const root = cloneRoot();
    if (!root) throw new CliError('bench --full runs the repository benchmark suite (bench/), which an installed package does not ship: run it from a clone', EXIT.unavailable);
    const r = spawnSync('npm', ['run', 'bench'], { cwd: root, stdio: 'inherit' });
    return r.status ?? EXIT.internal;
  }
  if (!existsSync(base)) throw new CliError(`no such directory: ${base}`, EXIT.noInput);
  // Pre-generated, so the generator is not measured: slices of one random pool.
  const pool = randomBytes(1 << 20);
  const sizes = randomBytes(entries * 2);
  const payloads: Buffer[] = [];
  let total = 0;
  for (let i = 0; i < entries; i++) {
    const len = 500 + (sizes.readUInt16LE(i * 2) % 501);
    const at = (i * 4099) % (pool.length - 1000);
    payloads.push(pool.subarray(at, at + len));
    total += len;
  }
  const dir = mkdtempSync(join(base, 'walrus-bench-'));
  try {
    const quiet = args.values.json === true || args.values.quiet === true;
    if (!quiet) out.note(`writing ${entries} entries (${(total / 1e6).toFixed(1)} MB) twice in ${dir} ...`);
    const baseline = writevRun(join(dir, 'baseline.bin'), payloads, total);
    rmSync(join(dir, 'baseline.bin'));
    const wal = await walrusRun(join(dir, 'wal'), payloads, total);
    const report: BenchReport = {
      entries,
      payloadBytes: { min: 500, max: 1000, total },
      runs: [wal, baseline],
      ratio: wal.entriesPerSecond / baseline.entriesPerSecond,
    };
    if (args.values.json === true) await out.write(`${JSON.stringify(report, null, 2)}\n`);
    else {
      const lines = report.runs.map(
        (r) => `${r.name.padEnd(36)} ${Math.round(r.entriesPerSecond).toLocaleString('en-US').padStart(12)} entries/s ${r.mbPerSecond.toFixed(1).padStart(8)} MB/s`,
      );
      await out.write(`${lines.join('\n')}\nwalrus / baseline: ${report.ratio.toFixed(2)}x\n`);
    }
    return EXIT.ok;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
