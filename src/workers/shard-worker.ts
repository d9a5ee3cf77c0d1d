/**
 * A shard worker: owns one shard's files. It recovers them, then loops: drain the ring into a
 * write batch, submit it (with the fsync when the schedule or a sync() waiter asks for one),
 * release the ring, publish watermarks; sleep on the doorbell when there is nothing to do.
 */
import { BroadcastChannel, type MessagePort, parentPort, receiveMessageOnPort, workerData } from 'node:worker_threads';
import { WalrusError, ioError, serializeError } from '../shared/errors.js';
import type { FromWorker, ProducerChannelMessage, ShardInit, ToWorker } from '../shared/messages.js';
import { readTransfer, unreachable } from '../shared/messages.js';
import { type IoContext, native } from '../shared/native.js';
import { RingSlot, ringViews } from '../shared/ring.js';
import { ShardState } from '../shared/format/layout.js';
import { TopicDirectory } from '../shared/producers/directory.js';
import { BREAK_AFTER_MS, anyInFlight, forEachPublishing } from '../shared/producers/sequencer.js';
import { Consumers } from './read/consumer.js';
import { ReadAhead } from './read/read-ahead.js';
import { Retention } from './retention.js';
import { EMPTY_READ, readEntries } from './read/reader.js';
import { recycleChunks } from './read/chunk-pool.js';
import { recover } from './recovery/index.js';
import { checkMmapFileSystem } from './store/segments.js';
import { ShardStore } from './store/store.js';
import { ExitDrain } from './write/exit-drain.js';
import { Writer } from './write/writer.js';

const init = workerData as ShardInit;
const port = parentPort!;
const ring = ringViews(init.ring);
const { ctl } = ring;
/**
 * Polls of the rings before the worker sleeps after a write (spinForRecords): about 10-30 µs
 * (each poll is an Atomics.load of every ring's Head).
 */
const SPIN_POLLS = 1000;
/** Where producer threads post their rings' attachment, detachment and External payloads. */
const channel = new BroadcastChannel(init.channel);
channel.unref();
// receiveMessageOnPort takes a BroadcastChannel too (Node 15.12 and later); its types say MessagePort.
const channelPort = channel as unknown as MessagePort;
const debug = init.debug ? (msg: string) => process.stderr.write(`WALRUS ${process.pid} shard ${init.shard}: ${msg}\n`) : () => {};

function post(m: FromWorker, transfer?: ArrayBuffer[]): void {
  port.postMessage(m, transfer ?? []);
}

class ShardWorker {
  private failed: WalrusError | null = null;
  private closeRequests: number[] = [];
  private closed = false;

  private readonly consumers: Consumers;
  private readonly retention: Retention;
  /** The producer handle's directory, from the first producer thread's attachment. */
  private directory: TopicDirectory | null = null;
  /** The main ring's Attachments when the channel was last polled. */
  private attachmentsSeen = 0;
  /** process.exit() in the opening thread: what producer threads published goes to the files first. */
  private readonly exitDrain = new ExitDrain(ctl);

  constructor(
    private readonly store: ShardStore,
    private readonly writer: Writer,
  ) {
    const readStats = new BigInt64Array(init.readStats);
    const ahead = new ReadAhead(init.readAhead, (c) => {
      // Read by stats() on the main thread; this worker is the only writer.
      Atomics.store(readStats, 0, BigInt(c.made));
      Atomics.store(readStats, 1, BigInt(c.served));
      Atomics.store(readStats, 2, BigInt(c.dropped));
      Atomics.store(readStats, 3, BigInt(c.failed));
      Atomics.store(readStats, 4, BigInt(c.heldBytes));
    });
    this.consumers = new Consumers(store, writer, init.consistency, post, ahead);
    this.retention = new Retention(store, writer, debug, { bytes: init.retentionBytes, ms: init.retentionMs });
    writer.onStuck = () => this.unstick();
  }

  /**
   * Takes what producer threads posted on the shard's channel: between batches only when
   * Attachments says something was posted; with `force` (before sleeping, and when a collect
   * waits for an offset) always, so that a message that became receivable only after its
   * Attachments bump was seen is never left behind.
   */
  private pollChannel(force = false): boolean {
    const n = Atomics.load(ctl, RingSlot.Attachments);
    if (n === this.attachmentsSeen && !force) return false;
    this.attachmentsSeen = n;
    let any = false;
    for (let m = receiveMessageOnPort(channelPort); m !== undefined; m = receiveMessageOnPort(channelPort)) {
      this.onChannel(m.message as ProducerChannelMessage);
      any = true;
    }
    return any;
  }

  private onChannel(m: ProducerChannelMessage): void {
    switch (m.type) {
      case 'attach':
        if (this.directory === null) {
          this.directory = new TopicDirectory(m.directory);
          this.writer.useDirectory(this.directory);
        }
        this.writer.attach(m.producer, m.ringId, m.ring);
        debug(`producer ${m.producer} attached ring ${m.ringId} (${m.ring.byteLength} bytes)`);
        return;
      case 'detach': {
        const src = this.writer.source(m.ringId);
        if (src) src.detaching = true;
        return;
      }
      case 'external':
        this.onMessage(m);
        return;
      default:
        unreachable(m);
    }
  }

  /**
   * A collect waits for a topic's offset that no ring it knows has published: take new rings
   * from the channel, and publish records a dead or stalled holder left complete in its ring
   * (sequencer.ts); true when either may have brought the offset.
   */
  private unstick(): boolean {
    let changed = this.pollChannel(true);
    const dir = this.directory;
    if (dir !== null) {
      forEachPublishing(dir, init.shard, (producer, before, after) => {
        const src = this.writer.ringOf(producer);
        if (src && Atomics.compareExchange(src.ring.ctl, RingSlot.Head, before | 0, after | 0) === (before | 0)) {
          debug(`published producer ${producer}'s records left by a holder that stopped`);
          changed = true;
        }
      });
    }
    return changed;
  }

  onMessage(m: ToWorker): void {
    switch (m.type) {
      case 'external':
        this.writer.source(m.ring)?.externals.set(m.pos, { payload: m.payload, lengths: m.lengths });
        return;
      case 'read':
        this.drainForRead(false);
        this.onRead(m);
        return;
      case 'consume':
        this.drainForRead(false);
        this.consumers.consume(this.store.topics.get(m.topicId), m, this.failed);
        if (this.consumers.unwrittenWaiting) {
          // The cursor record this read queued goes to the kernel before the read is answered.
          this.drainForRead();
          if (!this.failed) this.consumers.written();
        }
        if (m.checkpoint) this.retention.dirty = true;
        return;
      case 'recycle':
        recycleChunks(m.buffers);
        return;
      case 'taken': {
        this.drainForRead(false);
        const written = this.consumers.taken(this.store.topics.get(m.topicId), m);
        this.retention.dirty = true;
        if (!m.ack) return;
        // The cursor record it queued, if any, goes to the kernel before the answer.
        this.drainForRead();
        if (this.failed) post({ type: 'requestFailed', id: m.id, error: serializeError(this.failed) });
        else post({ type: 'taken', id: m.id, written: written() });
        return;
      }
      case 'syncCursors':
        this.syncCursors(m.id);
        return;
      case 'commit':
      case 'seek':
        this.drainForRead();
        try {
          const t = this.store.topics.get(m.topicId);
          if (m.type === 'commit') this.consumers.commit(t, m.consumer, m.offset);
          else this.consumers.seek(t, m.consumer, m.offset);
        } catch (err) {
          post({ type: 'requestFailed', id: m.id, error: serializeError(err instanceof WalrusError ? err : ioError(err, `${m.type} failed`)) });
          return;
        }
        this.retention.dirty = true;
        this.syncCursors(m.id);
        return;
      case 'position': {
        this.drainForRead();
        const t = this.store.topics.get(m.topicId);
        const p = this.consumers.position(t, m.consumer);
        post({ type: 'position', id: m.id, cursor: p.cursor, delivered: p.delivered, start: t?.start ?? 0, end: t?.complete ?? 0 });
        return;
      }
      case 'consumers':
        post({ type: 'consumers', id: m.id, list: this.consumers.list() });
        return;
      case 'dropConsumer':
        this.drainForRead();
        if (this.consumers.drop(m.name)) this.retention.dirty = true;
        this.syncCursors(m.id);
        return;
      case 'close':
        this.closeRequests.push(m.id);
        return;
      default:
        unreachable(m);
    }
  }

  /**
   * Read-your-writes: everything published before a read request is written first, so the
   * read finds it in the files. A failure to write fails the shard, not only this read.
   * `cursors`: the queued cursor records too. Reads leave them queued (a read never needs
   * them in the files), so the cursor moves of all the reads one round answers go out as one
   * record with the round's submit (step()), or earlier for a request that needs them written.
   */
  private drainForRead(cursors = true): void {
    if (this.failed) return;
    try {
      // Rings of producer threads announced before the request count too: a producer
      // attaches (Attachments) before it publishes anything a reader can have heard of.
      this.pollChannel();
      this.drainAll(cursors);
    } catch (err) {
      this.handleError(err);
    }
  }

  /**
   * sync() after atLeastOnce checkpoints, and commit(): writes what is queued (cursor records
   * included) and fsyncs whatever is unsynced, then answers. Held StrictlyAtOnce replies are
   * covered too.
   */
  private syncCursors(id: number): void {
    this.drainForRead();
    if (!this.failed && this.writer.hasUnsynced()) {
      try {
        this.writer.submit(true);
        if (this.consumers.waiting) this.consumers.released();
      } catch (err) {
        this.handleError(err);
      }
    }
    if (this.failed) post({ type: 'requestFailed', id, error: serializeError(this.failed) });
    else post({ type: 'synced', id });
  }

  private onRead(m: Extract<ToWorker, { type: 'read' }>): void {
    try {
      const t = this.store.topics.get(m.topicId);
      const out = t ? readEntries(t, m.from, m.maxEntries, m.maxBytes) : EMPTY_READ();
      post({ type: 'readResult', id: m.id, data: out.data, entries: out.entries, next: -1 }, readTransfer(out.data, out.entries));
    } catch (err) {
      post({ type: 'requestFailed', id: m.id, error: serializeError(err instanceof WalrusError ? err : ioError(err, 'read failed')) });
    }
  }

  /** Writes everything available now (no fsync unless the schedule wants one); queued cursor records too with `cursors`. */
  private drainAll(cursors: boolean): void {
    while (this.writer.hasRingData()) {
      const r = this.writer.collect();
      if (!this.writer.hasBatchPending()) break;
      this.writer.submit(this.syncDue());
      // As after step()'s submits: a segment may have filled up, so the oldest may now go
      // (a retention bound). Without this, appends that a read wrote never woke retention.
      this.retention.dirty = true;
      if (r.blocked) break;
    }
    // Meta records placed by earlier requests (declarations, drops), and with `cursors` the
    // queued cursor records: a request sees the files as every request before it left them.
    if (cursors ? this.writer.hasPending() : this.writer.hasBatchPending()) this.writer.submit(this.syncDue());
  }

  /** Whether the next submit should carry an fsync. */
  private syncDue(): boolean {
    const w = this.writer;
    if (w.syncRequested()) return true;
    switch (init.fsync.kind) {
      case 'syncEach':
        return true;
      case 'milliseconds':
        return w.unsyncedSince !== 0 && Date.now() - w.unsyncedSince >= init.fsync.ms;
      case 'noFsync':
        return false;
      default:
        return unreachable(init.fsync);
    }
  }

  /** One round of work; returns whether anything was done. */
  private step(): { worked: boolean; blocked: boolean } {
    const w = this.writer;
    let worked = false;
    let blocked = false;
    if (w.hasRingData()) blocked = w.collect().blocked;
    // Pending: records collected from the ring, or meta records (cursors) queued by reads.
    if (w.hasPending() || this.consumers.waiting) {
      // Group commit of StrictlyAtOnce reads: every request posted by now rides this fsync
      // (a burst of reads arrives while the worker answers its first ones).
      if (this.consumers.waiting) while (this.pollMessages());
      const strict = this.consumers.waiting;
      w.submit(strict || this.syncDue());
      if (strict) this.consumers.released();
      // A drain may have filled a segment up: the oldest one may now be deletable.
      this.retention.dirty = true;
      worked = true;
    }
    if (!worked && w.hasUnsynced() && this.syncDue()) {
      w.submit(true);
      worked = true;
    }
    if (!worked && this.store.prepareSpare()) worked = true;
    if (!worked && this.store.prepareAhead()) worked = true;
    if (!w.hasPending() && this.retention.run(Date.now())) {
      this.consumers.pruneReadAheads();
      worked = true;
    }
    w.dropDetached();
    return { worked, blocked };
  }

  /** Milliseconds until the schedule wants an fsync, or undefined when nothing waits. */
  private sleepBudget(): number | undefined {
    const w = this.writer;
    let deadline = this.retention.nextCheck(Date.now());
    if (init.fsync.kind === 'milliseconds' && w.unsyncedSince !== 0) deadline = Math.min(deadline, w.unsyncedSince + init.fsync.ms);
    return Number.isFinite(deadline) ? Math.max(0, deadline - Date.now()) : undefined;
  }

  /** Whether the last turn wrote something (see spinForRecords). */
  private lastWorked = false;

  /** Polls the rings' Heads up to SPIN_POLLS times; true as soon as one has records. */
  private spinForRecords(): boolean {
    const w = this.writer;
    for (let k = 0; k < SPIN_POLLS; k++) if (w.hasNewRingData()) return true;
    return false;
  }

  /** Delivers every message already queued on the port. */
  private pollMessages(): boolean {
    let any = false;
    for (let m = receiveMessageOnPort(port); m !== undefined; m = receiveMessageOnPort(port)) {
      this.onMessage(m.message as ToWorker);
      any = true;
    }
    return any;
  }

  /**
   * The worker's whole life after recovery: a synchronous loop that never returns to the
   * event loop. Messages are taken with receiveMessageOnPort and sleeping is a blocking
   * Atomics.wait, so a wake-up costs one futex wake rather than a trip through the event
   * loop of each thread (that trip was most of the durable latency).
   */
  run(): void {
    for (;;) {
      this.pollMessages();
      this.pollChannel();
      if (this.closeRequests.length > 0) {
        this.finish();
        return;
      }
      let blocked = false;
      if (!this.failed) {
        try {
          if (this.exitDrain.arrived()) {
            // Rings announced before the exit count too (as for a read request).
            this.pollChannel(true);
            this.exitDrain.take(this.writer.sources);
          }
          const r = this.step();
          this.exitDrain.check(this.writer.sources);
          if (r.worked && !r.blocked) {
            this.lastWorked = true;
            continue;
          }
          blocked = r.blocked;
          // Right after a write, records often follow within microseconds (a producer
          // streaming appends): look for them a little before sleeping, so that each append
          // does not pay a futex wake (FUTEX_WAKE from the producer, a reschedule here).
          if (!blocked && this.lastWorked && this.spinForRecords()) continue;
          this.lastWorked = false;
        } catch (err) {
          this.handleError(err);
        }
      }
      // Sleep protocol, paired with wakeWorker() in ring.ts: read the doorbell, announce the
      // sleep, re-check for work (messages included: the producer posts before it rings),
      // then wait for a doorbell change.
      const seen = Atomics.load(ctl, RingSlot.Doorbell);
      Atomics.store(ctl, RingSlot.WorkerSleeping, 1);
      const w = this.writer;
      const work =
        this.pollMessages() ||
        this.pollChannel(true) ||
        this.closeRequests.length > 0 ||
        this.exitDrain.arrived() ||
        (!this.failed &&
          // A collect that stopped at a record waiting for an offset in another ring is
          // unblocked by records published since (whose publisher may have found this
          // worker awake, and so not rung).
          ((!blocked && w.hasRingData()) ||
            (blocked && w.hasNewRingData()) ||
            w.hasPending() ||
            this.consumers.waiting ||
            this.retention.wanted ||
            (w.hasUnsynced() && w.syncRequested())));
      if (!work) Atomics.wait(ctl, RingSlot.Doorbell, seen, this.failed ? undefined : this.sleepBudget());
      Atomics.store(ctl, RingSlot.WorkerSleeping, 0);
    }
  }

  private handleError(err: unknown): void {
    if (this.failed) return;
    const e = err instanceof WalrusError ? err : ioError(err, 'shard worker failure');
    this.failed = e;
    debug(`failed: ${e.message}`);
    this.consumers.failed(e);
    // The error goes on the failure port before State says Failed: whoever sees the state
    // can then take the error itself synchronously (receiveMessageOnPort), errno included.
    init.failPort.postMessage(serializeError(e));
    // Nothing after a failed write or fsync is acknowledged: the shard stops taking records
    // and wakes every waiter so that they see the failure.
    Atomics.store(ctl, RingSlot.State, ShardState.Failed);
    Atomics.add(ctl, RingSlot.TailGen, 1);
    Atomics.notify(ctl, RingSlot.TailGen);
    Atomics.add(ctl, RingSlot.DurableGen, 1);
    Atomics.notify(ctl, RingSlot.DurableGen);
    this.writer.wakeAll();
    post({ type: 'failed', error: serializeError(e) });
  }

  /**
   * Before the last drain of a close: producer threads must append nothing after it. State
   * says Closing (a producer checks it inside its publication, after announcing the
   * publication in its ledger), then the worker waits for the publications in flight to end,
   * at most a few lock-break periods (a producer that died inside one never ends it).
   */
  private stopProducers(): void {
    Atomics.store(ctl, RingSlot.State, ShardState.Closing);
    const dir = this.directory;
    if (dir === null) return;
    const until = Date.now() + 4 * BREAK_AFTER_MS;
    const pause = new Int32Array(new SharedArrayBuffer(4));
    while (anyInFlight(dir) && Date.now() < until) Atomics.wait(pause, 0, 0, 1);
    this.pollChannel(true);
    this.unstick();
  }

  /** Close: write and fsync everything, record the clean shutdown, release the files. */
  private finish(): void {
    if (this.closed) return;
    this.closed = true;
    let error: unknown = null;
    if (!this.failed) {
      this.stopProducers();
      try {
        this.drainAll(true);
        this.writer.appendCloseMark();
        this.writer.submit(true);
        this.retention.finishAfterSync();
        this.consumers.released();
      } catch (err) {
        this.handleError(err);
        error = err;
      }
    }
    try {
      this.store.closeFiles();
    } catch (err) {
      error ??= err;
    }
    Atomics.store(ctl, RingSlot.State, this.failed ? ShardState.Failed : ShardState.Closed);
    this.writer.wakeAll();
    channel.close();
    for (const id of this.closeRequests) {
      if (id < 0) continue;
      if (error) post({ type: 'requestFailed', id, error: serializeError(this.failed ?? error) });
      else post({ type: 'closed', id });
    }
    port.close();
  }
}

/**
 * Submission slots of the worker's io_uring: one submission round carries at most this many
 * writes and fsyncs, and a batch that needs more goes in further rounds, in order
 * (RunUring, native/write_batch.cc), so the value bounds a round, not a batch. 256 has been
 * the depth since the engine's first version; no other depth has been measured.
 */
const URING_QUEUE_DEPTH = 256;

/**
 * The io_uring context, or null (the pwritev path) when the kernel will not give this thread
 * a ring now: io_uring_setup needs a descriptor and locked memory, so under a low
 * `ulimit -n` (EMFILE, ENFILE) or `ulimit -l` (ENOMEM) the log still opens, on pwritev.
 */
function uringContext(): IoContext | null {
  try {
    return new native.IoContext(init.ring, true, URING_QUEUE_DEPTH);
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code !== 'EMFILE' && code !== 'ENFILE' && code !== 'ENOMEM' && code !== 'EAGAIN' && code !== 'EPERM') throw err;
    debug(`io_uring_setup failed (${code}): writing through pwritev`);
    return null;
  }
}

/**
 * Recovers the shard and reports it ready; null when it could not open (reported too). Kept
 * apart from start() so that what only the opening needs (the list of recovered topics sent
 * to the main thread) is garbage once it returns: start() never returns, and whatever its
 * frame held would stay reachable for the life of the log (about 3 MiB per 50,000 topics).
 */
function openShard(): ShardWorker | null {
  const store = new ShardStore(init.dir, init.shard, init.blockBytes, init.segmentSlots, init.memory, !init.memory && init.backend !== 'mmap');
  try {
    // Test build of the addon only (the shipped one has no testSeams): sets up the fault and
    // power-loss seams this worker's environment asks for, before recovery touches a file;
    // a context fault goes on the write contexts once they exist (docs/DURABILITY.md).
    for (const note of native.testSeams?.beforeRecovery(process.env) ?? []) debug(note);
    const result = recover(store, debug);
    // mmap backend: one mapped context does every write (copies) and sync (msync); the
    // segments are mapped once recovery has left them durable.
    const mapped = init.backend === 'mmap';
    if (mapped) checkMmapFileSystem(init.dir);
    const plain = new native.IoContext(init.ring, false, 1, mapped);
    const uring = mapped || init.uring === 'never' ? null : uringContext();
    for (const note of native.testSeams?.onContexts(process.env, uring ? [plain, uring] : [plain]) ?? []) debug(note);
    if (mapped) store.useMappings(plain);
    const writer = new Writer(ring, store, plain, uring, init.uring === 'always');
    // A cursor that recovery pulled back is recorded durably before anything else happens.
    if (writer.noteRecovered()) writer.submit(true);
    const shard = new ShardWorker(store, writer);
    const topics = [...store.topics.values()].filter((t) => t.id !== 0).map((t) => ({ id: t.id, name: t.name, next: t.next }));
    debug(`recovered ${topics.length} topics, ${result.tornBytes} torn bytes, clean=${result.clean}, io=${init.uring}`);
    post({ type: 'ready', topics, maxTopicId: store.maxTopicId, tornBytes: result.tornBytes, uring: uring !== null, cleanShutdown: result.clean });
    return shard;
  } catch (err) {
    try {
      store.closeFiles();
    } catch {
      // The recovery error is the one worth reporting.
    }
    post({ type: 'openFailed', error: serializeError(err instanceof WalrusError ? err : ioError(err, 'recovery failed')) });
    port.close();
    return null;
  }
}

function start(): void {
  if (init.cpu >= 0 && !native.setAffinity(init.cpu)) debug(`could not pin to cpu ${init.cpu}`);
  openShard()?.run();
}

start();
