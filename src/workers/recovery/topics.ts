/**
 * The data chains, after the meta topic: the shared chain (the first records of small
 * topics), then each named topic's own chain, which continues where its shared records end,
 * then the blocks of ids no durable declaration names (torn).
 */
import { corruptError } from '../../shared/errors.js';
import { BLOCK_HEADER_BYTES, META_TOPIC_ID, RecordKind, SHARED_TOPIC_ID } from '../../shared/format/layout.js';
import type { ShardStore } from '../store/store.js';
import { checkDurable, replayTopicChain } from './chains.js';
import type { Findings } from './findings.js';
import type { MetaFold } from './meta-fold.js';
import { type ShardProbe, nonZeroExtent, readBlock } from './probe.js';
import { replayShared } from './shared-chain.js';

/** Replays every data chain; returns the ids of the chains that broke (the meta topic's included). */
export function replayTopics(store: ShardStore, probe: ShardProbe, meta: MetaFold, findings: Findings, progress: ((bytes: number) => void) | undefined): Set<number> {
  const { found, firstDamage } = probe;
  const { marks } = meta;
  const broken = new Set<number>(meta.broke ? [META_TOPIC_ID] : []);
  for (const t of store.topics.values()) if (t.id !== META_TOPIC_ID) t.next = t.complete = t.start;
  const shared = replayShared(store, found.get(SHARED_TOPIC_ID) ?? [], findings, progress);
  found.delete(SHARED_TOPIC_ID);
  if (shared.broke) broken.add(SHARED_TOPIC_ID);
  if (shared.undeclared !== null && marks.has(shared.undeclared)) {
    const where = meta.broke ?? firstDamage ?? shared.broke!;
    findings.fail(corruptError(where.file, where.pos, `topic id ${shared.undeclared} has durable data but its declaration is lost`));
  }
  for (const t of store.topics.values()) {
    const { id, name } = t;
    if (id === META_TOPIC_ID) continue;
    const own = found.get(id);
    // Most topics of a log with many small ones have no block of their own.
    if (own === undefined) {
      if (t.complete < (marks.get(id) ?? 0)) checkDurable(t, () => `topic ${JSON.stringify(name)}`, marks, shared.broke ?? firstDamage, store, findings);
      continue;
    }
    const broke = replayTopicChain(t, own, RecordKind.Entry, t.complete, findings, progress);
    found.delete(id);
    if (broke) broken.add(id);
    checkDurable(t, () => `topic ${JSON.stringify(name)}`, marks, broke ?? shared.broke ?? firstDamage, store, findings);
  }
  dropUndeclared(probe, meta, findings, progress);
  return broken;
}

/**
 * The blocks left in `probe.found`: of topics whose declaration never became durable, so
 * written after the last point that reached the disk, part of the torn tail. Unless a mark
 * names the id: then durable data lost its declaration.
 */
function dropUndeclared(probe: ShardProbe, meta: MetaFold, findings: Findings, progress: ((bytes: number) => void) | undefined): void {
  for (const [id, blocks] of probe.found) {
    if (meta.marks.has(id)) {
      const b = blocks[0]!;
      const where = meta.broke ?? probe.firstDamage ?? { file: b.segment.path, pos: b.start };
      findings.fail(corruptError(where.file, where.pos, `topic id ${id} has durable data but its declaration is lost`));
      continue;
    }
    for (const b of blocks) {
      const scratch = readBlock(b, new Uint8Array(0));
      progress?.(BLOCK_HEADER_BYTES + b.capacity);
      const bytes = BLOCK_HEADER_BYTES + nonZeroExtent(scratch, 0, b.capacity);
      findings.tear(b.segment, b.start, bytes, `block of topic id ${id}, whose declaration never became durable`);
    }
  }
}
