/**
 * `walrus-ts inspect DIR`: what a log holds (topics, entry counts, cursors, segments, sizes),
 * as the engine's recovery scan sees it. Read-only; works on a live log as a snapshot.
 */
import { statSync } from 'node:fs';
import { basename } from 'node:path';
import { FORMAT_VERSION, META_TOPIC_ID } from '../shared/format/layout.js';
import { type CommandSpec, type Parsed, EXIT, stringOption } from './args.js';
import { type LogView, lockForReading, namespacePath, openLogView, segmentFilesBytes } from './log.js';
import { type Out, Progress, formatBytes, table } from './output.js';

export const inspectSpec: CommandSpec = {
  name: 'inspect',
  usage: 'walrus-ts inspect DIR [--key K] [--json] [--quiet]',
  positionals: ['DIR'],
  options: { key: { type: 'string' } },
  help: `Shows what the log in DIR holds: topics (entries, offsets, cursor, durable mark),
named consumers (position and lag per topic), segment files (size, state, blocks per topic)
and totals. Never writes to the log.
If another process has the log open, prints a best-effort snapshot marked "live".

Options:
  --key K      the namespace key the log was opened with (files in DIR/<sanitized K>)
  --json       one JSON document on stdout (fields: docs/CLI.md)
  --quiet, -q  no progress on stderr
  --help, -h   this text

Exit codes: 0 done (also when the log has a torn tail or corruption: run verify),
  64 usage error, 66 no such directory or no log in it, 74 I/O error.`,
};

export interface TopicReport {
  name: string;
  shard: number;
  id: number;
  /** First stored offset (entries before it were consumed and deleted). */
  start: number;
  /** Offset after the last recovered entry. */
  end: number;
  entries: number;
  /** Where a checkpointing read continues (clamped to `end`, as open clamps it). */
  cursor: number;
  /** The last cursor record's value, before clamping. */
  cursorRecorded: number;
  unread: number;
  /** Highest offset a sync or close mark recorded as durable. */
  durableMark: number;
  blocks: number;
  /** Bytes of records (headers, payloads, padding) in the topic's blocks and in shared blocks. */
  recordBytes: number;
}

/** Where a named consumer stands in one topic (wal.consumer(name)). */
export interface ConsumerReport {
  consumer: string;
  topic: string;
  shard: number;
  /** Its committed position (clamped to the stored entries, as open clamps it). */
  committed: number;
  /** Entries of the topic after it: appended and not yet consumed by this consumer. */
  lag: number;
}

export interface SegmentReport {
  file: string;
  shard: number;
  seq: number;
  bytes: number;
  blockBytes: number;
  slots: number;
  usedSlots: number;
  state: 'active' | 'sealed' | 'obsolete' | 'abandoned';
  /** Blocks per topic (`topic` null: the shard's meta topic); shared blocks are not listed (they count in usedSlots). */
  blocks: { topic: string | null; blocks: number }[];
}

export interface ShardReport {
  shard: number;
  segments: number;
  topics: number;
  metaRecords: number;
  cleanShutdown: boolean;
  tornBytes: number;
  corruptions: number;
}

export interface InspectReport {
  dir: string;
  live: boolean;
  formatVersion: number;
  topics: TopicReport[];
  consumers: ConsumerReport[];
  segments: SegmentReport[];
  shards: ShardReport[];
  totals: { shards: number; topics: number; entries: number; segments: number; bytes: number; tornBytes: number; corruptions: number };
}

/** Where each named consumer of a shard stands, per topic. */
function consumerReports(store: LogView['shards'][number]['store'], shard: number): ConsumerReport[] {
  const out: ConsumerReport[] = [];
  for (const c of store.consumers.values()) {
    for (const [t, p] of c.topics) out.push({ consumer: c.name, topic: t.name, shard, committed: p.cursor, lag: t.complete - p.cursor });
  }
  return out;
}

export function buildInspectReport(view: LogView): InspectReport {
  const topics: TopicReport[] = [];
  const consumers: ConsumerReport[] = [];
  const segments: SegmentReport[] = [];
  const shards: ShardReport[] = [];
  for (const { shard, store, scan } of view.shards) {
    const obsolete = new Set(scan.obsolete);
    for (const t of store.topics.values()) {
      if (t.id === META_TOPIC_ID) continue;
      topics.push({
        name: t.name,
        shard,
        id: t.id,
        start: t.start,
        end: t.complete,
        entries: t.complete - t.start,
        cursor: t.cursor,
        cursorRecorded: t.cursorWritten,
        unread: t.complete - t.cursor,
        durableMark: t.marked,
        blocks: t.blocks.length,
        recordBytes: t.blocks.reduce((n, b) => n + b.used, t.smallBytes),
      });
    }
    consumers.push(...consumerReports(store, shard));
    for (const [k, seg] of store.segments.entries()) {
      const counts = new Map<number, number>();
      for (const t of store.topics.values()) {
        for (const b of t.blocks) if (b.segment === seg) counts.set(t.id, (counts.get(t.id) ?? 0) + 1);
      }
      segments.push({
        file: seg.path,
        shard,
        seq: seg.seq,
        bytes: statSync(seg.path).size,
        blockBytes: seg.blockBytes,
        slots: seg.slots,
        usedSlots: seg.nextSlot,
        state: obsolete.has(seg) ? 'obsolete' : k === store.segments.length - 1 ? 'active' : 'sealed',
        blocks: [...counts].map(([id, blocks]) => ({ topic: id === META_TOPIC_ID ? null : store.topics.get(id)!.name, blocks })),
      });
    }
    if (scan.abandoned) {
      const path = scan.abandoned.path;
      const seq = Number(/-(\d+)\.seg$/.exec(path)?.[1] ?? 0);
      segments.push({ file: path, shard, seq, bytes: statSync(path).size, blockBytes: 0, slots: 0, usedSlots: 0, state: 'abandoned', blocks: [] });
    }
    shards.push({
      shard,
      segments: store.segments.length + (scan.abandoned ? 1 : 0),
      topics: store.topics.size - 1,
      metaRecords: store.meta.complete - store.meta.start,
      cleanShutdown: scan.clean,
      tornBytes: scan.tornBytes,
      corruptions: scan.corrupt.length,
    });
  }
  topics.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : a.shard - b.shard));
  const key = (c: ConsumerReport): string => `${c.consumer}\0${c.topic}`;
  consumers.sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
  return {
    dir: view.dir,
    live: view.live,
    formatVersion: FORMAT_VERSION,
    topics,
    consumers,
    segments,
    shards,
    totals: {
      shards: shards.length,
      topics: topics.length,
      entries: topics.reduce((n, t) => n + t.entries, 0),
      segments: segments.length,
      bytes: segments.reduce((n, s) => n + s.bytes, 0),
      tornBytes: shards.reduce((n, s) => n + s.tornBytes, 0),
      corruptions: shards.reduce((n, s) => n + s.corruptions, 0),
    },
  };
}

export function renderInspect(r: InspectReport): string {
  const lines: string[] = [];
  const state = r.live
    ? 'LIVE: open by another process; this is a best-effort snapshot of changing files'
    : r.shards.every((s) => s.cleanShutdown)
      ? 'closed cleanly'
      : 'not closed cleanly: the next open recovers it';
  lines.push(`walrus log in ${r.dir} (${state})`);
  lines.push(`format version ${r.formatVersion}, ${r.totals.shards} shard(s), ${r.totals.segments} segment file(s), ${formatBytes(r.totals.bytes)} on disk`);
  lines.push('', `topics (${r.topics.length})`);
  if (r.topics.length > 0) {
    lines.push(
      table(
        ['topic', 'shard', 'entries', 'offsets', 'cursor', 'unread', 'durable', 'blocks', 'size'],
        r.topics.map((t) => [
          JSON.stringify(t.name),
          t.shard,
          t.entries,
          t.entries > 0 ? `${t.start}..${t.end - 1}` : `-`,
          t.cursor,
          t.unread,
          t.durableMark,
          t.blocks,
          formatBytes(t.recordBytes),
        ]),
      ),
    );
  }
  const names = new Set(r.consumers.map((c) => c.consumer));
  lines.push('', `named consumers (${names.size})`);
  if (r.consumers.length > 0) {
    lines.push(
      table(
        ['consumer', 'topic', 'shard', 'committed', 'lag'],
        r.consumers.map((c) => [JSON.stringify(c.consumer), JSON.stringify(c.topic), c.shard, c.committed, c.lag]),
      ),
    );
  }
  lines.push('', `segments (${r.segments.length})`);
  if (r.segments.length > 0) {
    lines.push(
      table(
        ['file', 'shard', 'seq', 'size', 'state', 'slots used', 'blocks'],
        r.segments.map((s) => [
          basename(s.file),
          s.shard,
          s.seq,
          formatBytes(s.bytes),
          s.state,
          `${s.usedSlots}/${s.slots}`,
          s.blocks.map((b) => `${b.topic === null ? '(meta)' : JSON.stringify(b.topic)}:${b.blocks}`).join(' ') || '-',
        ]),
      ),
    );
  }
  lines.push('', 'shards');
  for (const s of r.shards) {
    const problems = [s.tornBytes > 0 ? `${s.tornBytes} torn bytes` : '', s.corruptions > 0 ? `${s.corruptions} corruption(s): run verify` : '']
      .filter(Boolean)
      .join(', ');
    lines.push(`  ${s.shard}: ${s.topics} topic(s), ${s.metaRecords} meta records, ${s.cleanShutdown ? 'clean shutdown' : 'no clean shutdown'}${problems ? `, ${problems}` : ''}`);
  }
  lines.push('', `totals: ${r.totals.topics} topic(s), ${r.totals.entries} entries, ${r.totals.segments} segment file(s), ${formatBytes(r.totals.bytes)}`);
  return `${lines.join('\n')}\n`;
}

export async function runInspect(args: Parsed, out: Out): Promise<number> {
  const ns = namespacePath(args.positionals[0]!, stringOption(args.values, 'key', ''));
  const lock = lockForReading(ns);
  const json = args.values.json === true;
  const progress = new Progress('inspecting', segmentFilesBytes(ns), !json && args.values.quiet !== true);
  let view;
  try {
    view = openLogView(ns, lock, (n) => progress.add(n));
  } finally {
    progress.end();
  }
  try {
    const report = buildInspectReport(view);
    if (view.live && !json) out.note(`warning: the log in ${ns} is open by another process: showing a best-effort snapshot`);
    await out.write(json ? `${JSON.stringify(report, null, 2)}\n` : renderInspect(report));
    return EXIT.ok;
  } finally {
    view.close();
  }
}
