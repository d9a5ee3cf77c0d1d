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
import { RingBig, RingSlot, addBig, storeBig, type RingViews } from '../../shared/ring.js';
import type { NamedConsumer, Run, Segment, TopicLog } from '../store/model.js';
import type { ShardStore } from '../store/store.js';
import { Batch, type DrainResult, type ExternalGroup } from './batch.js';
import { MetaRecords } from './meta-records.js';

export class Writer {
  /** Ring tail modulo 2^32, and as a logical position. */
  private tail = 0;
  private logicalTail = 0;
  /** Logical position durable on disk. */
  durableLogical = 0;
  /** Entries that travel beside the ring, by the logical position of their External record. */
  readonly externals: Map<number, ExternalGroup>;
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
    this.batch = new Batch(ring, store);
    this.meta = new MetaRecords(store, this.batch);
    this.externals = this.batch.externals;
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
    return this.batch.collect(this.tail, this.logicalTail, this.meta);
  }

  /** Whether collect() gathered anything to write. */
  hasPending(): boolean {
    return this.batch.hasPending() || this.meta.hasQueued();
  }

  /** Whether the batch holds records (cursor records still queued not counted). */
  hasBatchPending(): boolean {
    return this.batch.hasPending();
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
    this.batch.seal();
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
      io.writeBatch(ops, runs.length, iovs, this.batch.ext, this.syncFds, syncs.length);
    } finally {
      // writeBatch has reaped every completion: nothing in flight references these files.
      files.unpinAll();
    }
  }

  /** After the batch is written (and `synced`: `nSync` files fsynced): watermarks, ring release. */
  private completeBatch(synced: boolean, nSync: number): void {
    const { ctl, big } = this.ring;
    const batch = this.batch;
    let bytes = 0;
    for (const r of batch.runs) bytes += r.end - r.pos;
    const consumed = batch.consumed;
    this.tail = batch.tail;
    this.logicalTail += consumed;
    if (batch.runs.length > 0) {
      addBig(big, RingBig.WriteSubmits, 1);
      addBig(big, RingBig.BytesWritten, bytes);
      addBig(big, RingBig.RecordsWritten, batch.records);
      if (this.unsyncedSince === 0) this.unsyncedSince = Date.now();
    }
    if (consumed > 0 || batch.externalBytes > 0) {
      // Space is released only now: until the write completed, the kernel read from it.
      Atomics.store(ctl, RingSlot.Tail, this.tail | 0);
      storeBig(big, RingBig.Written, this.logicalTail);
      if (batch.externalBytes > 0) addBig(big, RingBig.ExternalBytes, -batch.externalBytes);
      Atomics.add(ctl, RingSlot.TailGen, 1);
      Atomics.notify(ctl, RingSlot.TailGen);
    }
    if (synced) {
      addBig(big, RingBig.Fsyncs, nSync);
      this.durableLogical = this.logicalTail;
      this.meta.noteDurable(batch.dirtyTopics);
      batch.dirtyTopics.clear();
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
