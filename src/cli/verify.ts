/**
 * `walrus-ts verify DIR`: checks a closed log the way `open` would recover it, without
 * changing a byte. Every record of every topic chain has its CRC32C and every header field
 * checked by the engine's recovery scan; what recovery would truncate is reported as a torn
 * tail, what it would refuse to open over as corruption.
 */
import { type CommandSpec, type Parsed, CliError, EXIT, stringOption } from './args.js';
import { lockForReading, namespacePath, openLogView, segmentFilesBytes } from './log.js';
import { type Out, Progress, formatBytes } from './output.js';

export const verifySpec: CommandSpec = {
  name: 'verify',
  usage: 'walrus-ts verify DIR [--key K] [--json] [--quiet]',
  positionals: ['DIR'],
  options: { key: { type: 'string' } },
  help: `Checks every record (CRC32C, length, topic, offset, batch framing) and every structural
rule recovery relies on, read-only: nothing is repaired, truncated or zeroed. Reports a
torn tail (what the next open truncates: unsynced writes a crash cut short) apart from
corruption of durable data (what makes the next open fail with ERR_WALRUS_CORRUPT).
A log open by another process is not verified (exit 3): its tail changes under the scan.
While verify runs it holds a shared lock, so an open of the log in that time fails.

Options:
  --key K      the namespace key the log was opened with (files in DIR/<sanitized K>)
  --json       one JSON document on stdout (fields: docs/CLI.md); no progress
  --quiet, -q  no progress on stderr
  --help, -h   this text

Exit codes: 0 clean, 1 torn tail only, 2 corruption of durable data, 3 the log is open
  by another process, 64 usage error, 66 no such directory or no log in it, 74 I/O error.`,
};

export interface VerifyReport {
  dir: string;
  status: 'clean' | 'torn' | 'corrupt';
  exitCode: number;
  /** Every shard closed cleanly (its close record is its last record, nothing torn). */
  cleanShutdown: boolean;
  scanned: { shards: number; segments: number; topics: number; entries: number; metaRecords: number; bytesRead: number };
  torn: { file: string; offset: number; bytes: number; reason: string }[];
  tornBytes: number;
  corruption: { file: string; offset: number; message: string }[];
  /** What the next open would also do: remove an abandoned or fully consumed segment. */
  notes: string[];
}

export async function runVerify(args: Parsed, out: Out): Promise<number> {
  const ns = namespacePath(args.positionals[0]!, stringOption(args.values, 'key', ''));
  const lock = lockForReading(ns);
  if (lock.live) throw new CliError(`the log in ${ns} is open by another process: close it (or stop that process) to verify it`, EXIT.live);
  const json = args.values.json === true;
  const progress = new Progress('verifying', segmentFilesBytes(ns), !json && args.values.quiet !== true);
  let view;
  try {
    view = openLogView(ns, lock, (n) => progress.add(n));
  } finally {
    progress.end();
  }
  let report: VerifyReport;
  try {
    const torn: VerifyReport['torn'] = [];
    const corruption: VerifyReport['corruption'] = [];
    const notes: string[] = [];
    let segments = 0;
    let topics = 0;
    let entries = 0;
    let metaRecords = 0;
    for (const { store, scan } of view.shards) {
      segments += store.segments.length;
      for (const t of scan.torn) torn.push({ file: t.file, offset: t.pos, bytes: t.bytes, reason: t.why });
      for (const c of scan.corrupt) corruption.push({ file: c.file ?? ns, offset: c.offset ?? 0, message: c.message });
      if (scan.abandoned) notes.push(`${scan.abandoned.path}: segment creation was interrupted (${scan.abandoned.why}); the next open removes it`);
      for (const s of scan.obsolete) notes.push(`${s.path}: every block was consumed and trimmed (an interrupted deletion); the next open removes it`);
      for (const t of store.topics.values()) {
        if (t.id === 0) metaRecords += t.complete - t.start;
        else {
          topics++;
          entries += t.complete - t.start;
        }
      }
    }
    const tornBytes = torn.reduce((n, t) => n + t.bytes, 0);
    const status = corruption.length > 0 ? 'corrupt' : tornBytes > 0 ? 'torn' : 'clean';
    report = {
      dir: ns,
      status,
      exitCode: status === 'corrupt' ? EXIT.corrupt : status === 'torn' ? EXIT.torn : EXIT.ok,
      cleanShutdown: view.shards.every((s) => s.scan.clean),
      scanned: { shards: view.shards.length, segments, topics, entries, metaRecords, bytesRead: progress.bytes },
      torn,
      tornBytes,
      corruption,
      notes,
    };
  } finally {
    view.close();
  }
  await out.write(json ? `${JSON.stringify(report, null, 2)}\n` : renderVerify(report));
  return report.exitCode;
}

export function renderVerify(r: VerifyReport): string {
  const s = r.scanned;
  const lines = [
    `verified ${r.dir}: ${s.shards} shard(s), ${s.segments} segment file(s), ${s.topics} topic(s), ${s.entries} entries, ${s.metaRecords} meta records, ${formatBytes(s.bytesRead)} of blocks read`,
  ];
  if (r.corruption.length > 0) {
    lines.push('', `corruption of durable data (the next open fails with ERR_WALRUS_CORRUPT):`);
    for (const c of r.corruption) lines.push(`  ${c.file} at byte offset ${c.offset}: ${c.message}`);
  }
  if (r.torn.length > 0) {
    lines.push('', `torn tail, ${r.tornBytes} bytes (writes a crash cut short; the next open truncates them):`);
    for (const t of r.torn) lines.push(`  ${t.file} at byte offset ${t.offset}: ${t.bytes} bytes, ${t.reason}`);
  }
  if (r.notes.length > 0) {
    lines.push('', 'notes:');
    for (const n of r.notes) lines.push(`  ${n}`);
  }
  const verdict =
    r.status === 'corrupt'
      ? 'CORRUPT'
      : r.status === 'torn'
        ? 'torn tail only (no durable data lost)'
        : `clean${r.cleanShutdown ? '' : ' (not closed cleanly, but nothing is torn)'}`;
  lines.push('', `result: ${verdict} (exit ${r.exitCode})`);
  return `${lines.join('\n')}\n`;
}
