// Output helpers: aligned text tables, CSV, number formatting, progress line.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

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

/** A single progress line on stderr (rewritten in place on a terminal). */
export function progress(msg) {
  if (process.stderr.isTTY) process.stderr.write(`\r\x1b[2K${msg}`);
  else process.stderr.write(`${msg}\n`);
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
  const stamp = startedAt.toISOString().replace(/[-:]/g, '').replace(/\..*/, '');
  const csvPath = path.join(resultsDir, `${name}-${stamp}.csv`);
  const common = { node: process.version, kernel: os.release(), nproc: os.availableParallelism(), quick: quick ? 1 : 0, startedAt: startedAt.toISOString() };
  writeCsv(csvPath, [...columns, 'node', 'kernel', 'nproc', 'quick', 'startedAt'], rows.map((r) => ({ ...common, ...r })));
  console.log(`CSV: ${path.relative(process.cwd(), csvPath) || csvPath} (${rows.length} rows)`);
}
