/**
 * What every chain replay shares (a topic's chain, the meta topic's, the shared chain):
 * blocks are taken in block-sequence order; a block continues the chain only if its first
 * position is the one the chain expects; records are accepted while they are what the chain
 * expects; a batch is accepted only whole, so an unfinished one is rolled back; what a block
 * holds after its last accepted record is a torn tail. Subclasses accept records (their rules
 * differ) and undo them.
 */
import { frameKind, frameRemaining, frameReservedClear, frameSalt } from '../../shared/format/frame.js';
import { BLOCK_HEADER_BYTES } from '../../shared/format/layout.js';
import type { Block } from '../store/model.js';
import type { BreakPoint, Findings } from './findings.js';
import { nonZeroExtent, readBlock } from './probe.js';

/**
 * Whether the record header at `pos` of a block's frames (`words`, frameWords) is a
 * well-formed frame of `kind` under the block's `salt`: flags and reserved bytes zero, a batch
 * position of at least 1. Which topic and offset it must carry is the chain's rule (a topic's
 * own chain, or the shared chain), checked by the caller.
 */
export function framedAt(words: Int32Array, pos: number, kind: number, salt: number): boolean {
  return frameKind(words, pos) === kind && frameReservedClear(words, pos) && frameSalt(words, pos) === salt && frameRemaining(words, pos) >= 1;
}

/** A record of a batch not yet known to be complete, where it lies. */
export interface PendingRecord {
  block: Block;
  rel: number;
}

/** Called with bytes a chain drops (a dropped block, a torn tail) to collect the marks in them. */
export type Harvest = (buf: Uint8Array, from: number, end: number, salt: number) => void;

export abstract class ChainReplay<P extends PendingRecord> {
  /** Chain position (a topic offset, or a shared block's record count) the next record must have. */
  protected expected: number;
  /** Chain position after the last complete batch. */
  protected complete: number;
  /** The `remaining` value the next record must carry inside a batch; 0 outside one. */
  protected expectRemaining = 0;
  /** Records of the batch in progress (only those a rollback must undo). */
  protected readonly pending: P[] = [];
  /** Where the first unaccepted bytes are (null while the chain is whole). */
  broke: BreakPoint | null = null;
  private scratch: Uint8Array = new Uint8Array(0);

  constructor(
    /** Blocks starting below it are left over from an interrupted deletion: skipped, not torn. */
    private readonly start: number,
    protected readonly findings: Findings,
    private readonly progress: ((bytes: number) => void) | undefined,
    private readonly harvest: Harvest | null,
  ) {
    this.expected = start;
    this.complete = start;
  }

  /** Accepts the records of `b` (read into `scratch`) from its start; returns where it stopped. */
  protected abstract acceptRecords(b: Block, scratch: Uint8Array): number;
  /** Takes back what accepting `p` did beyond `p.block.used` (which rollback resets). */
  protected abstract undo(p: P): void;
  /** Why a block that does not continue the chain is torn. */
  protected abstract strayWhy(b: Block): string;
  /** Why the bytes after the last accepted record of `b` are torn. */
  protected abstract tailWhy(b: Block): string;

  /** Replays `blocks` (sequence order), appending each block that keeps a record to `kept`; returns the new list. */
  protected replayBlocks(blocks: Block[], kept: Block[]): Block[] {
    for (const b of blocks) {
      // Below the start: left over from a deletion that a crash interrupted (its trim record
      // made it, the unlink did not). Not torn; recovery removes the file.
      if (b.first < this.start) continue;
      this.scratch = readBlock(b, this.scratch);
      this.progress?.(BLOCK_HEADER_BYTES + b.capacity);
      if (b.first !== this.expected && !this.resumesAt(b)) continue;
      const pos = this.acceptRecords(b, this.scratch);
      if (b.used > 0) kept.push(b);
      else this.findings.zero(b.segment, b.start, BLOCK_HEADER_BYTES);
      this.tearTail(b, pos);
    }
    if (this.pending.length > 0) {
      const first = this.pending[0]!;
      this.broke ??= { file: first.block.segment.path, pos: first.block.dataStart + first.rel };
      this.rollback();
    }
    // Blocks left without records by a rollback hold nothing the chain needs.
    return kept.filter((b) => b.used > 0);
  }

  /**
   * A block whose first position is not the one expected. When it starts where the last
   * complete batch ended, the unfinished batch before it is dropped and the block is read
   * (true). Otherwise it was written after the point the chain broke (or abandoned by an
   * earlier recovery): torn, zeroed whole, not only its header, for the rest of a block
   * spanning several slots would otherwise look like damaged slots to the next recovery.
   */
  private resumesAt(b: Block): boolean {
    if (this.pending.length > 0 && b.first === this.complete) {
      this.rollback();
      return true;
    }
    const bytes = BLOCK_HEADER_BYTES + nonZeroExtent(this.scratch, 0, b.capacity);
    this.findings.tear(b.segment, b.start, bytes, this.strayWhy(b));
    this.broke ??= { file: b.segment.path, pos: b.start };
    this.harvest?.(this.scratch, 0, b.capacity, b.salt);
    return false;
  }

  /** The bytes after position `pos` of `b`'s records, up to its last non-zero byte, are torn. */
  private tearTail(b: Block, pos: number): void {
    const tail = nonZeroExtent(this.scratch, pos, b.capacity);
    if (tail === 0) return;
    this.harvest?.(this.scratch, pos, pos + tail, b.salt);
    this.findings.tear(b.segment, b.dataStart + pos, tail, this.tailWhy(b));
    this.broke ??= { file: b.segment.path, pos: b.dataStart + pos };
  }

  /** Ends the record just accepted; returns whether it completed its batch. */
  protected endRecord(remaining: number): boolean {
    if (remaining !== 1) {
      this.expectRemaining = remaining - 1;
      return false;
    }
    this.complete = this.expected;
    this.expectRemaining = 0;
    this.pending.length = 0;
    return true;
  }

  /** An unfinished batch is dropped whole: its records leave their blocks, last first. */
  private rollback(): void {
    for (let k = this.pending.length - 1; k >= 0; k--) {
      const p = this.pending[k]!;
      const b = p.block;
      if (b.used > p.rel) this.findings.tear(b.segment, b.dataStart + p.rel, b.used - p.rel, 'unfinished batch');
      if (p.rel === 0) this.findings.zero(b.segment, b.start, BLOCK_HEADER_BYTES);
      b.used = p.rel;
      this.undo(p);
    }
    this.expected = this.complete;
    this.expectRemaining = 0;
    this.pending.length = 0;
  }
}
