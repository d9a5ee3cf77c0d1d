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
import { frameLength, frameOffset, frameRemaining, frameTopic, frameWords, recordFootprint, verifyFrames } from '../../shared/format/frame.js';
import { META_TOPIC_ID, RecordKind } from '../../shared/format/layout.js';
import { type Block, type TopicLog } from '../store/model.js';
import { addSmall } from '../store/blocks.js';
import type { ShardStore } from '../store/store.js';
import { ChainReplay, type PendingRecord, framedAt } from './chain-replay.js';
import type { BreakPoint, Findings } from './findings.js';

export interface SharedChainResult {
  /** Where the first unaccepted bytes are (null if the chain ended cleanly). */
  broke: BreakPoint | null;
  /** A topic id the chain met without a declaration (the chain broke there), or null. */
  undeclared: number | null;
}

interface SharedPending extends PendingRecord {
  t: TopicLog;
}

class SharedChain extends ChainReplay<SharedPending> {
  undeclared: number | null = null;
  /** The undeclared topic id the current block's records stopped at, or null. */
  private stranger: number | null = null;

  constructor(
    private readonly store: ShardStore,
    start: number,
    findings: Findings,
    progress: ((bytes: number) => void) | undefined,
  ) {
    super(start, findings, progress, null);
  }

  replay(blocks: Block[]): SharedChainResult {
    const shared = this.store.shared;
    shared.blocks = this.replayBlocks(blocks, shared.blocks);
    shared.next = shared.complete = this.expected;
    shared.cur = shared.blocks.length > 0 ? shared.blocks[shared.blocks.length - 1]! : null;
    return { broke: this.broke, undeclared: this.undeclared };
  }

  protected acceptRecords(b: Block, scratch: Uint8Array): number {
    const words = frameWords(scratch);
    const valid = verifyFrames(scratch.subarray(0, b.capacity), 0, b.capacity);
    let pos = 0;
    this.stranger = null;
    while (pos < valid) {
      const id = frameTopic(words, pos);
      const offset = frameOffset(words, pos);
      const remaining = frameRemaining(words, pos);
      const t = id === META_TOPIC_ID ? undefined : this.store.topics.get(id);
      if (!framedAt(words, pos, RecordKind.Entry, b.salt)) break;
      if (t === undefined) {
        // Written after its topic's declaration, in the same write batch or a later one: if
        // the declaration did not reach the disk, neither did an fsync after this record.
        this.stranger = id;
        this.undeclared ??= id;
        break;
      }
      const fp = recordFootprint(frameLength(words, pos));
      if (this.expectRemaining === 0 && offset < t.start) {
        // Consumed and trimmed: left in a segment whose deletion a crash interrupted.
        pos += fp;
        b.used = pos;
        b.next = ++this.expected;
        this.complete = this.expected;
        continue;
      }
      const last = this.pending[this.pending.length - 1];
      const inBatch = this.expectRemaining === 0 || (last !== undefined && last.t === t && remaining === this.expectRemaining);
      if (!inBatch || offset !== t.next) break;
      addSmall(t, { block: b, rel: pos, offset, fp });
      t.smallBytes += fp;
      b.members!.push(t);
      // Only records of an unfinished batch are kept for a rollback (a single never is one).
      if (remaining > 1) this.pending.push({ t, block: b, rel: pos });
      pos += fp;
      b.used = pos;
      b.next = ++this.expected;
      t.next = offset + 1;
      if (this.endRecord(remaining)) t.complete = t.next;
    }
    return pos;
  }

  protected undo(p: SharedPending): void {
    p.block.members!.pop();
    const r = p.t.small.pop()!;
    p.t.smallBytes -= r.fp;
    p.t.next = r.offset;
    p.block.next--;
  }

  protected strayWhy(b: Block): string {
    return `shared block starting at record ${b.first} where the chain expects ${this.expected}`;
  }

  protected tailWhy(): string {
    return this.stranger !== null ? `record of topic id ${this.stranger}, whose declaration never became durable` : 'bytes after the last valid record of the shared block';
  }
}

/**
 * Replays the shared `blocks` (sorted by sequence) into `store.shared` and the `small` lists
 * of the topics. Every topic's `next` and `complete` must be its start on entry; on return
 * they are the end of its shared records (after a dropped unfinished batch).
 */
export function replayShared(store: ShardStore, blocks: Block[], findings: Findings, progress: ((bytes: number) => void) | undefined): SharedChainResult {
  // Like the meta topic's, the chain starts at its first block still present: earlier ones
  // went with their segments, after trim records moved every topic in them past them.
  let start = Number.POSITIVE_INFINITY;
  for (const b of blocks) start = Math.min(start, b.first);
  if (blocks.length === 0) start = 0;
  store.shared.start = start;
  return new SharedChain(store, start, findings, progress).replay(blocks);
}
