/**
 * The shard worker's writer, what shard-worker.ts, retention.ts and read/consumer.ts call.
 * collect() builds a write batch from the ring (batch.ts); submit() writes it through the
 * addon (io_uring or pwritev) with the fsync when one is due, then releases the ring space
 * and publishes the watermarks. The writer keeps the ring's tail, the watermarks and the
 * files owed an fsync; meta records (declarations, sync marks, cursors, the close record,
 * retention's records) go into the batch through MetaRecords (meta-records.ts).
 */
import { ioError } from '../../shared/errors.js';
import { IOV_FIELDS, WRITE_OP_FIELDS } from '../../shared/format/layout.js';
import type { MetaRecord } from '../../shared/format/meta.js';
import type { IoContext } from '../../shared/native.js';
import type { LentSync } from '../store/files.js';
import type { TopicDirectory } from '../../shared/producers/directory.js';
import { RingBig, addBig, ringViews, type RingViews } from '../../shared/ring.js';
import type { NamedConsumer, Run, Segment, TopicLog } from '../store/model.js';
import type { ShardStore } from '../store/store.js';
import { Batch, type DrainResult } from './batch.js';
import { RingSource } from './sources.js';
import { MetaRecords } from './meta-records.js';

export class Writer {
  /** The rings drained: the main ring first, then producer threads' rings (sources.ts). */
  readonly sources: RingSource[];
  private readonly main: RingSource;
  /** Asked when a collect waits for an offset no ring has yet (see Batch.collect). */
  onStuck: () => boolean = () => false;
  /** Time (ms) of the first write not yet fsynced, or 0. */
  unsyncedSince = 0;
  /** Segments written since the last fsync (each also has `unsynced` set). */
  private readonly dirtySegments = new Set<Segment>();
  private readonly batchSegments: Segment[] = [];
  private readonly batch: Batch;
  private readonly meta: MetaRecords;
  // writeBatch's arguments, grown as batches need.
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
    this.batch = new Batch(ring.size, store);
    this.meta = new MetaRecords(store, this.batch);
    this.main = new RingSource(ring, -1);
    this.sources = [this.main];
  }

  /** Logical position of the main ring durable on disk. */
  get durableLogical(): number {
    return this.main.durableLogical;
  }

  /** From the first producer thread on: topics unknown to the shard are looked up in `dir`. */
  useDirectory(dir: TopicDirectory): void {
    this.batch.directory = dir;
  }

  /** Drains ring `ringId` of producer `producer` from now on (once: a repeated attachment changes nothing). */
  attach(producer: number, ringId: number, sab: SharedArrayBuffer): RingSource {
    let src = this.source(ringId);
    if (src === undefined) {
      // A slot is handed out again only once its producer closed or its thread ended: that
      // producer's rings take nothing more, and go once drained.
      for (const old of this.sources) if (old.producer === producer && old !== this.main) old.detaching = true;
      src = new RingSource(ringViews(sab), producer, ringId);
      this.sources.push(src);
    }
    return src;
  }

  /** Ring `ringId` (undefined: the main ring), or undefined when it is not attached. */
  source(ringId: number | undefined): RingSource | undefined {
    if (ringId === undefined) return this.main;
    return this.sources.find((s) => s.ringId === ringId);
  }

  /** The ring producer `producer` (a ledger index; 0: this log's opening thread) appends through now. */
  ringOf(producer: number): RingSource | undefined {
    if (producer === 0) return this.main;
    // A slot reused after its producer closed: the newest ring is the live one.
    for (let k = this.sources.length - 1; k > 0; k--) if (this.sources[k]!.producer === producer && !this.sources[k]!.detaching) return this.sources[k];
    return undefined;
  }

  /** Drops the rings of detached producers once the batch has taken all they published. */
  dropDetached(): void {
    for (let k = this.sources.length - 1; k > 0; k--) {
      const s = this.sources[k]!;
      if (s.detaching && !s.hasData() && s.batchConsumed === 0) this.sources.splice(k, 1);
    }
  }

  /** True when a ring holds published records not yet collected. */
  hasRingData(): boolean {
    for (const s of this.sources) if (s.hasData()) return true;
    return false;
  }

  /** Whether a ring published records since the last collect read its Head. */
  hasNewRingData(): boolean {
    for (const s of this.sources) if (s.hasNewData()) return true;
    return false;
  }

  /** Whether a sync() waits for more than is durable, in any ring. */
  syncRequested(): boolean {
    for (const s of this.sources) if (s.syncRequested()) return true;
    return false;
  }

  /** Wakes every waiter of every ring (the shard failed or closed). */
  wakeAll(): void {
    for (const s of this.sources) s.wakeAll();
  }

  hasUnsynced(): boolean {
    return this.dirtySegments.size > 0;
  }

  /**
   * Collects every published record into the pending batch (nothing is written yet).
   * Stops early at an External record whose payload has not arrived.
   */
  collect(): DrainResult {
    return this.batch.collect(this.sources, this.meta, this.onStuck);
  }

  /** Whether collect() gathered anything to write. */
  hasPending(): boolean {
    return this.hasBatchPending() || this.meta.hasQueued();
  }

  /** Whether the batch holds records (cursor records still queued not counted). */
  hasBatchPending(): boolean {
    if (this.batch.hasPending()) return true;
    // Ring bytes taken without a record to write (a Wrap, a TopicDef) are released by a submit too.
    for (const s of this.sources) if (s.batchConsumed > 0) return true;
    return false;
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
    this.meta.flushQueued();
    const runs = this.batch.runs;
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
    for (const src of this.sources) src.seals.flush();
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

  /** `seg` was deleted: it is owed no fsync any more. */
  forget(seg: Segment): void {
    if (this.dirtySegments.delete(seg)) seg.unsynced = false;
  }

  /**
   * Starts an fdatasync of every file written since its last sync on a detached thread each
   * (datasyncInBackground); the handles. Nothing is marked durable by them: a deletion
   * (retention.ts) waits for them before its file goes.
   */
  syncInBackground(): LentSync[] {
    const out: LentSync[] = [];
    for (const s of this.dirtySegments) out.push(this.store.files.syncInBackground(s.path));
    return out;
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
      io.writeBatch(ops, runs.length, iovs, this.batch.ext, this.syncFds, syncs.length);
    } finally {
      // writeBatch has reaped every completion: nothing in flight references these files.
      files.unpinAll();
    }
  }

  /** After the batch is written (and `synced`: `nSync` files fsynced): watermarks, ring release. */
  private completeBatch(synced: boolean, nSync: number): void {
    const big = this.ring.big;
    const batch = this.batch;
    let bytes = 0;
    for (const r of batch.runs) bytes += r.end - r.pos;
    if (batch.runs.length > 0) {
      addBig(big, RingBig.WriteSubmits, 1);
      addBig(big, RingBig.BytesWritten, bytes);
      addBig(big, RingBig.RecordsWritten, batch.records);
      if (this.unsyncedSince === 0) this.unsyncedSince = Date.now();
    }
    for (const src of this.sources) src.release();
    if (synced) {
      addBig(big, RingBig.Fsyncs, nSync);
      this.meta.noteDurable(batch.dirtyTopics);
      batch.dirtyTopics.clear();
      // The fsync also made every allocation step of these files durable (a change of the
      // file size needs a metadata flush under fdatasync, fdatasync(2)).
      for (const s of this.dirtySegments) {
        s.unsynced = false;
        // Never lower: a file sized whole at creation has its whole size durable already
        // (createSegment), and lowering it here made every later allocation step start a
        // background fdatasync of the busy file.
        s.durableAllocated = Math.max(s.durableAllocated, s.allocated);
      }
      this.dirtySegments.clear();
      this.unsyncedSince = 0;
      for (const src of this.sources) src.markDurable();
    }
    batch.clear();
  }

  /**
   * Queues a meta record, or its encoding when the caller made it already; returns
   * the sequence number of the segment it goes into.
   */
  appendMeta(m: MetaRecord | Uint8Array): number {
    return this.meta.appendMeta(m);
  }

  /**
   * Recovery fsyncs everything it recovered; the first drain records that in a sync mark.
   * Returns whether a cursor record was queued (recovery pulled a cursor back).
   */
  noteRecovered(): boolean {
    return this.meta.noteRecovered();
  }

  /** Queues a cursor record for `t` (written by the next submit). */
  appendCursor(t: TopicLog): void {
    this.meta.appendCursor(t);
  }

  /** Queues the record of named consumer `c`'s position in `t` (written by the next submit). */
  appendPosition(c: NamedConsumer, t: TopicLog): void {
    this.meta.appendPosition(c, t);
  }

  /** Declares named consumer `c` in the meta topic. */
  declareConsumer(c: NamedConsumer): void {
    this.meta.declareConsumer(c);
  }

  /** Records the deletion of named consumer `c`. */
  dropConsumer(c: NamedConsumer): void {
    this.meta.dropConsumer(c);
  }

  /** The `consumers` record that restates every named consumer of the shard now. */
  consumersRecord(): MetaRecord {
    return this.meta.consumersRecord();
  }

  /** Appends `record` (consumersRecord()) after a snapshot; nothing when the shard has no named consumer. */
  restateConsumers(record: MetaRecord): void {
    this.meta.restateConsumers(record);
  }

  /** Appends the clean-shutdown record listing every topic's end (written by the next submit). */
  appendCloseMark(): void {
    this.meta.appendCloseMark();
  }
}

