/**
 * The meta topic's replay (first of the chains): what its records state about each topic
 * (names, cursors, starts, snapshots) goes straight into the topic's TopicLog (one object
 * per topic: a log may hold very many), and its sync and close marks, with those harvested
 * outside the chain, say how far each topic had been made durable.
 */
import { corruptError } from '../../shared/errors.js';
import { unreachable } from '../../shared/messages.js';
import { META_TOPIC_ID, RecordKind } from '../../shared/format/layout.js';
import type { TopicLog } from '../store/model.js';
import { type MetaRecord, decodeMeta } from '../../shared/format/meta.js';
import type { ShardStore } from '../store/store.js';
import { checkDurable, replayTopicChain } from './chains.js';
import type { BreakPoint, Findings } from './findings.js';
import { harvestMarks } from './marks.js';
import type { ShardProbe } from './probe.js';

/** What the meta topic said. */
export interface MetaFold {
  /** Topic id -> highest end a sync or close mark (in the chain or harvested) says was durable. */
  marks: Map<number, number>;
  /** The last meta record accepted (a close record after a clean shutdown). */
  last: MetaRecord | null;
  /** Offset of the last format-1 snapshot (every topic): meta blocks that end before it are restated. */
  snapshotAt: number;
  /** Offset of the last snapshot of either kind (ShardStore.snapshotAt). */
  lastSnapshotAt: number;
  /** Highest `s` of the snapshots: meta blocks in segments up to it are restated. */
  restatedSeq: number;
  /** Where the meta chain broke, or null. */
  broke: BreakPoint | null;
}

/**
 * Replays the meta topic's blocks (taken out of `probe.found`) into `store`. Until the
 * cursors are clamped (cursors.ts), a topic's `cursorWritten` holds its cursor as last
 * stated. A statement about an id that no record names is ignored, as the chains of such
 * ids are (torn, topics.ts).
 */
export function foldMeta(store: ShardStore, probe: ShardProbe, findings: Findings, progress: ((bytes: number) => void) | undefined): MetaFold {
  const fold: MetaFold = { marks: new Map(), last: null, snapshotAt: -1, lastSnapshotAt: -1, restatedSeq: 0, broke: null };
  const meta = store.meta;
  const blocks = probe.found.get(META_TOPIC_ID) ?? [];
  // The meta topic's first blocks go when their segment is deleted, after a snapshot record
  // that restates them: its chain starts at the first meta block still present.
  let start = blocks.length > 0 ? Number.POSITIVE_INFINITY : 0;
  for (const b of blocks) start = Math.min(start, b.first);
  const harvest = (buf: Uint8Array, from: number, end: number, salt: number): void => void harvestMarks(buf, from, end, salt, probe.harvested);
  fold.broke = replayTopicChain(meta, blocks, RecordKind.Meta, start, findings, progress, harvest, (payload, file, pos, offset, seq) => {
    const m = decodeMeta(payload);
    if (typeof m === 'string') findings.fail(corruptError(file, pos, m));
    else applyMeta(store, fold, m, offset, seq);
  });
  meta.start = start;
  store.snapshotAt = fold.lastSnapshotAt;
  if (start > 0 && fold.lastSnapshotAt < 0) {
    const b = blocks.find((x) => x.first === start)!;
    findings.fail(corruptError(b.segment.path, b.start, `the meta topic starts at offset ${start} but holds no snapshot of what came before`));
  }
  for (const [id, next] of probe.harvested) raiseMark(fold.marks, id, next);
  checkDurable(meta, () => 'the meta topic', fold.marks, fold.broke ?? probe.firstDamage, store, findings);
  probe.found.delete(META_TOPIC_ID);
  return fold;
}

/** One accepted meta record's statements. */
function applyMeta(store: ShardStore, fold: MetaFold, m: MetaRecord, offset: number, seq: number): void {
  fold.last = m;
  switch (m.k) {
    case 'topic':
      named(store, m.id, m.name, seq);
      break;
    case 'topics':
      for (const [id, name] of m.t) named(store, id, name, seq);
      break;
    case 'cursor':
      statedCursor(store.topics.get(m.id), m.next, seq);
      break;
    case 'cursors':
      for (const [id, next] of m.t) statedCursor(store.topics.get(id), next, seq);
      break;
    case 'trim': {
      const t = store.topics.get(m.id);
      if (t) {
        t.start = Math.max(t.start, m.start);
        t.startSeq = seq;
      }
      break;
    }
    case 'snapshot':
      fold.lastSnapshotAt = offset;
      if (m.s === undefined) fold.snapshotAt = offset;
      else fold.restatedSeq = Math.max(fold.restatedSeq, m.s);
      for (const [id, name, start, cursor] of m.t) {
        const t = named(store, id, name, seq);
        t.start = Math.max(t.start, start);
        t.cursorWritten = cursor;
        t.startSeq = t.cursorSeq = seq;
      }
      break;
    case 'consumer':
      store.addConsumer(m.c, m.name);
      break;
    case 'positions': {
      const c = store.consumers.get(m.c);
      if (c === undefined) break; // never declared (its declaration torn): ignored, as ids no record names are
      for (const [id, next] of m.t) {
        const t = store.topics.get(id);
        if (t !== undefined) store.statePosition(c, t, next);
      }
      break;
    }
    case 'consumers': {
      const listed = new Set<number>();
      for (const [id, name, positions] of m.c) {
        listed.add(id);
        const c = store.addConsumer(id, name);
        for (const [tid, next] of positions) {
          const t = store.topics.get(tid);
          if (t !== undefined) store.statePosition(c, t, next);
        }
      }
      for (const c of [...store.consumers.values()]) if (!listed.has(c.id)) store.removeConsumer(c);
      break;
    }
    case 'dropConsumer': {
      const c = store.consumers.get(m.c);
      if (c !== undefined) store.removeConsumer(c);
      break;
    }
    case 'sync':
    case 'close':
      for (const [id, next] of m.t) raiseMark(fold.marks, id, next);
      break;
    default:
      unreachable(m);
  }
}

/** A declaration (or restatement) of topic `id` as `name`, in the segment of sequence `seq`. */
function named(store: ShardStore, id: number, name: string, seq: number): TopicLog {
  const t = store.addTopic(id, name);
  t.name = name;
  t.nameSeq = seq;
  return t;
}

/** A cursor (or cursors) record's statement about topic `t`, if the topic is named. */
function statedCursor(t: TopicLog | undefined, next: number, seq: number): void {
  if (t === undefined) return;
  t.cursorWritten = next;
  t.cursorSeq = seq;
}

function raiseMark(marks: Map<number, number>, id: number, next: number): void {
  marks.set(id, Math.max(marks.get(id) ?? 0, next));
}
