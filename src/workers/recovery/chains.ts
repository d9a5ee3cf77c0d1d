/**
 * The replay of one topic's own chain of blocks (also the meta topic's): within a block,
 * records are accepted while their length, CRC, topic, kind, salt, offset and batch position
 * are all what the chain expects. And the durability check every chain ends with.
 */
import { corruptError } from '../../shared/errors.js';
import { frameLength, frameOffset, framePayload, frameRemaining, frameTopic, frameWords, recordFootprint, verifyFrames } from '../../shared/format/frame.js';
import { SEGMENT_DATA_START } from '../../shared/format/layout.js';
import { type Block, type TopicLog } from '../store/model.js';
import { indexRecord } from '../store/blocks.js';
import type { ShardStore } from '../store/store.js';
import { ChainReplay, type Harvest, type PendingRecord, framedAt } from './chain-replay.js';
import type { BreakPoint, Findings } from './findings.js';

/** Sees each accepted meta payload: where it lies, its offset, the sequence number of its segment. */
export type MetaSink = (payload: Uint8Array, file: string, pos: number, offset: number, seq: number) => void;

interface TopicPending extends PendingRecord {
  offset: number;
}

class TopicChain extends ChainReplay<TopicPending> {
  constructor(
    private readonly t: TopicLog,
    private readonly kind: number,
    start: number,
    findings: Findings,
    progress: ((bytes: number) => void) | undefined,
    harvest: Harvest | null,
    private readonly onMeta: MetaSink | null,
  ) {
    super(start, findings, progress, harvest);
  }

  replay(blocks: Block[]): BreakPoint | null {
    const t = this.t;
    t.blocks = this.replayBlocks(blocks, t.blocks);
    t.next = this.complete;
    t.complete = this.complete;
    return this.broke;
  }

  protected acceptRecords(b: Block, scratch: Uint8Array): number {
    const words = frameWords(scratch);
    const valid = verifyFrames(scratch.subarray(0, b.capacity), 0, b.capacity);
    let pos = 0;
    while (pos < valid) {
      const len = frameLength(words, pos);
      const offset = frameOffset(words, pos);
      const remaining = frameRemaining(words, pos);
      const ok =
        framedAt(words, pos, this.kind, b.salt) &&
        frameTopic(words, pos) === this.t.id &&
        offset === this.expected &&
        (this.expectRemaining === 0 || remaining === this.expectRemaining);
      if (!ok) break;
      this.onMeta?.(framePayload(scratch, pos, len), b.segment.path, b.dataStart + pos, offset, b.segment.seq);
      indexRecord(b, offset, pos);
      this.pending.push({ block: b, rel: pos, offset });
      pos += recordFootprint(len);
      b.used = pos;
      this.expected = offset + 1;
      b.next = this.expected;
      this.endRecord(remaining);
    }
    return pos;
  }

  protected undo(p: TopicPending): void {
    p.block.next = p.offset;
    // The sparse index forgets the records the block no longer holds.
    const b = p.block;
    while (b.index.length > 0 && b.index[b.index.length - 1]! >= b.used) b.index.length -= 2;
  }

  protected strayWhy(b: Block): string {
    return `block starting at offset ${b.first} where the chain expects ${this.expected}`;
  }

  protected tailWhy(): string {
    return 'bytes after the last valid record of the block';
  }
}

/**
 * Replays `blocks` (in sequence order) into `t` from offset `start`: accepted records extend
 * `t.blocks`, `t.next` and `t.complete` become the end of its last complete batch. Records
 * must be of `kind`; `onMeta` sees each accepted meta payload, `harvest` the bytes dropped.
 * Returns where the chain broke (null if it ended cleanly).
 */
export function replayTopicChain(
  t: TopicLog,
  blocks: Block[],
  kind: number,
  start: number,
  findings: Findings,
  progress: ((bytes: number) => void) | undefined,
  harvest: Harvest | null = null,
  onMeta: MetaSink | null = null,
): BreakPoint | null {
  return new TopicChain(t, kind, start, findings, progress, harvest, onMeta).replay(blocks);
}

/**
 * A chain that recovers less than a sync mark says was durable is corruption (reported at
 * `broke`, where the chain stopped accepting data, when known).
 */
export function checkDurable(t: TopicLog, what: () => string, marks: Map<number, number>, broke: BreakPoint | null, store: ShardStore, findings: Findings): void {
  const mark = marks.get(t.id) ?? 0;
  if (t.complete >= mark) return;
  const last = t.blocks[t.blocks.length - 1];
  const where = broke ?? (last ? { file: last.segment.path, pos: last.dataStart + last.used } : { file: store.segments[0]?.path ?? store.dir, pos: SEGMENT_DATA_START });
  findings.fail(corruptError(where.file, where.pos, `${what()} recovers ${t.complete} entries but ${mark} had been made durable`));
}
