/**
 * The drain: turns what the main thread published in the ring into one write batch (every
 * topic block the drain touched, each as one run of iovecs pointing into the ring), seals
 * the record CRCs, submits it through the addon (io_uring or pwritev) with the fsync when
 * one is due, then releases the ring space and publishes the watermarks.
 */
import { ioError } from '../../shared/errors.js';
import {
  PendingSeals,
  encodeFrame,
  frameKind,
  frameLength,
  frameOffset,
  framePayload,
  frameRemaining,
  frameTopic,
  frameWords,
  recordFootprint,
  sealFrame,
} from '../../shared/format/frame.js';
import {
  IOV_FIELDS,
  IOV_SOURCE_RING,
  META_TOPIC_ID,
  RECORD_HEADER_BYTES,
  RING_CONTROL_BYTES,
  RUN_OUT_FIELDS,
  RecordKind,
  WRITE_OP_FIELDS,
} from '../../shared/format/layout.js';
import { type IoContext, native } from '../../shared/native.js';
import { RingBig, RingSlot, addBig, storeBig, type RingViews } from '../../shared/ring.js';
import { type Block, type Run, type TopicLog } from '../store/model.js';
import { INDEX_EVERY, addSmall, indexRecord } from '../store/blocks.js';
import { encodeMeta, type MetaRecord } from '../../shared/format/meta.js';
import type { Segment } from '../store/model.js';
import type { ShardStore } from '../store/store.js';

/**
 * Sync marks are written at most this often (and at close). A mark costs a second write
 * region in the fsync that follows it; marking every fsync halved the fsync rate of
 * appendAndSync. Data fsynced less than this long before a crash is then recovered under
 * torn-tail rules rather than reported as corrupt if damaged, which the contract allows
 * ("corrupt records before a *recorded* sync point").
 */
export const SYNC_MARK_INTERVAL_MS = 250;
const ZEROS = new Uint8Array(8);
/** Room reserveMeta() keeps in the meta topic's block for the declarations of a collect. */
const META_RESERVE = 1024;
// ignoreBOM: a topic name starting with U+FEFF keeps it (the default decoder strips it).
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

interface ExternalGroup {
  payload: Uint8Array;
  lengths: Float64Array;
}

export interface DrainResult {
  /** Ring bytes consumed (written, or skipped as padding). */
  consumed: number;
  /** The drain stopped at an External record whose payload has not arrived yet. */
  blocked: boolean;
}

export class Writer {
  /** Ring tail modulo 2^32, and as a logical position. */
  private tail = 0;
  logicalTail = 0;
  /** Logical position durable on disk. */
  durableLogical = 0;
  readonly externals = new Map<number, ExternalGroup>();
  /** Time (ms) of the first write not yet fsynced, or 0. */
  unsyncedSince = 0;
  /** Segments written since the last fsync (each also has `unsynced` set). */
  private readonly dirtySegments = new Set<Segment>();
  private readonly batchSegments: Segment[] = [];
  private readonly dirtyTopics = new Set<TopicLog>();
  /** Topic durable ends to record in the next sync mark. */
  private readonly pendingMarks = new Map<TopicLog, number>();

  // Per-drain batch under construction.
  private runs: Run[] = [];
  private ext: Uint8Array[] = [];
  /** Ring frames taken one at a time: salted when placed, their CRCs stored before the write. */
  private readonly seals: PendingSeals;
  /** sealRun's output: RUN_OUT_FIELDS numbers, then index pairs. */
  private readonly runOut: Float64Array;
  private externalBytes = 0;
  private records = 0;
  private ops = new Float64Array(WRITE_OP_FIELDS * 64);
  private iovs = new Float64Array(IOV_FIELDS * 1024);
  private syncFds = new Int32Array(16);

  constructor(
    private readonly ring: RingViews,
    private readonly store: ShardStore,
    private readonly plainIo: IoContext,
    private readonly uringIo: IoContext | null,
    private readonly uringAlways: boolean,
  ) {
    this.seals = new PendingSeals(ring.data, ring.words, ring.size / RECORD_HEADER_BYTES + 1);
    this.runOut = new Float64Array(RUN_OUT_FIELDS + 2 * (Math.ceil(ring.size / RECORD_HEADER_BYTES / INDEX_EVERY) + 2));
  }

  /** True when the ring holds published records not yet consumed. */
  hasRingData(): boolean {
    return (Atomics.load(this.ring.ctl, RingSlot.Head) >>> 0) !== this.tail;
  }

  hasUnsynced(): boolean {
    return this.dirtySegments.size > 0;
  }

  /**
   * Collects every published record into the pending batch (nothing is written yet).
   * Stops early at an External record whose payload has not arrived.
   */
  collect(): DrainResult {
    const { ctl, words, data, size, mask } = this.ring;
    const head = Atomics.load(ctl, RingSlot.Head) >>> 0;
    const store = this.store;
    let tail = this.tail;
    let consumed = 0;
    let blocked = false;
    let lastId = -1;
    let lastTopic: TopicLog | null = null;
    if (tail !== head && this.pendingMarks.size > 0 && Date.now() - this.lastMarkAt >= SYNC_MARK_INTERVAL_MS) this.appendSyncMark();
    while (tail !== head) {
      const pos = tail & mask;
      if (size - pos < RECORD_HEADER_BYTES) {
        consumed += size - pos;
        tail = (tail + size - pos) >>> 0;
        continue;
      }
      const kind = frameKind(words, pos);
      const len = frameLength(words, pos);
      let step = 0;
      switch (kind) {
        case RecordKind.Entry: {
          const id = frameTopic(words, pos);
          const sameTopic = id === lastId;
          if (!sameTopic) {
            lastTopic = this.topicOf(id);
            lastId = id;
          }
          const t = lastTopic!;
          const offset = frameOffset(words, pos);
          const b = t.cur;
          if (sameTopic && b !== null && b.run !== null && offset === t.next && b.run.end === b.dataStart + b.used) {
            // The record continues the run this drain already has for its block, right after
            // a record of the same topic (so likely more follow): let the addon take it and
            // every following record of the run in one pass. Records of interleaved topics
            // stay on the per-record path below, which costs less than a call each.
            const out = this.runOut;
            const limit = Math.min(size, pos + ((head - tail) >>> 0));
            const taken = native.sealRun(data, pos, limit, id, offset, b.salt, b.capacity - b.used, out, b.first, INDEX_EVERY);
            if (taken > 0) {
              for (let k = 0; k < out[2]!; k++) b.index.push(out[RUN_OUT_FIELDS + 2 * k]!, b.used + out[RUN_OUT_FIELDS + 2 * k + 1]!);
              b.used += taken;
              b.next = t.next = offset + out[0]!;
              if (out[1]! >= 0) t.complete = out[1]!;
              this.pushIov(b.run, IOV_SOURCE_RING, RING_CONTROL_BYTES + pos, taken);
              this.records += out[0]!;
              step = taken;
              break;
            }
          }
          // First record of its block in this drain (or one that needs a new block).
          step = recordFootprint(len);
          const run = this.place(t, step, offset, frameRemaining(words, pos)).run!;
          this.seals.add(pos, run.block.salt);
          this.pushIov(run, IOV_SOURCE_RING, RING_CONTROL_BYTES + pos, step);
          this.records++;
          break;
        }
        case RecordKind.External: {
          const at = this.logicalTail + consumed;
          const group = this.externals.get(at);
          if (!group) {
            blocked = true;
            break;
          }
          this.externals.delete(at);
          this.expandExternal(frameTopic(words, pos), frameOffset(words, pos), group);
          step = RECORD_HEADER_BYTES;
          break;
        }
        case RecordKind.TopicDef: {
          step = recordFootprint(len);
          const id = frameTopic(words, pos);
          const name = utf8.decode(framePayload(data, pos, len));
          if (this.newTopics.length === 0) this.reserveMeta();
          this.newTopics.push(store.addTopic(id, name));
          break;
        }
        case RecordKind.Wrap:
          step = size - pos;
          break;
        default:
          throw new Error(`walrus-ts internal error: unknown record kind ${kind} in the ring at ${pos}`);
      }
      if (blocked) break;
      consumed += step;
      tail = (tail + step) >>> 0;
    }
    if (this.newTopics.length > 0) this.declareTopics();
    this.pendingTail = tail;
    this.pendingConsumed = consumed;
    return { consumed, blocked };
  }

  /** Topics first seen in the ring during this collect: declared in the same write batch. */
  private newTopics: TopicLog[] = [];

  /**
   * Makes sure the meta topic's current block has room for a declaration before any record
   * of the new topics is placed, so the declarations (written at the end of the collect) lie
   * in a block allocated before the blocks those records open: a crash that keeps only a
   * prefix of the file then keeps a topic's declaration whenever it keeps any of its records.
   */
  private reserveMeta(): void {
    const meta = this.store.meta;
    const b = meta.cur;
    if (b !== null && b.capacity - b.used >= META_RESERVE) return;
    const { block, header } = this.store.allocateBlock(meta, META_RESERVE);
    this.pushIov(this.newRun(block, block.start), this.addExt(header), 0, header.length);
  }

  /** Writes the pending topic declarations: one record for all of them (a drain can define thousands). */
  private declareTopics(): void {
    const defs = this.newTopics;
    this.newTopics = [];
    const at =
      defs.length === 1
        ? this.appendMeta({ k: 'topic', id: defs[0]!.id, name: defs[0]!.name })
        : this.appendMeta({ k: 'topics', t: defs.map((t) => [t.id, t.name]) });
    for (const t of defs) t.nameSeq = at;
  }

  private pendingTail = 0;
  private pendingConsumed = 0;

  private topicOf(id: number): TopicLog {
    const t = this.store.topics.get(id);
    if (!t) throw new Error(`walrus-ts internal error: record for undeclared topic id ${id}`);
    return t;
  }

  /**
   * Places a record of `footprint` bytes at the end of topic `t` (allocating a block if the
   * current one is full) and makes sure a run of this batch ends where it goes; returns its block.
   */
  private place(t: TopicLog, footprint: number, offset: number, remaining: number): Block {
    if (offset !== t.next) {
      throw new Error(`walrus-ts internal error: topic ${t.id} expected offset ${t.next}, the ring holds ${offset}`);
    }
    // The first record of a batch decides where the whole batch goes, so a batch never
    // straddles a topic's shared records and its own blocks.
    if (t.next === t.complete) t.sharedBatch = this.store.fitsShared(t, footprint, remaining);
    if (t.sharedBatch) return this.placeShared(t, footprint, offset, remaining);
    let b = t.cur;
    if (b === null || b.used + footprint > b.capacity) {
      const { block, header } = this.store.allocateBlock(t, footprint);
      b = block;
      const run = this.newRun(b, b.start);
      this.pushIov(run, this.addExt(header), 0, header.length);
    } else if (b.run === null || b.run.end !== b.dataStart + b.used) {
      this.newRun(b, b.dataStart + b.used);
    }
    indexRecord(b, offset, b.used);
    b.used += footprint;
    b.next = offset + 1;
    t.next = offset + 1;
    if (remaining === 1) t.complete = t.next;
    // Every topic touched by a drain passes here at least once (its first record of the
    // drain has no run yet), so this is where it is marked dirty.
    this.dirtyTopics.add(t);
    return b;
  }

  /** `place` for a record that goes to the shard's current shared block. */
  private placeShared(t: TopicLog, footprint: number, offset: number, remaining: number): Block {
    const shared = this.store.shared;
    let b = shared.cur;
    if (b === null || b.used + footprint > b.capacity) {
      const { block, header } = this.store.allocateBlock(shared, footprint);
      b = block;
      const run = this.newRun(b, b.start);
      this.pushIov(run, this.addExt(header), 0, header.length);
    } else if (b.run === null || b.run.end !== b.dataStart + b.used) {
      this.newRun(b, b.dataStart + b.used);
    }
    addSmall(t, { block: b, rel: b.used, offset, fp: footprint });
    t.smallBytes += footprint;
    b.members!.push(t);
    b.unconsumed++;
    b.used += footprint;
    b.next = ++shared.next;
    t.next = offset + 1;
    if (remaining === 1) t.complete = t.next;
    this.dirtyTopics.add(t);
    return b;
  }

  private newRun(b: Block, pos: number): Run {
    const run: Run = { segment: b.segment, pos, end: pos, iovs: [], block: b };
    this.runs.push(run);
    b.run = run;
    return run;
  }

  private pushIov(run: Run, source: number, offset: number, length: number): void {
    const v = run.iovs;
    const n = v.length;
    // Adjacent records of one topic that are adjacent in the ring become one iovec.
    if (n > 0 && v[n - 3] === source && v[n - 2]! + v[n - 1]! === offset) v[n - 1]! += length;
    else v.push(source, offset, length);
    run.end += length;
  }

  private addExt(b: Uint8Array): number {
    this.ext.push(b);
    return this.ext.length - 1;
  }

  /**
   * Frames a record that is not in the ring (meta, external): writes its header at
   * `headerStart` of ext source `headerSource` (`headers`, `headerWords`: that source and its
   * words), places the record, seals it (its payload is held apart) and queues its iovecs.
   */
  private placeFrame(
    t: TopicLog,
    kind: number,
    offset: number,
    remaining: number,
    headers: Uint8Array,
    headerWords: Int32Array,
    headerSource: number,
    headerStart: number,
    payload: Uint8Array,
    payloadSource: number,
    payloadStart: number,
  ): void {
    const len = payload.length;
    const fp = recordFootprint(len);
    encodeFrame(headerWords, headerStart, len, t.id, kind, offset, 0, remaining);
    const block = this.place(t, fp, offset, remaining);
    sealFrame(headers, headerWords, headerStart, block.salt, payload);
    const run = block.run!;
    this.pushIov(run, headerSource, headerStart, RECORD_HEADER_BYTES);
    if (len > 0) this.pushIov(run, payloadSource, payloadStart, len);
    if (fp - RECORD_HEADER_BYTES - len > 0) this.pushIov(run, this.addExt(ZEROS), 0, fp - RECORD_HEADER_BYTES - len);
    this.records++;
  }

  /**
   * Queues a meta record (`payload`: its encoding, when the caller made it already); returns
   * the sequence number of the segment it goes into.
   */
  appendMeta(m: MetaRecord, payload: Uint8Array = encodeMeta(m)): number {
    const meta = this.store.meta;
    const header = new Uint8Array(RECORD_HEADER_BYTES);
    this.placeFrame(meta, RecordKind.Meta, meta.next, 1, header, frameWords(header), this.addExt(header), 0, payload, this.addExt(payload), 0);
    return meta.cur!.segment.seq;
  }

  private lastMarkAt = 0;

  private appendSyncMark(): void {
    this.lastMarkAt = Date.now();
    const t: [number, number][] = [];
    for (const [topic, next] of this.pendingMarks) {
      t.push([topic.id, next]);
      topic.marked = next;
    }
    this.pendingMarks.clear();
    this.appendMeta({ k: 'sync', t });
  }

  private expandExternal(topicId: number, first: number, g: ExternalGroup): void {
    const t = this.topicOf(topicId);
    const n = g.lengths.length;
    const src = this.addExt(g.payload);
    const headers = new Uint8Array(RECORD_HEADER_BYTES * n);
    const headerWords = frameWords(headers);
    const headerSrc = this.addExt(headers);
    let at = 0;
    for (let k = 0; k < n; k++) {
      const len = g.lengths[k]!;
      const h = k * RECORD_HEADER_BYTES;
      this.placeFrame(t, RecordKind.Entry, first + k, n - k, headers, headerWords, headerSrc, h, g.payload.subarray(at, at + len), src, at);
      at += len;
    }
    this.externalBytes += at;
  }

  /** Whether collect() gathered anything to write. */
  hasPending(): boolean {
    return this.runs.length > 0 || this.pendingConsumed > 0;
  }

  /**
   * Writes the pending batch and, when `sync` is true, fdatasyncs every file written since
   * the last fsync, in the same submission. Throws ERR_WALRUS_IO on any failure.
   *
   * The files a batch touches are opened through the shard's SegmentFiles, which keeps at
   * most `limit` descriptors: a batch touching more files than that (many topics writing into
   * blocks of many segments) goes to the kernel in several writeBatch calls of at most
   * `limit` files each. Their order does not matter: nothing is acknowledged until all of them
   * completed, and recovery accepts a batch only whole wherever its records landed.
   */
  submit(sync: boolean): void {
    const runs = this.runs;
    // The distinct files of the batch (usually one or two: a linear scan beats a Set here).
    const segs = this.batchSegments;
    segs.length = 0;
    for (const r of runs) {
      if (!segs.includes(r.segment)) segs.push(r.segment);
      if (!r.segment.unsynced) {
        this.dirtySegments.add(r.segment);
        r.segment.unsynced = true;
      }
    }
    this.seals.flush();
    const nSync = sync ? this.dirtySegments.size : 0;
    if (runs.length > 0 || nSync > 0) {
      try {
        const files = this.store.files;
        if (sync && this.dirtySegments.size > segs.length) for (const s of this.dirtySegments) if (!segs.includes(s)) segs.push(s);
        if (segs.length <= files.limit) this.writeFiles(runs, sync ? segs : [], segs);
        else {
          for (let k = 0; k < segs.length; k += files.limit) {
            const part = new Set(segs.slice(k, k + files.limit));
            this.writeFiles(
              runs.filter((r) => part.has(r.segment)),
              sync ? [...part].filter((s) => this.dirtySegments.has(s)) : [],
              [...part],
            );
          }
        }
      } catch (err) {
        throw ioError(err, sync ? 'writing or syncing the log failed' : 'writing the log failed');
      } finally {
        this.store.files.unpinAll();
      }
    }
    this.completeBatch(sync && nSync > 0, nSync);
  }

  /** One writeBatch call: `runs` (in order) and the fdatasync of `syncs`, all files of `segs`. */
  private writeFiles(runs: Run[], syncs: Segment[], segs: Segment[]): void {
    const files = this.store.files;
    for (const s of segs) files.pin(s);
    if (runs.length === 0 && syncs.length === 0) {
      files.unpinAll();
      return;
    }
    let nIov = 0;
    for (const r of runs) nIov += r.iovs.length / 3;
    if (this.ops.length < runs.length * WRITE_OP_FIELDS) this.ops = new Float64Array(runs.length * WRITE_OP_FIELDS * 2);
    if (this.iovs.length < nIov * IOV_FIELDS) this.iovs = new Float64Array(nIov * IOV_FIELDS * 2);
    const ops = this.ops;
    const iovs = this.iovs;
    let iv = 0;
    for (let k = 0; k < runs.length; k++) {
      const r = runs[k]!;
      const o = k * WRITE_OP_FIELDS;
      ops[o] = r.segment.fd;
      ops[o + 1] = r.pos;
      ops[o + 2] = iv / IOV_FIELDS;
      ops[o + 3] = r.iovs.length / 3;
      for (let j = 0; j < r.iovs.length; j++) iovs[iv++] = r.iovs[j]!;
    }
    if (this.syncFds.length < syncs.length) this.syncFds = new Int32Array(syncs.length * 2);
    for (let k = 0; k < syncs.length; k++) this.syncFds[k] = syncs[k]!.fd;
    // io_uring pays a hand-off to a kernel worker per submission; it wins when the batch
    // writes or syncs several files (their fdatasyncs run in parallel), not for one.
    let multi = syncs.length > 1;
    for (let k = 1; k < runs.length && !multi; k++) multi = runs[k]!.segment !== runs[0]!.segment;
    const io = this.uringIo !== null && (this.uringAlways || multi) ? this.uringIo : this.plainIo;
    try {
      io.writeBatch(ops, runs.length, iovs, this.ext, this.syncFds, syncs.length);
    } finally {
      // writeBatch has reaped every completion: nothing in flight references these files.
      files.unpinAll();
    }
  }

  private completeBatch(synced: boolean, nSync: number): void {
    const { ctl, big } = this.ring;
    let bytes = 0;
    for (const r of this.runs) bytes += r.end - r.pos;
    const consumed = this.pendingConsumed;
    this.tail = this.pendingTail;
    this.logicalTail += consumed;
    if (this.runs.length > 0) {
      addBig(big, RingBig.WriteSubmits, 1);
      addBig(big, RingBig.BytesWritten, bytes);
      addBig(big, RingBig.RecordsWritten, this.records);
      if (this.unsyncedSince === 0) this.unsyncedSince = Date.now();
    }
    if (consumed > 0 || this.externalBytes > 0) {
      // Space is released only now: until the write completed, the kernel read from it.
      Atomics.store(ctl, RingSlot.Tail, this.tail | 0);
      storeBig(big, RingBig.Written, this.logicalTail);
      if (this.externalBytes > 0) addBig(big, RingBig.ExternalBytes, -this.externalBytes);
      Atomics.add(ctl, RingSlot.TailGen, 1);
      Atomics.notify(ctl, RingSlot.TailGen);
    }
    if (synced) {
      addBig(big, RingBig.Fsyncs, nSync);
      this.durableLogical = this.logicalTail;
      for (const t of this.dirtyTopics) {
        t.durable = t.complete;
        if (t.durable !== t.marked) this.pendingMarks.set(t, t.durable);
      }
      this.dirtyTopics.clear();
      // The fsync also made every allocation step of these files durable (a change of the
      // file size needs a metadata flush under fdatasync, fdatasync(2)).
      for (const s of this.dirtySegments) {
        s.unsynced = false;
        s.durableAllocated = s.allocated;
      }
      this.dirtySegments.clear();
      this.unsyncedSince = 0;
      storeBig(big, RingBig.Durable, this.durableLogical);
      Atomics.add(ctl, RingSlot.DurableGen, 1);
      Atomics.notify(ctl, RingSlot.DurableGen);
    }
    for (const r of this.runs) r.block.run = null;
    this.runs = [];
    this.ext = [];
    this.externalBytes = 0;
    this.records = 0;
    this.pendingConsumed = 0;
  }

  /**
   * Recovery fsyncs everything it recovered; the first drain records that in a sync mark so
   * that later damage to it is reported as corruption, not taken for a torn tail.
   */
  noteRecovered(): boolean {
    let clamped = false;
    for (const t of this.store.topics.values()) {
      t.durable = t.complete;
      if (t.durable !== t.marked) this.pendingMarks.set(t, t.durable);
      if (t.cursor !== t.cursorWritten) {
        // Recovery pulled the cursor back to the data it found: record that now, or a later
        // recovery would apply the stale cursor to entries appended after this one.
        this.appendCursor(t);
        clamped = true;
      }
    }
    return clamped;
  }

  /** Queues a cursor record for `t` (written by the next submit). */
  appendCursor(t: TopicLog): void {
    t.cursorSeq = this.appendMeta({ k: 'cursor', id: t.id, next: t.cursor });
    t.cursorWritten = t.cursor;
  }

  /** Appends the clean-shutdown record listing every topic's end (written by the next submit). */
  appendCloseMark(): void {
    // Every cursor that moved since it was last written, in one record.
    const moved: TopicLog[] = [];
    for (const topic of this.store.topics.values()) if (topic.cursor !== topic.cursorWritten) moved.push(topic);
    if (moved.length === 1) this.appendCursor(moved[0]!);
    else if (moved.length > 1) {
      const at = this.appendMeta({ k: 'cursors', t: moved.map((t) => [t.id, t.cursor]) });
      for (const t of moved) {
        t.cursorWritten = t.cursor;
        t.cursorSeq = at;
      }
    }
    if (this.pendingMarks.size > 0) this.appendSyncMark();
    const t: [number, number][] = [];
    for (const topic of this.store.topics.values()) if (topic.id !== META_TOPIC_ID) t.push([topic.id, topic.complete]);
    t.push([META_TOPIC_ID, this.store.meta.next]);
    this.appendMeta({ k: 'close', t });
  }
}
