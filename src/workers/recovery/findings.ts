/**
 * What a recovery scan reports, and the one place its bookkeeping is written: every phase
 * records torn bytes, byte ranges to zero and corruption through a `Findings`.
 */
import type { WalrusError } from '../../shared/errors.js';
import type { Segment } from '../store/model.js';

/**
 * 'recover': files opened read-write, the first corruption throws (what `open` does).
 * 'inspect': files opened read-only, every corruption found is collected and the scan goes
 * on past it as well as it can; nothing is ever written.
 */
export type ScanMode = 'recover' | 'inspect';

/** Where a chain stopped accepting data, for error messages. */
export interface BreakPoint {
  file: string;
  pos: number;
}

/** A byte range recovery overwrites with zeros: torn bytes, or the header of a dropped block. */
export interface Repair {
  seg: Segment;
  pos: number;
  length: number;
}

/** Bytes recovery drops as a torn tail, and why. */
export interface TornRange {
  file: string;
  /** File position of the first torn byte. */
  pos: number;
  bytes: number;
  why: string;
}

export interface RecoveryResult {
  tornBytes: number;
  /** The previous instance closed cleanly (its close record is the last meta record). */
  clean: boolean;
}

export interface ShardScan extends RecoveryResult {
  /** What the scan found torn, in scan order; their bytes sum to `tornBytes`. */
  torn: TornRange[];
  /** Corruption of durable data ('inspect' mode; 'recover' throws the first instead). */
  corrupt: WalrusError[];
  /** Byte ranges recovery overwrites with zeros. */
  repairs: Repair[];
  /** A last segment whose creation was cut short: recovery removes it. */
  abandoned: { path: string; why: string } | null;
  /** Oldest segments holding no block of any chain: recovery removes them. */
  obsolete: Segment[];
}

/** The scan's running account of torn bytes, repairs and corruption. */
export class Findings {
  tornBytes = 0;
  /** In scan order; their bytes sum to tornBytes. */
  readonly torn: TornRange[] = [];
  readonly repairs: Repair[] = [];
  readonly corrupt: WalrusError[] = [];

  constructor(readonly mode: ScanMode) {}

  /** Durable data is damaged: throws in 'recover' mode, is collected in 'inspect' mode. */
  fail(err: WalrusError): void {
    if (this.mode === 'recover') throw err;
    this.corrupt.push(err);
  }

  /** `bytes` bytes of `seg` at `pos` are a torn tail (`why`): counted, reported, zeroed by recovery. */
  tear(seg: Segment, pos: number, bytes: number, why: string): void {
    this.tornBytes += bytes;
    this.torn.push({ file: seg.path, pos, bytes, why });
    this.repairs.push({ seg, pos, length: bytes });
  }

  /** Bytes that are not torn data but must not be found again (the header of a block left empty). */
  zero(seg: Segment, pos: number, length: number): void {
    this.repairs.push({ seg, pos, length });
  }
}
