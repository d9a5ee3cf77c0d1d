/**
 * Topic chains: a topic's entries live in its blocks, in order, so reading a topic is
 * sequential I/O that never touches another topic's bytes. Operations on a chain (cursor
 * moves, the sparse in-block index, finding the block of an offset); the types are model.ts.
 */
import type { Block, Cursor, SmallRecord, TopicLog } from './model.js';

/** The sparse in-block index keeps the position of every INDEX_EVERY-th record. */
export const INDEX_EVERY = 32;

/** Appends a shared record to `t.small` (a first one in an array of one: most topics of a log with very many hold one). */
export function addSmall(t: TopicLog, r: SmallRecord): void {
  if (t.small.length === 0) t.small = [r];
  else t.small.push(r);
}

/**
 * Whether the default consumer counts for the deletion of `t`'s entries: always while no
 * named consumer has a position in it (every log written before named consumers), else once
 * it has read from the topic (a default consumer that never reads a topic only named
 * consumers read would hold its entries forever).
 */
export function defaultCounts(t: TopicLog): boolean {
  return t.positions === null || t.positions.size === 0 || t.cursor > 0 || t.delivered > 0;
}

/** The deletion bound of `t`: the lowest committed position of the consumers that count. */
export function floorOf(t: TopicLog): number {
  let floor = defaultCounts(t) ? t.cursor : Number.POSITIVE_INFINITY;
  if (t.positions !== null) for (const p of t.positions.values()) floor = Math.min(floor, p.cursor);
  return floor;
}

/**
 * Recomputes `t.floor`, keeping the consumed counts of the shared blocks that hold its records
 * in step (a shared block is consumed when every record in it is behind its topic's floor).
 */
export function updateFloor(t: TopicLog): void {
  const next = floorOf(t);
  const small = t.small;
  if (small.length > 0 && next !== t.floor) {
    const base = small[0]!.offset;
    const lo = Math.max(0, Math.min(t.floor, next) - base);
    const hi = Math.min(small.length, Math.max(t.floor, next) - base);
    const delta = next > t.floor ? -1 : 1;
    for (let k = lo; k < hi; k++) small[k]!.block.unconsumed += delta;
  }
  t.floor = next;
}

/** Moves the committed position `c` (of a consumer of `t`) to `next`; the floor follows. */
export function moveCursor(t: TopicLog, next: number, c: Cursor = t): void {
  c.cursor = next;
  updateFloor(t);
}

/** Whether a meta record in segment `seq` or older is the last to state part of `t`'s state. */
export function statedIn(t: TopicLog, seq: number): boolean {
  return t.nameSeq <= seq || (t.startSeq > 0 && t.startSeq <= seq) || (t.cursorSeq > 0 && t.cursorSeq <= seq);
}

/** Records the position of a record about to be appended at relative position `rel`. */
export function indexRecord(b: Block, offset: number, rel: number): void {
  if ((offset - b.first) % INDEX_EVERY === 0) b.index.push(offset, rel);
}

/** Relative position of the last indexed record at or before `offset`, with its offset. */
export function seekInBlock(b: Block, offset: number): { offset: number; rel: number } {
  const idx = b.index;
  let lo = 0;
  let hi = idx.length / 2 - 1;
  let best = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (idx[mid * 2]! <= offset) {
      best = mid;
      lo = mid + 1;
    } else hi = mid - 1;
  }
  return best < 0 ? { offset: b.first, rel: 0 } : { offset: idx[best * 2]!, rel: idx[best * 2 + 1]! };
}

/** The block of `t` that holds `offset`, or undefined. Blocks are in offset order. */
export function findBlock(t: TopicLog, offset: number): Block | undefined {
  const bs = t.blocks;
  let lo = 0;
  let hi = bs.length - 1;
  let found: Block | undefined;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (bs[mid]!.first <= offset) {
      found = bs[mid];
      lo = mid + 1;
    } else hi = mid - 1;
  }
  return found && offset < found.next ? found : undefined;
}

