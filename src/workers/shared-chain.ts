/**
 * Recovery of the shared chain: the shard's shared blocks, in block-sequence order, hold the
 * first records of many small topics (docs/FORMAT.md, "Shared blocks"). The chain is
 * replayed like a topic's chain (torn tails, batches accepted only whole, blocks that do not
 * continue the chain dropped), except that each record is checked against the next offset of
 * its own topic and accepted into that topic's `small` list.
 *
 * It runs after the meta topic (which names the topics and gives their starts) and before
 * the topics' own chains, which continue where their shared records end.
 */
import { frameLength, frameOffset, frameRemaining, frameTopic, frameWords, recordFootprint, verifyFrames } from '../shared/format/frame.js';
import { BLOCK_HEADER_BYTES, META_TOPIC_ID, RecordKind } from '../shared/layout.js';
import { type Block, type TopicLog, addSmall } from './blocks.js';
import { framedAt, nonZeroExtent, readBlock } from './recovery-files.js';
import type { Repair, TornRange } from './recovery.js';
import type { ShardStore } from './store.js';

export interface SharedChainResult {
  tornBytes: number;
  /** Where the first unaccepted bytes are (null if the chain ended cleanly). */
  broke: { file: string; pos: number } | null;
  /** A topic id the chain met without a declaration (the chain broke there), or null. */
  undeclared: number | null;
}

interface Pending {
  t: TopicLog;
  block: Block;
  rel: number;
}

/**
 * Replays the shared `blocks` (sorted by sequence) into `store.shared` and the `small` lists
 * of the topics. Every topic's `next` and `complete` must be its start on entry; on return
 * they are the end of its shared records (after a dropped unfinished batch).
 */
export function replayShared(
  store: ShardStore,
  blocks: Block[],
  io: { repairs: Repair[]; torn: TornRange[]; progress: ((bytes: number) => void) | undefined },
): SharedChainResult {
  const shared = store.shared;
  // Like the meta topic's, the chain starts at its first block still present: earlier ones
  // went with their segments, after trim records moved every topic in them past them.
  let expected = Number.POSITIVE_INFINITY;
  for (const b of blocks) expected = Math.min(expected, b.first);
  if (blocks.length === 0) expected = 0;
  shared.start = expected;
  /** Chain position after the last complete batch. */
  let complete = expected;
  let expectRemaining = 0;
  const pending: Pending[] = [];
  let tornBytes = 0;
  let broke: SharedChainResult['broke'] = null;
  let undeclared: number | null = null;
  let scratch: Uint8Array = new Uint8Array(0);
  const tear = (seg: Block['segment'], pos: number, bytes: number, why: string): void => {
    tornBytes += bytes;
    io.torn.push({ file: seg.path, pos, bytes, why });
    io.repairs.push({ seg, pos, length: bytes });
  };
  const rollback = (): void => {
    // An unfinished batch is dropped whole (its records are consecutive in the chain).
    for (let k = pending.length - 1; k >= 0; k--) {
      const p = pending[k]!;
      const b = p.block;
      if (b.used > p.rel) tear(b.segment, b.dataStart + p.rel, b.used - p.rel, 'unfinished batch');
      if (p.rel === 0) io.repairs.push({ seg: b.segment, pos: b.start, length: BLOCK_HEADER_BYTES });
      b.used = p.rel;
      b.members!.pop();
      const r = p.t.small.pop()!;
      p.t.smallBytes -= r.fp;
      p.t.next = r.offset;
      b.next--;
    }
    expected = complete;
    expectRemaining = 0;
    pending.length = 0;
  };
  for (const b of blocks) {
    scratch = readBlock(b, scratch);
    io.progress?.(BLOCK_HEADER_BYTES + b.capacity);
    if (b.first !== expected) {
      if (pending.length > 0 && b.first === complete) rollback();
      else {
        const bytes = BLOCK_HEADER_BYTES + nonZeroExtent(scratch, 0, b.capacity);
        tear(b.segment, b.start, bytes, `shared block starting at record ${b.first} where the chain expects ${expected}`);
        broke ??= { file: b.segment.path, pos: b.start };
        continue;
      }
    }
    const words = frameWords(scratch);
    const valid = verifyFrames(scratch.subarray(0, b.capacity), 0, b.capacity);
    let pos = 0;
    let stranger: number | null = null;
    while (pos < valid) {
      const id = frameTopic(words, pos);
      const len = frameLength(words, pos);
      const offset = frameOffset(words, pos);
      const remaining = frameRemaining(words, pos);
      const t = id === META_TOPIC_ID ? undefined : store.topics.get(id);
      if (!framedAt(words, pos, RecordKind.Entry, b.salt)) break;
      if (t === undefined) {
        // Written after its topic's declaration, in the same write batch or a later one: if
        // the declaration did not reach the disk, neither did an fsync after this record.
        stranger = id;
        undeclared ??= id;
        break;
      }
      const fp = recordFootprint(len);
      if (expectRemaining === 0 && offset < t.start) {
        // Consumed and trimmed: left in a segment whose deletion a crash interrupted.
        pos += fp;
        b.used = pos;
        b.next = ++expected;
        complete = expected;
        continue;
      }
      const inBatch = expectRemaining === 0 || (pending.length > 0 && pending[pending.length - 1]!.t === t && remaining === expectRemaining);
      if (!inBatch || offset !== t.next) break;
      addSmall(t, { block: b, rel: pos, offset, fp });
      t.smallBytes += fp;
      b.members!.push(t);
      // Only records of an unfinished batch are kept for a rollback (a single never is one).
      if (remaining > 1) pending.push({ t, block: b, rel: pos });
      pos += fp;
      b.used = pos;
      b.next = ++expected;
      t.next = offset + 1;
      if (remaining === 1) {
        t.complete = t.next;
        complete = expected;
        expectRemaining = 0;
        pending.length = 0;
      } else expectRemaining = remaining - 1;
    }
    if (b.used > 0) shared.blocks.push(b);
    else io.repairs.push({ seg: b.segment, pos: b.start, length: BLOCK_HEADER_BYTES });
    const tail = nonZeroExtent(scratch, pos, b.capacity);
    if (tail > 0) {
      const why = stranger !== null ? `record of topic id ${stranger}, whose declaration never became durable` : 'bytes after the last valid record of the shared block';
      tear(b.segment, b.dataStart + pos, tail, why);
      broke ??= { file: b.segment.path, pos: b.dataStart + pos };
    }
  }
  if (pending.length > 0) {
    broke ??= { file: pending[0]!.block.segment.path, pos: pending[0]!.block.dataStart + pending[0]!.rel };
    rollback();
  }
  shared.blocks = shared.blocks.filter((b) => b.used > 0);
  shared.next = shared.complete = expected;
  shared.cur = shared.blocks.length > 0 ? shared.blocks[shared.blocks.length - 1]! : null;
  return { tornBytes, broke, undeclared };
}
