/**
 * Recovery's writes, after the read-only scan: the abandoned segment removed, torn bytes and
 * dropped block headers zeroed, the deletion of consumed segments a crash interrupted
 * finished, everything fdatasynced. Also the scan's reckoning of those segments.
 */
import { FORMAT_VERSION, META_TOPIC_ID } from '../../shared/format/layout.js';
import { native } from '../../shared/native.js';
import type { Block } from '../store/model.js';
import { type Segment } from '../store/model.js';
import { fsyncDir } from '../../shared/file-io.js';
import type { ShardStore } from '../store/store.js';
import type { Repair, ShardScan } from './findings.js';

/** Applies what a 'recover' scan found; the shard then writes after every accepted record. */
export function applyScan(store: ShardStore, scan: ShardScan, debug: (msg: string) => void): void {
  if (scan.abandoned) {
    native.unlink(scan.abandoned.path);
    fsyncDir(store.dir);
    debug(`removed ${scan.abandoned.path}: segment creation was interrupted (${scan.abandoned.why})`);
  }
  chooseCurrentSegment(store);
  applyRepairs(store, scan.repairs);
  finishDeletions(store, scan.obsolete, debug);
  // What recovery accepted (and the zeros over what it dropped) is now the base of everything
  // after it: make it durable before any new record can depend on it.
  // Through the descriptor cache: a log of many segments is recovered within the bound too.
  for (const seg of store.segments) native.fdatasync(store.fd(seg));
}

/**
 * The oldest segments none of whose blocks belongs to a topic chain any more: a deletion of
 * consumed segments that a crash interrupted after its trim records were made durable. Only a
 * prefix, as the worker deletes: never the last segment. `snapshotAt`, `restatedSeq`: the
 * meta topic's snapshots (meta-fold.ts), which restate the meta blocks before them.
 */
export function obsoleteSegments(store: ShardStore, snapshotAt: number, restatedSeq: number): Segment[] {
  const live = new Set<Block>();
  for (const t of store.topics.values()) {
    for (const b of t.blocks) if (t.id !== META_TOPIC_ID || (b.next > snapshotAt && b.segment.seq > restatedSeq)) live.add(b);
  }
  // A shared block is live while it holds a record at or after its topic's start.
  for (const b of store.shared.blocks) if (b.members!.length > 0) live.add(b);
  const out: Segment[] = [];
  for (const seg of store.segments.slice(0, -1)) {
    if (seg.blocks.length === 0 || seg.blocks.some((b) => live.has(b))) break;
    out.push(seg);
  }
  return out;
}

/** Deletes the segments `obsoleteSegments` found (a prefix of store.segments). */
function finishDeletions(store: ShardStore, obsolete: Segment[], debug: (msg: string) => void): void {
  let removed = false;
  for (const gone of obsolete) {
    const seg = store.segments.shift()!;
    if (seg !== gone) throw new Error('walrus internal error: obsolete segments are not a prefix');
    const fd = store.files.release(seg);
    if (fd >= 0) native.close(fd);
    native.unlink(seg.path);
    // A chain whose last block was there goes on in a new block (the shared chain's last
    // block may be one whose records all lie below their topics' starts: no record of it
    // is live, so the segment is obsolete, but the scan made it the chain's current block).
    for (const t of [...store.topics.values(), store.shared]) {
      t.blocks = t.blocks.filter((b) => b.segment !== seg);
      if (t.cur !== null && t.cur.segment === seg) t.cur = null;
    }
    removed = true;
    debug(`removed ${seg.path}: every block in it had been consumed and trimmed`);
  }
  if (removed) fsyncDir(store.dir);
}

/**
 * Overwrites torn bytes and dropped block headers with zeros, so that the next recovery finds
 * a clean end where this one truncated, and no stale frame can ever be taken for a new one.
 * Idempotent: a crash in the middle leaves bytes the next recovery drops again.
 */
function applyRepairs(store: ShardStore, repairs: Repair[]): void {
  const zeros = new Uint8Array(1 << 20);
  for (const r of repairs) {
    for (let done = 0; done < r.length; ) {
      const n = Math.min(zeros.length, r.length - done);
      native.pwritev(store.fd(r.seg), [zeros.subarray(0, n)], r.pos + done);
      done += n;
    }
  }
}

/** New blocks go after every block recovery found, in the last segment if it is compatible. */
function chooseCurrentSegment(store: ShardStore): void {
  const last = store.segments[store.segments.length - 1];
  store.current = last && last.blockBytes === store.blockBytes && last.version === FORMAT_VERSION ? last : null;
}
