/**
 * The write batch under construction. collect() turns what the main thread published in the
 * ring into one run of iovecs for every stretch of a block the batch writes: entries point
 * into the ring, block headers, meta records and entries that travelled beside the ring into
 * buffers the batch holds (`ext`). Each record is placed at the end of its topic, in the
 * topic's own block or in the shard's shared block, and salted as it is taken; seal() stores
 * the CRCs just before the write. The Writer (writer.ts) submits the batch, then clears it.
 * What collect() asks of the meta topic (sync marks, topic declarations) is CollectMeta,
 * which MetaRecords (meta-records.ts) implements.
 */
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
  IOV_SOURCE_RING,
  RECORD_HEADER_BYTES,
  RING_CONTROL_BYTES,
  RUN_OUT_FIELDS,
  RecordKind,
} from '../../shared/format/layout.js';
import { native } from '../../shared/native.js';
import { RingSlot, type RingViews } from '../../shared/ring.js';
import { INDEX_EVERY, addSmall, indexRecord } from '../store/blocks.js';
import type { Block, Run, TopicLog } from '../store/model.js';
import type { ShardStore } from '../store/store.js';

const ZEROS = new Uint8Array(8);
// ignoreBOM: a topic name starting with U+FEFF keeps it (the default decoder strips it).
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Entries that travel beside the ring: their payloads, one after the other, and their lengths. */
export interface ExternalGroup {
  payload: Uint8Array;
  lengths: Float64Array;
}

export interface DrainResult {
  /** Ring bytes consumed (written, or skipped as padding). */
  consumed: number;
  /** The drain stopped at an External record whose payload has not arrived yet. */
  blocked: boolean;
}

/** What collect() asks of the meta topic's policy (MetaRecords, meta-records.ts). */
export interface CollectMeta {
  /** At the start of a collect that has records to take: queue a sync mark if one is due. */
  markIfDue(): void;
  /** At the first TopicDef of a collect, before any record of the new topics is placed. */
  reserve(): void;
  /** At the end of a collect: declare `topics`, first seen in it, in the same batch. */
  declare(topics: TopicLog[]): void;
}

export class Batch {
  /** Entries that travel beside the ring, by the logical ring position of their External record. */
  readonly externals = new Map<number, ExternalGroup>();
  /** The batch: one run per stretch of a block it writes, in the order they were opened. */
  runs: Run[] = [];
  /** The buffers the runs' iovecs point into besides the ring, by source number. */
  ext: Uint8Array[] = [];
  /** Records in the batch, and bytes of entries that travelled beside the ring. */
  records = 0;
  externalBytes = 0;
  /** Where the last collect stopped in the ring (modulo 2^32), and the bytes it consumed. */
  tail = 0;
  consumed = 0;
  /**
   * Topics written since the last fsync. Every topic a batch touches passes through place()
   * at least once (its first record of the batch has no run yet), which adds it here.
   */
  readonly dirtyTopics = new Set<TopicLog>();
  /** Ring frames taken one at a time: salted when placed, their CRCs stored by seal(). */
  private readonly seals: PendingSeals;
  /** sealRun's output: RUN_OUT_FIELDS numbers, then index pairs. */
  private readonly runOut: Float64Array;

  constructor(
    private readonly ring: RingViews,
    private readonly store: ShardStore,
  ) {
    this.seals = new PendingSeals(ring.data, ring.words, ring.size / RECORD_HEADER_BYTES + 1);
    this.runOut = new Float64Array(RUN_OUT_FIELDS + 2 * (Math.ceil(ring.size / RECORD_HEADER_BYTES / INDEX_EVERY) + 2));
  }

  /**
   * Collects every record published in the ring from `tail` (`logicalTail`: the same place as
   * a logical position) into the batch; nothing is written yet. Stops early at an External
   * record whose payload has not arrived.
   */
  collect(tail: number, logicalTail: number, meta: CollectMeta): DrainResult {
    const { ctl, words, data, size, mask } = this.ring;
    const head = Atomics.load(ctl, RingSlot.Head) >>> 0;
    let consumed = 0;
    let blocked = false;
    let lastId = -1;
    let lastTopic: TopicLog | null = null;
    // Topics first seen in the ring during this collect: declared in the same batch.
    let defined: TopicLog[] | null = null;
    if (tail !== head) meta.markIfDue();
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
            // The record continues the run this batch already has for its block, right after
            // a record of the same topic (so likely more follow): let the addon take it and
            // every following record of the run in one pass. Records of interleaved topics
            // stay on the per-record path below, which costs less than a call each.
            step = this.continueRun(t, b, pos, Math.min(size, pos + ((head - tail) >>> 0)));
            if (step > 0) break;
          }
          // First record of its block in this batch (or one that needs a new block).
          step = recordFootprint(len);
          const run = this.place(t, step, offset, frameRemaining(words, pos)).run!;
          this.seals.add(pos, run.block.salt);
          this.pushIov(run, IOV_SOURCE_RING, RING_CONTROL_BYTES + pos, step);
          this.records++;
          break;
        }
        case RecordKind.External:
          blocked = !this.takeExternal(logicalTail + consumed, frameTopic(words, pos), frameOffset(words, pos));
          step = RECORD_HEADER_BYTES;
          break;
        case RecordKind.TopicDef: {
          step = recordFootprint(len);
          const name = utf8.decode(framePayload(data, pos, len));
          if (defined === null) {
            meta.reserve();
            defined = [];
          }
          defined.push(this.store.addTopic(frameTopic(words, pos), name));
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
    if (defined !== null) meta.declare(defined);
    this.tail = tail;
    this.consumed = consumed;
    return { consumed, blocked };
  }

  /** Whether the batch has anything to write, or ring space to release. */
  hasPending(): boolean {
    return this.runs.length > 0 || this.consumed > 0;
  }

  /** Stores the CRCs of the ring frames taken one at a time (before the batch is written). */
  seal(): void {
    this.seals.flush();
  }

  /** Empties the batch once it is written (the ring space it pointed into is released). */
  clear(): void {
    for (const r of this.runs) r.block.run = null;
    this.runs = [];
    this.ext = [];
    this.externalBytes = 0;
    this.records = 0;
    this.consumed = 0;
  }

  private topicOf(id: number): TopicLog {
    const t = this.store.topics.get(id);
    if (!t) throw new Error(`walrus-ts internal error: record for undeclared topic id ${id}`);
    return t;
  }

  /**
   * Lets the addon take the Entry record at ring position `pos` and the records of `t` that
   * follow it, up to ring position `limit`, into the run this batch has for `b` (`t`'s current
   * block, which the record continues: its offset is `t.next`). Returns the bytes taken; 0
   * when the addon took none (the record does not fit in `b`) and the caller places it.
   */
  private continueRun(t: TopicLog, b: Block, pos: number, limit: number): number {
    const out = this.runOut;
    const offset = t.next;
    const taken = native.sealRun(this.ring.data, pos, limit, t.id, offset, b.salt, b.capacity - b.used, out, b.first, INDEX_EVERY);
    if (taken > 0) {
      for (let k = 0; k < out[2]!; k++) b.index.push(out[RUN_OUT_FIELDS + 2 * k]!, b.used + out[RUN_OUT_FIELDS + 2 * k + 1]!);
      b.used += taken;
      b.next = t.next = offset + out[0]!;
      if (out[1]! >= 0) t.complete = out[1]!;
      this.pushIov(b.run!, IOV_SOURCE_RING, RING_CONTROL_BYTES + pos, taken);
      this.records += out[0]!;
    }
    return taken;
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
    if (b === null || b.used + footprint > b.capacity) b = this.openBlock(t, footprint);
    else if (b.run === null || b.run.end !== b.dataStart + b.used) this.newRun(b, b.dataStart + b.used);
    indexRecord(b, offset, b.used);
    b.used += footprint;
    b.next = offset + 1;
    t.next = offset + 1;
    if (remaining === 1) t.complete = t.next;
    this.dirtyTopics.add(t);
    return b;
  }

  /** `place` for a record that goes to the shard's current shared block. */
  private placeShared(t: TopicLog, footprint: number, offset: number, remaining: number): Block {
    const shared = this.store.shared;
    let b = shared.cur;
    if (b === null || b.used + footprint > b.capacity) b = this.openBlock(shared, footprint);
    else if (b.run === null || b.run.end !== b.dataStart + b.used) this.newRun(b, b.dataStart + b.used);
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

  /**
   * Gives `t` (a topic, the shared topic or the meta topic) a new current block with room for
   * a record of `footprint` bytes, and opens this batch's run for it with the block's header.
   */
  openBlock(t: TopicLog, footprint: number): Block {
    const { block, header } = this.store.allocateBlock(t, footprint);
    this.pushIov(this.newRun(block, block.start), this.addExt(header), 0, header.length);
    return block;
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

  /** Holds `b` for the batch's write; returns its source number for iovecs. */
  addExt(b: Uint8Array): number {
    this.ext.push(b);
    return this.ext.length - 1;
  }

  /**
   * Frames a record that is not in the ring (meta, external): writes its header at
   * `headerStart` of ext source `headerSource` (`headers`, `headerWords`: that source and its
   * words), places the record, seals it (its payload is held apart) and queues its iovecs.
   */
  placeFrame(
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
   * Places the entries that travelled beside the ring for the External record at logical ring
   * position `at` as topic `topicId`'s from offset `first`; false when they have not arrived.
   */
  private takeExternal(at: number, topicId: number, first: number): boolean {
    const g = this.externals.get(at);
    if (!g) return false;
    this.externals.delete(at);
    const t = this.topicOf(topicId);
    const n = g.lengths.length;
    const src = this.addExt(g.payload);
    const headers = new Uint8Array(RECORD_HEADER_BYTES * n);
    const headerWords = frameWords(headers);
    const headerSrc = this.addExt(headers);
    let off = 0;
    for (let k = 0; k < n; k++) {
      const len = g.lengths[k]!;
      const h = k * RECORD_HEADER_BYTES;
      this.placeFrame(t, RecordKind.Entry, first + k, n - k, headers, headerWords, headerSrc, h, g.payload.subarray(off, off + len), src, off);
      off += len;
    }
    this.externalBytes += off;
    return true;
  }
}
