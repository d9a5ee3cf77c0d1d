// Output helpers: aligned text tables, CSV, number formatting, progress line.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { fsType, mountOf, readText } from './disk.mjs';

export function fmtInt(x) {
  if (!Number.isFinite(x)) return '-';
  return Math.round(x).toLocaleString('en-US');
}

export function fmtNum(x, digits = 2) {
  if (!Number.isFinite(x)) return '-';
  return x.toFixed(digits);
}

/** Renders rows (arrays of strings) under `header`; columns listed in `right` are right-aligned. */
export function table(header, rows, right = new Set()) {
  const all = [header, ...rows];
  const widths = header.map((_, c) => Math.max(...all.map((r) => String(r[c] ?? '').length)));
  const line = (r) =>
    r
      .map((cell, c) => {
        const s = String(cell ?? '');
        return right.has(c) ? s.padStart(widths[c]) : s.padEnd(widths[c]);
      })
      .join('  ')
      .trimEnd();
  const sep = widths.map((w) => '-'.repeat(w)).join('  ');
  return [line(header), sep, ...rows.map(line)].join('\n');
}

function csvCell(v) {
  if (v === undefined || v === null || (typeof v === 'number' && !Number.isFinite(v))) return '';
  const s = typeof v === 'number' ? String(Number.isInteger(v) ? v : +v.toPrecision(10)) : String(v);
  return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** Writes objects as CSV with the given column order. */
export function writeCsv(path, columns, rows) {
  const lines = [columns.join(',')];
  for (const r of rows) lines.push(columns.map((c) => csvCell(r[c])).join(','));
  fs.writeFileSync(path, lines.join('\n') + '\n');
}

/**
 * A single progress line on stderr (rewritten in place on a terminal, one line each
 * otherwise), prefixed with the seconds since the process started.
 */
export function progress(msg) {
  const line = `[${process.uptime().toFixed(0).padStart(4)} s] ${msg}`;
  if (process.stderr.isTTY) process.stderr.write(`\r\x1b[2K${line.slice(0, Math.max(20, (process.stderr.columns ?? 120) - 1))}`);
  else process.stderr.write(`${line}\n`);
}

export function progressDone() {
  if (process.stderr.isTTY) process.stderr.write('\r\x1b[2K');
}

/**
 * Writes `rows` (plus node, kernel, nproc, quick, startedAt on each) as
 * `<resultsDir>/<name>-<timestamp>.csv` and prints where.
 */
export function writeResultsCsv(resultsDir, name, columns, rows, { quick, startedAt }) {
  fs.mkdirSync(resultsDir, { recursive: true });
  const csvPath = path.join(resultsDir, `${name}-${stamp(startedAt)}.csv`);
  const common = { node: process.version, kernel: os.release(), nproc: os.availableParallelism(), quick: quick ? 1 : 0, startedAt: startedAt.toISOString() };
  writeCsv(csvPath, [...columns, 'node', 'kernel', 'nproc', 'quick', 'startedAt'], rows.map((r) => ({ ...common, ...r })));
  console.log(`CSV: ${path.relative(process.cwd(), csvPath) || csvPath} (${rows.length} rows)`);
  return csvPath;
}

/** The entries/s and MB/s of `entries` records of `bytes` payload bytes in `seconds`, plus `extra`. */
export function throughputRow(entries, bytes, seconds, extra = {}) {
  return { entries, payloadBytes: bytes, seconds, entriesPerSec: entries / seconds, mbPerSec: bytes / 1e6 / seconds, ...extra };
}

/** Records a timed region (BENCH_MARKS=file) from `startNs` (process.hrtime.bigint()) to now. */
export function markRegion(scenario, run, startNs) {
  if (!process.env.BENCH_MARKS) return;
  const endNs = process.hrtime.bigint();
  fs.appendFileSync(process.env.BENCH_MARKS, JSON.stringify({ scenario, run, startUs: Number(startNs / 1000n), endUs: Number(endNs / 1000n) }) + '\n');
}

/** Header lines describing the machine: CPU, memory, Node, kernel, io path, files' file system. */
export function machineLines(title, io, filesDir) {
  const cpus = os.cpus();
  return [
    title,
    `  machine : nproc ${os.availableParallelism()}, ${cpus[0]?.model ?? '?'}, ${(os.totalmem() / 1024 ** 3).toFixed(1)} GiB RAM`,
    `  software: node ${process.version}, kernel ${os.release()} (${os.arch()}), walrus io path ${io}`,
    `  disk    : ${mountOf(filesDir)}`,
    `  files   : ${filesDir} (${fsType(filesDir)}); vm.dirty_ratio ${readText('/proc/sys/vm/dirty_ratio')}%, dirty_background_ratio ${readText('/proc/sys/vm/dirty_background_ratio')}%`,
  ];
}

/** The directory results go to (bench/results), created on demand. */
export function resultsDir() {
  const d = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'results');
  fs.mkdirSync(d, { recursive: true });
  return path.resolve(d);
}

/** A file-name-safe timestamp of `date` (UTC): 20261122T063000. */
export function stamp(date) {
  return date.toISOString().replace(/[-:]/g, '').replace(/\..*/, '');
}

/**
 * Runs a benchmark script's main(): an error ends the progress line, is printed and sets a
 * failing exit code; the temporary directory goes in every case.
 */
export async function runBench(main, tmp) {
  try {
    await main();
  } catch (err) {
    progressDone();
    console.error(err);
    process.exitCode = 1;
  } finally {
    tmp.cleanup();
  }
}
