/**
 * Recovery: rebuilds a shard's topics from its segment files.
 *
 * 1. Every segment header is checked; a last segment whose header never made it to disk (and
 *    holds nothing else) is a creation cut short and is removed.
 * 2. Every slot of every segment is probed for a valid block header (magic, CRC, and the salt
 *    derived from the segment's salt: blocks of an earlier incarnation of a file never pass).
 * 3. Each topic's blocks are replayed in block-sequence order as one chain: a block continues
 *    the chain only if its first offset is the offset the chain expects, and within a block
 *    records are accepted while their length, CRC, topic, kind, salt, offset and batch
 *    position are all what the chain expects. A batch is accepted only whole.
 * 4. What the chain could not accept is a torn tail, unless a sync mark in the meta topic
 *    says it had been made durable: then `open` fails with ERR_WALRUS_CORRUPT. Marks count
 *    wherever they are found (marks.ts): after a break in the meta chain, in meta blocks it
 *    dropped, in slots whose block header is damaged; a mark is only written after the fsync
 *    it describes, so it is true even when the records around it are lost.
 * The meta topic (id 0) is replayed first; it names the topics and carries the sync marks.
 *
 * The format's rules live in `scanShard`, which only reads: `recover` runs it and then
 * applies what it found (zeroes torn bytes, removes abandoned and obsolete files, fsyncs);
 * the CLI's `verify`, `inspect` and `dump` run it in 'inspect' mode, which opens the files
 * read-only and collects corruption instead of throwing at the first one.
 */
import { type WalrusError, corruptError } from '../shared/errors.js';
import { frameLength, frameOffset, framePayload, frameRemaining, frameTopic, frameWords, recordFootprint, verifyFrames } from '../shared/format/frame.js';
import { FORMAT_VERSION, META_TOPIC_ID, RecordKind, SEGMENT_DATA_START, SHARED_TOPIC_ID, BLOCK_HEADER_BYTES } from '../shared/layout.js';
import { native } from '../shared/native.js';
import { type Block, type TopicLog, indexRecord } from './blocks.js';
import { harvestMarks } from './marks.js';
import { replayShared } from './shared-chain.js';
import { checkSegmentSize, framedAt, nonZeroExtent, openSegment, probeBlocks, readBlock } from './recovery-files.js';
import { decodeMeta, type MetaRecord } from './meta.js';
import { type Segment, fsyncDir, listSegments, slotPosition } from './segments.js';
import type { ShardStore } from './store.js';

export interface RecoveryResult {
  tornBytes: number;
  /** The previous instance closed cleanly (its close record is the last meta record). */
  clean: boolean;
}

/** Where a chain stopped accepting data, for error messages. */
interface BreakPoint {
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

interface ChainResult {
  tornBytes: number;
  /** Where the first unaccepted bytes are (null if the chain ended cleanly). */
  broke: BreakPoint | null;
}

/**
 * 'recover': files opened read-write, the first corruption throws (what `open` does).
 * 'inspect': files opened read-only, every corruption found is collected and the scan goes
 * on past it as well as it can; nothing is ever written.
 */
export type ScanMode = 'recover' | 'inspect';

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

export function recover(store: ShardStore, debug: (msg: string) => void): RecoveryResult {
  const scan = scanShard(store, 'recover');
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
  return { tornBytes: scan.tornBytes, clean: scan.clean };
}

/**
 * Reads a shard's segments into `store` (segments, topic chains, cursors) following every
 * rule of docs/FORMAT.md "Recovery", and reports what recovery would repair. Never writes.
 * The segments' descriptors stay open in `store` (close them with `store.closeFiles()`).
 */
export function scanShard(store: ShardStore, mode: ScanMode, progress?: (bytes: number) => void): ShardScan {
  let tornBytes = 0;
  const torn: TornRange[] = [];
  const corrupt: WalrusError[] = [];
  const fail = (err: WalrusError): void => {
    if (mode === 'recover') throw err;
    corrupt.push(err);
  };
  const repairs: Repair[] = [];
  let abandoned: ShardScan['abandoned'] = null;
  const found = new Map<number, Block[]>();
  /** Marks found outside the meta chain (marks.ts): facts wherever they are found. */
  const harvested = new Map<number, number>();
  /** The first slot whose block header is damaged (not zero, not valid). */
  let firstDamage: BreakPoint | null = null;
  // A memory shard starts empty: its segments never outlive the instance.
  const files = store.memory ? [] : listSegments(store.dir, store.shard);
  for (let k = 0; k < files.length; k++) {
    const opened = openSegment(store, files[k]!, k === files.length - 1, mode);
    if (typeof opened === 'string') {
      abandoned = { path: files[k]!.path, why: opened };
      continue;
    }
    if ('code' in opened) {
      fail(opened);
      continue;
    }
    const seg = opened;
    store.segments.push(seg);
    store.lastSegmentSeq = seg.seq;
    const damaged: number[] = [];
    const blocks = probeBlocks(store, seg, damaged);
    const short = checkSegmentSize(seg);
    if (short !== null) fail(short);
    for (const b of blocks) {
      let list = found.get(b.topicId);
      if (!list) found.set(b.topicId, (list = []));
      list.push(b);
      if (b.seq > store.lastBlockSeq) store.lastBlockSeq = b.seq;
      if (b.topicId > store.maxTopicId && b.topicId !== SHARED_TOPIC_ID) store.maxTopicId = b.topicId;
    }
    // A slot whose header is neither zero nor valid: a torn header write, or damage. Its
    // bytes are torn unless a mark in it (or anywhere) says they were durable.
    for (const slot of damaged) {
      const start = slotPosition(slot, seg.blockBytes);
      const buf = new Uint8Array(seg.blockBytes);
      const got = native.pread(store.fd(seg), buf, start);
      harvestMarks(buf, 0, got, null, harvested);
      const extent = nonZeroExtent(buf, 0, got);
      tornBytes += extent;
      torn.push({ file: seg.path, pos: start, bytes: extent, why: 'slot whose block header is damaged' });
      repairs.push({ seg, pos: start, length: extent });
      firstDamage ??= { file: seg.path, pos: start };
    }
  }
  for (const list of found.values()) list.sort((a, b) => a.seq - b.seq);

  const marks = new Map<number, number>();
  // What the meta topic states about each topic goes straight into its TopicLog (one
  // object per topic: a log may hold very many). Until the cursors are clamped below,
  // `cursorWritten` holds the cursor as last stated. A statement about an id that no record
  // names is ignored, as the chains of such ids are (torn, below).
  const named = (id: number, name: string, seq: number): TopicLog => {
    const t = store.addTopic(id, name);
    t.name = name;
    t.nameSeq = seq;
    return t;
  };
  let lastMeta: MetaRecord | null = null;
  /** Offset of the last format-1 snapshot (every topic): meta blocks that end before it are restated. */
  let snapshotAt = -1;
  /** Offset of the last snapshot of either kind (ShardStore.snapshotAt). */
  let lastSnapshotAt = -1;
  /** Highest `s` of the snapshots: meta blocks in segments up to it are restated. */
  let restatedSeq = 0;
  const meta = store.meta;
  const metaBlocks = found.get(META_TOPIC_ID) ?? [];
  // The meta topic's first blocks go when their segment is deleted, after a snapshot record
  // that restates them: its chain starts at the first meta block still present.
  let metaStart = metaBlocks.length > 0 ? Number.POSITIVE_INFINITY : 0;
  for (const b of metaBlocks) metaStart = Math.min(metaStart, b.first);
  const chainIo = { repairs, torn, progress };
  const harvest = (buf: Uint8Array, from: number, end: number, salt: number): void => void harvestMarks(buf, from, end, salt, harvested);
  const metaChain = replayChain(meta, metaBlocks, RecordKind.Meta, chainIo, metaStart, harvest, (payload, file, pos, offset, seq) => {
    const m = decodeMeta(payload);
    if (typeof m === 'string') {
      fail(corruptError(file, pos, m));
      return;
    }
    lastMeta = m;
    switch (m.k) {
      case 'topic':
        named(m.id, m.name, seq);
        break;
      case 'topics':
        for (const [id, name] of m.t) named(id, name, seq);
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
        lastSnapshotAt = offset;
        if (m.s === undefined) snapshotAt = offset;
        else restatedSeq = Math.max(restatedSeq, m.s);
        for (const [id, name, start, cursor] of m.t) {
          const t = named(id, name, seq);
          t.start = Math.max(t.start, start);
          t.cursorWritten = cursor;
          t.startSeq = t.cursorSeq = seq;
        }
        break;
      default:
        for (const [id, next] of m.t) marks.set(id, Math.max(marks.get(id) ?? 0, next));
    }
  });
  meta.start = metaStart;
  store.snapshotAt = lastSnapshotAt;
  if (metaStart > 0 && lastSnapshotAt < 0) {
    const b = metaBlocks.find((x) => x.first === metaStart)!;
    fail(corruptError(b.segment.path, b.start, `the meta topic starts at offset ${metaStart} but holds no snapshot of what came before`));
  }
  tornBytes += metaChain.tornBytes;
  for (const [id, next] of harvested) marks.set(id, Math.max(marks.get(id) ?? 0, next));
  checkDurable(meta, () => 'the meta topic', marks, metaChain.broke ?? firstDamage, store, fail);
  found.delete(META_TOPIC_ID);

  const broken = new Set<number>(metaChain.broke ? [META_TOPIC_ID] : []);
  for (const t of store.topics.values()) if (t.id !== META_TOPIC_ID) t.next = t.complete = t.start;
  // The shared blocks hold the first records of small topics: their own chains continue
  // where those end.
  const sharedChain = replayShared(store, found.get(SHARED_TOPIC_ID) ?? [], chainIo);
  found.delete(SHARED_TOPIC_ID);
  tornBytes += sharedChain.tornBytes;
  if (sharedChain.broke) broken.add(SHARED_TOPIC_ID);
  if (sharedChain.undeclared !== null && marks.has(sharedChain.undeclared)) {
    const where = metaChain.broke ?? firstDamage ?? sharedChain.broke!;
    fail(corruptError(where.file, where.pos, `topic id ${sharedChain.undeclared} has durable data but its declaration is lost`));
  }
  for (const t of store.topics.values()) {
    const { id, name } = t;
    if (id === META_TOPIC_ID) continue;
    const own = found.get(id);
    // Most topics of a log with many small ones have no block of their own.
    if (own === undefined) {
      if (t.complete < (marks.get(id) ?? 0)) checkDurable(t, () => `topic ${JSON.stringify(name)}`, marks, sharedChain.broke ?? firstDamage, store, fail);
      continue;
    }
    const chain = replayChain(t, own, RecordKind.Entry, chainIo, t.complete, null, null);
    found.delete(id);
    tornBytes += chain.tornBytes;
    if (chain.broke) broken.add(id);
    checkDurable(t, () => `topic ${JSON.stringify(name)}`, marks, chain.broke ?? sharedChain.broke ?? firstDamage, store, fail);
  }
  // Blocks of topics whose declaration never became durable: written after the last point
  // that reached the disk, so part of the torn tail.
  for (const [id, blocks] of found) {
    if (marks.has(id)) {
      const b = blocks[0]!;
      const where = metaChain.broke ?? firstDamage ?? { file: b.segment.path, pos: b.start };
      fail(corruptError(where.file, where.pos, `topic id ${id} has durable data but its declaration is lost`));
      continue;
    }
    for (const b of blocks) {
      const scratch = readBlock(b, new Uint8Array(0));
      progress?.(BLOCK_HEADER_BYTES + b.capacity);
      const bytes = BLOCK_HEADER_BYTES + nonZeroExtent(scratch, 0, b.capacity);
      tornBytes += bytes;
      torn.push({ file: b.segment.path, pos: b.start, bytes, why: `block of topic id ${id}, whose declaration never became durable` });
      repairs.push({ seg: b.segment, pos: b.start, length: bytes });
    }
  }

  for (const t of store.topics.values()) {
    t.marked = marks.get(t.id) ?? 0;
    // A cursor never points past recovered data: entries after it may have been lost with
    // the torn tail (a cursor written without an fsync, under atLeastOnce, can outrun the
    // data it counted only when both were unsynced).
    if (t.id === META_TOPIC_ID) continue; // the meta topic has no reader
    t.cursor = Math.max(t.start, Math.min(t.cursorWritten, t.complete));
    for (const r of t.small) if (r.offset >= t.cursor) r.block.unconsumed++;
    // Entries delivered and not committed before the crash are delivered again from here.
    t.delivered = t.cursor;
  }
  const closeRec = lastMeta as MetaRecord | null;
  // Clean: a shard with no files yet, or one whose last meta record is a close record and
  // whose topics all end where it says (the meta topic one record later: the close record).
  const clean =
    corrupt.length === 0 &&
    broken.size === 0 &&
    tornBytes === 0 &&
    (closeRec === null
      ? files.length === 0
      : closeRec.k === 'close' &&
        closeRec.t.every(([id, next]) => store.topics.get(id)?.complete === (id === META_TOPIC_ID ? next + 1 : next)));
  for (const t of store.topics.values()) {
    // Torn bytes were zeroed above, so the last block ends in zeros after its last accepted
    // record, exactly as after a clean close: new records continue there.
    t.cur = t.blocks.length > 0 ? t.blocks[t.blocks.length - 1]! : null;
    t.next = t.complete;
  }
  return { tornBytes, clean, torn, corrupt, repairs, abandoned, obsolete: obsoleteSegments(store, snapshotAt, restatedSeq) };
}

/**
 * The oldest segments none of whose blocks belongs to a topic chain any more: a deletion of
 * consumed segments that a crash interrupted after its trim records were made durable. Only a
 * prefix, as the worker deletes: never the last segment.
 */
function obsoleteSegments(store: ShardStore, snapshotAt: number, restatedSeq: number): Segment[] {
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

/** A cursor (or cursors) record's statement about topic `t`, if the topic is named. */
function statedCursor(t: TopicLog | undefined, next: number, seq: number): void {
  if (t === undefined) return;
  t.cursorWritten = next;
  t.cursorSeq = seq;
}

/** A record of a batch not yet known to be complete. */
interface Pending {
  block: Block;
  rel: number;
  offset: number;
}

/**
 * Replays `blocks` (in sequence order) into `t`. Accepted records extend `t.blocks`;
 * `onMeta` sees each accepted meta payload.
 */
function replayChain(
  t: TopicLog,
  blocks: Block[],
  kind: number,
  io: { repairs: Repair[]; torn: TornRange[]; progress: ((bytes: number) => void) | undefined },
  start: number,
  harvest: ((buf: Uint8Array, from: number, end: number, salt: number) => void) | null,
  onMeta: ((payload: Uint8Array, file: string, pos: number, offset: number, seq: number) => void) | null,
): ChainResult {
  let expected = start;
  let complete = start;
  /** The `remaining` value the next record must carry inside a batch; 0 outside one. */
  let expectRemaining = 0;
  let tornBytes = 0;
  let broke: BreakPoint | null = null;
  let pending: Pending[] = [];
  let scratch: Uint8Array = new Uint8Array(0);
  const { repairs } = io;
  const tear = (file: string, pos: number, bytes: number, why: string): void => {
    tornBytes += bytes;
    io.torn.push({ file, pos, bytes, why });
  };
  const rollback = (): void => {
    // An incomplete batch is dropped whole: its records leave their blocks.
    for (let k = pending.length - 1; k >= 0; k--) {
      const p = pending[k]!;
      if (p.block.used > p.rel) tear(p.block.segment.path, p.block.dataStart + p.rel, p.block.used - p.rel, 'unfinished batch');
      repairs.push({ seg: p.block.segment, pos: p.block.dataStart + p.rel, length: p.block.used - p.rel });
      if (p.rel === 0) repairs.push({ seg: p.block.segment, pos: p.block.start, length: BLOCK_HEADER_BYTES });
      p.block.used = p.rel;
      p.block.next = p.offset;
      trimIndex(p.block);
    }
    expected = complete;
    expectRemaining = 0;
    pending = [];
  };
  for (const b of blocks) {
    // Below the start: left over from a deletion that a crash interrupted (its trim record
    // made it, the unlink did not). Not torn; finishDeletions removes the file.
    if (b.first < start) continue;
    scratch = readBlock(b, scratch);
    io.progress?.(BLOCK_HEADER_BYTES + b.capacity);
    if (b.first !== expected) {
      if (pending.length > 0 && b.first === complete) rollback();
      else {
        // A block that does not continue the chain was written after the point the chain
        // broke (or abandoned by an earlier recovery): torn.
        // Zeroed whole, not only its header: the rest of a block spanning several slots would
        // otherwise look like damaged slots to the next recovery.
        const bytes = BLOCK_HEADER_BYTES + nonZeroExtent(scratch, 0, b.capacity);
        tear(b.segment.path, b.start, bytes, `block starting at offset ${b.first} where the chain expects ${expected}`);
        repairs.push({ seg: b.segment, pos: b.start, length: bytes });
        broke ??= { file: b.segment.path, pos: b.start };
        harvest?.(scratch, 0, b.capacity, b.salt);
        continue;
      }
    }
    // Unsigned shifts: a block holding a record near the 2 GiB limit is longer than 2^31
    // bytes, where `>> 2` turns negative (issue 11, item 2); blocks stay below 2^32 bytes.
    const words = frameWords(scratch);
    const valid = verifyFrames(scratch.subarray(0, b.capacity), 0, b.capacity);
    let pos = 0;
    while (pos < valid) {
      const len = frameLength(words, pos);
      const offset = frameOffset(words, pos);
      const remaining = frameRemaining(words, pos);
      const ok =
        framedAt(words, pos, kind, b.salt) &&
        frameTopic(words, pos) === t.id &&
        offset === expected &&
        (expectRemaining === 0 || remaining === expectRemaining);
      if (!ok) break;
      if (onMeta) onMeta(framePayload(scratch, pos, len), b.segment.path, b.dataStart + pos, offset, b.segment.seq);
      indexRecord(b, offset, pos);
      pending.push({ block: b, rel: pos, offset });
      pos += recordFootprint(len);
      b.used = pos;
      expected = offset + 1;
      b.next = expected;
      if (remaining === 1) {
        complete = expected;
        expectRemaining = 0;
        pending = [];
      } else expectRemaining = remaining - 1;
    }
    if (b.used > 0) t.blocks.push(b);
    else repairs.push({ seg: b.segment, pos: b.start, length: BLOCK_HEADER_BYTES });
    const tail = nonZeroExtent(scratch, pos, b.capacity);
    if (tail > 0) harvest?.(scratch, pos, pos + tail, b.salt);
    if (tail > 0) {
      tear(b.segment.path, b.dataStart + pos, tail, 'bytes after the last valid record of the block');
      repairs.push({ seg: b.segment, pos: b.dataStart + pos, length: tail });
      broke ??= { file: b.segment.path, pos: b.dataStart + pos };
    }
  }
  if (pending.length > 0) {
    broke ??= { file: pending[0]!.block.segment.path, pos: pending[0]!.block.dataStart + pending[0]!.rel };
    rollback();
  }
  // Blocks left without records by a rollback hold nothing the chain needs.
  t.blocks = t.blocks.filter((b) => b.used > 0);
  t.next = complete;
  t.complete = complete;
  return { tornBytes, broke };
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

function trimIndex(b: Block): void {
  while (b.index.length > 0 && b.index[b.index.length - 1]! >= b.used) b.index.length -= 2;
}

function checkDurable(
  t: TopicLog,
  what: () => string,
  marks: Map<number, number>,
  broke: BreakPoint | null,
  store: ShardStore,
  fail: (err: WalrusError) => void,
): void {
  const mark = marks.get(t.id) ?? 0;
  if (t.complete >= mark) return;
  const last = t.blocks[t.blocks.length - 1];
  const where = broke ?? (last ? { file: last.segment.path, pos: last.dataStart + last.used } : { file: store.segments[0]?.path ?? store.dir, pos: SEGMENT_DATA_START });
  fail(corruptError(where.file, where.pos, `${what()} recovers ${t.complete} entries but ${mark} had been made durable`));
}

/** New blocks go after every block recovery found, in the last segment if it is compatible. */
function chooseCurrentSegment(store: ShardStore): void {
  const last = store.segments[store.segments.length - 1];
  store.current = last && last.blockBytes === store.blockBytes && last.version === FORMAT_VERSION ? last : null;
}
