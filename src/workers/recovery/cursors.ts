/**
 * The scan's last phase, once every chain is replayed: cursors pulled back to the data
 * recovered, the clean-shutdown decision, and where each chain continues.
 */
import { META_TOPIC_ID } from '../../shared/format/layout.js';
import type { MetaRecord } from '../../shared/format/meta.js';
import type { ShardStore } from '../store/store.js';
import type { TopicLog } from '../store/model.js';
import { floorOf } from '../store/blocks.js';

/** Sets every topic's durable mark, cursor and delivery position from what was recovered. */
export function settleCursors(store: ShardStore, marks: Map<number, number>): void {
  for (const t of store.topics.values()) {
    t.marked = marks.get(t.id) ?? 0;
    // A cursor never points past recovered data: entries after it may have been lost with
    // the torn tail (a cursor written without an fsync, under atLeastOnce, can outrun the
    // data it counted only when both were unsynced).
    if (t.id === META_TOPIC_ID) continue; // the meta topic has no reader
    // A default consumer that never read a topic named consumers read stays at 0 (it does
    // not count for deletion: blocks.ts defaultCounts); any other is clamped.
    const idle = t.cursorWritten === 0 && t.positions !== null && t.positions.size > 0;
    t.cursor = idle ? 0 : clampCursor(t, t.cursorWritten);
    // Entries delivered and not committed before the crash are delivered again from here.
    t.delivered = t.cursor;
    if (t.positions !== null) {
      for (const p of t.positions.values()) {
        p.cursor = p.delivered = clampCursor(t, p.cursorWritten);
      }
    }
    t.floor = floorOf(t);
    for (const r of t.small) if (r.offset >= t.floor) r.block.unconsumed++;
  }
}

function clampCursor(t: TopicLog, stated: number): number {
  return Math.max(t.start, Math.min(stated, t.complete));
}

/**
 * Clean: nothing corrupt, broken or torn, and either a shard with no files yet (`files` 0)
 * or one whose last meta record (`last`) is a close record and whose topics all end where it
 * says (the meta topic one record later: the close record itself).
 */
export function closedCleanly(store: ShardStore, damaged: boolean, last: MetaRecord | null, files: number): boolean {
  if (damaged) return false;
  if (last === null) return files === 0;
  return last.k === 'close' && last.t.every(([id, next]) => store.topics.get(id)?.complete === (id === META_TOPIC_ID ? next + 1 : next));
}

/**
 * New records continue right after each chain's last accepted record: torn bytes are zeroed
 * by recovery, so the last block ends in zeros after it, exactly as after a clean close.
 */
export function resumeChains(store: ShardStore): void {
  for (const t of store.topics.values()) {
    t.cur = t.blocks.length > 0 ? t.blocks[t.blocks.length - 1]! : null;
    t.next = t.complete;
  }
}
