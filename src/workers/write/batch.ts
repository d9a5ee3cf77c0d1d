/**
 * The write batch under construction. collect() turns what the appending threads published in
 * the shard's rings (sources.ts) into one run of iovecs for every stretch of a block the batch
 * writes: entries point into the rings, block headers, meta records and entries that travelled beside the ring into
 * buffers the batch holds (`ext`). Each record is placed at the end of its topic, in the
 * topic's own block or in the shard's shared block, and salted as it is taken; seal() stores
 * the CRCs just before the write. The Writer (writer.ts) submits the batch, then clears it.
 * What collect() asks of the meta topic (sync marks, topic declarations) is CollectMeta,
 * which MetaRecords (meta-records.ts) implements.
 */
import {
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
  RECORD_HEADER_BYTES,
  RING_CONTROL_BYTES,
  RUN_OUT_FIELDS,
  RecordKind,
} from '../../shared/format/layout.js';
import { native } from '../../shared/native.js';
import type { TopicDirectory } from '../../shared/producers/directory.js';
import { RingSlot } from '../../shared/ring.js';
import { INDEX_EVERY, addSmall, indexRecord } from '../store/blocks.js';
import type { Block, Run, TopicLog } from '../store/model.js';
import type { ShardStore } from '../store/store.js';
import type { RingSource } from './sources.js';

const ZEROS = new Uint8Array(8);
// ignoreBOM: a topic name starting with U+FEFF keeps it (the default decoder strips it).
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Why a ring's collect stopped before its Head. */
const enum Stop {
  None,
  /** An External record whose payload has not arrived. */
  External,
  /** A record whose topic's earlier offsets are in another ring. */
  Offset,
}

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
  /** The batch: one run per stretch of a block it writes, in the order they were opened. */
  runs: Run[] = [];
  /** The buffers the runs' iovecs point into besides the main ring, by source number. */
  ext: Uint8Array[] = [];
  /** Records in the batch, and bytes of entries that travelled beside a ring. */
  records = 0;
  externalBytes = 0;
  /**
   * Topics written since the last fsync. Every topic a batch touches passes through place()
   * at least once (its first record of the batch has no run yet), which adds it here.
   */
  readonly dirtyTopics = new Set<TopicLog>();
  /** sealRun's output: RUN_OUT_FIELDS numbers, then index pairs. */
  private readonly runOut: Float64Array;
  /** Topics first seen during the collect in progress: declared in the same batch. */
  private defined: TopicLog[] | null = null;
  private meta: CollectMeta | null = null;

  constructor(
    ringSize: number,
    private readonly store: ShardStore,
    /** The directory of a log with producer threads (set when the first one attaches), else null. */
    public directory: TopicDirectory | null = null,
  ) {
    this.runOut = new Float64Array(RUN_OUT_FIELDS + 2 * (Math.ceil(ringSize / RECORD_HEADER_BYTES / INDEX_EVERY) + 2));
  }

  /**
   * Collects every record published in `sources` since the batch last took from them into
   * the batch; nothing is written yet. A ring stops early at an External record whose payload
   * has not arrived, or (several rings) at a record of a topic whose earlier offsets are in
   * another ring: those are published already (sequencer.ts), so the rings are taken in
   * passes until none moves. `stuck` is asked when a pass moved nothing while a ring waits
   * for an offset (it may find a new ring, or publish a dead holder's records) and says
   * whether to try again.
   */
  collect(sources: readonly RingSource[], meta: CollectMeta, stuck: () => boolean): DrainResult {
    this.defined = null;
    this.meta = meta;
    let consumed = 0;
    let external = false;
    let waiting = false;
    for (const src of sources) {
      if (src.hasData()) {
        meta.markIfDue();
        break;
      }
    }
    for (;;) {
      let moved = 0;
      waiting = false;
      for (const src of sources) {
        const r = this.collectRing(src);
        moved += r.consumed;
        if (r.stop === Stop.External) external = true;
        else if (r.stop === Stop.Offset) waiting = true;
      }
      consumed += moved;
      if (!waiting) break;
      if (moved === 0 && !stuck()) break;
    }
    if (this.defined !== null) meta.declare(this.defined);
    this.meta = null;
    return { consumed, blocked: external || waiting };
  }

  /** Takes the records of one ring, from where the batch left it, until its Head or a stop. */
  private collectRing(src: RingSource): { consumed: number; stop: Stop } {
    const { ctl, words, size, mask } = src.ring;
    const head = Atomics.load(ctl, RingSlot.Head) >>> 0;
    src.seenHead = head;
    let tail = src.batchTail;
    let consumed = 0;
    let stop: Stop = Stop.None;
    let lastId = -1;
    let lastTopic: TopicLog | null = null;
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
          if (offset !== t.next && this.waitsForOffset(t, offset)) {
            stop = Stop.Offset;
            break;
          }
          const b = t.cur;
          if (sameTopic && b !== null && b.run !== null && offset === t.next && b.run.end === b.dataStart + b.used) {
            // The record continues the run this batch already has for its block, right after
            // a record of the same topic (so likely more follow): let the addon take it and
            // every following record of the run in one pass. Records of interleaved topics
            // stay on the per-record path below, which costs less than a call each.
            step = this.continueRun(src, t, b, pos, Math.min(size, pos + ((head - tail) >>> 0)));
            if (step > 0) break;
          }
          // First record of its block in this batch (or one that needs a new block).
          step = recordFootprint(len);
          const run = this.place(t, step, offset, frameRemaining(words, pos)).run!;
          src.seals.add(pos, run.block.salt);
          this.pushIov(run, src.iovSource((b) => this.addExt(b)), RING_CONTROL_BYTES + pos, step);
          this.records++;
          break;
        }
        case RecordKind.External:
          stop = this.externalAt(src, pos, consumed);
          step = RECORD_HEADER_BYTES;
          break;
        case RecordKind.TopicDef: {
          step = recordFootprint(len);
          const name = utf8.decode(framePayload(src.ring.data, pos, len));
          this.define(frameTopic(words, pos), name);
          break;
        }
        case RecordKind.Wrap:
          step = size - pos;
          break;
        default:
          throw new Error(`walrus-ts internal error: unknown record kind ${kind} in the ring at ${pos}`);
      }
      if (stop !== Stop.None) break;
      consumed += step;
      tail = (tail + step) >>> 0;
    }
    src.batchTail = tail;
    src.batchConsumed += consumed;
    return { consumed, stop };
  }

  /**
   * The External record at `pos` of `src` (`consumed` bytes into this collect of it): its
   * entries placed (Stop.None), or why not yet.
   */
  private externalAt(src: RingSource, pos: number, consumed: number): Stop {
    const words = src.ring.words;
    const t = this.topicOf(frameTopic(words, pos));
    const first = frameOffset(words, pos);
    if (first !== t.next && this.waitsForOffset(t, first)) return Stop.Offset;
    return this.takeExternal(src, src.logicalTail + src.batchConsumed + consumed, t, first) ? Stop.None : Stop.External;
  }

  /**
   * A record of `t` at `offset` when `t.next` is due: with producer threads, a later offset
   * whose predecessors another ring holds (wait for them); otherwise a broken invariant.
   */
  private waitsForOffset(t: TopicLog, offset: number): boolean {
    if (this.directory !== null && offset > t.next) return true;
    throw new Error(`walrus-ts internal error: topic ${t.id} expected offset ${t.next}, the ring holds ${offset}`);
  }

  /** Declares topic `id` named `name`, first seen in this collect. */
  private define(id: number, name: string): TopicLog {
    const known = this.store.topics.get(id);
    if (known) return known;
    if (this.defined === null) {
      this.meta!.reserve();
      this.defined = [];
    }
    const t = this.store.addTopic(id, name);
    this.defined.push(t);
    return t;
  }

  /** Whether the batch has anything to write. */
  hasPending(): boolean {
    return this.runs.length > 0;
  }

  /** Empties the batch once it is written (the ring space it pointed into is released). */
  clear(): void {
    for (const r of this.runs) r.block.run = null;
    this.runs = [];
    this.ext = [];
    this.externalBytes = 0;
    this.records = 0;
  }

  /**
   * The topic of a ring record: known to the shard, or (a log with producer threads, whose
   * topics need no TopicDef record) made through the directory, declared in this batch.
   */
  private topicOf(id: number): TopicLog {
    const t = this.store.topics.get(id);
    if (t) return t;
    const name = this.directory?.nameOfId(id) ?? null;
    if (name === null) throw new Error(`walrus-ts internal error: record for undeclared topic id ${id}`);
    return this.define(id, name);
  }

  /**
   * Lets the addon take the Entry record at ring position `pos` and the records of `t` that
   * follow it, up to ring position `limit`, into the run this batch has for `b` (`t`'s current
   * block, which the record continues: its offset is `t.next`). Returns the bytes taken; 0
   * when the addon took none (the record does not fit in `b`) and the caller places it.
   */
  private continueRun(src: RingSource, t: TopicLog, b: Block, pos: number, limit: number): number {
    const out = this.runOut;
    const offset = t.next;
    const taken = native.sealRun(src.ring.data, pos, limit, t.id, offset, b.salt, b.capacity - b.used, out, b.first, INDEX_EVERY);
    if (taken > 0) {
      for (let k = 0; k < out[2]!; k++) b.index.push(out[RUN_OUT_FIELDS + 2 * k]!, b.used + out[RUN_OUT_FIELDS + 2 * k + 1]!);
      b.used += taken;
      b.next = t.next = offset + out[0]!;
      if (out[1]! >= 0) t.complete = out[1]!;
      this.pushIov(b.run!, src.iovSource((x) => this.addExt(x)), RING_CONTROL_BYTES + pos, taken);
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
   * Places the entries that travelled beside `src` for its External record at logical ring
   * position `at` as topic `t`'s from offset `first`; false when they have not arrived.
   */
  private takeExternal(src: RingSource, at: number, t: TopicLog, first: number): boolean {
    const g = src.externals.get(at);
    if (!g) return false;
    src.externals.delete(at);
    const n = g.lengths.length;
    const payloadSrc = this.addExt(g.payload);
    const headers = new Uint8Array(RECORD_HEADER_BYTES * n);
    const headerWords = frameWords(headers);
    const headerSrc = this.addExt(headers);
    let off = 0;
    for (let k = 0; k < n; k++) {
      const len = g.lengths[k]!;
      const h = k * RECORD_HEADER_BYTES;
      this.placeFrame(t, RecordKind.Entry, first + k, n - k, headers, headerWords, headerSrc, h, g.payload.subarray(off, off + len), payloadSrc, off);
      off += len;
    }
    this.externalBytes += off;
    src.batchExternalBytes += off;
    return true;
  }
}
