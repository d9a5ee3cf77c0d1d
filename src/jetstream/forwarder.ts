/**
 * The forwarding loop (docs/DISTRIBUTION.md, "Design"): reads each topic ahead of its
 * committed position (source.ts), publishes in one global order through a sink (sink.ts)
 * with a bounded window of unacknowledged publishes, and commits a topic's position only
 * over entries the sink acknowledged. After any failure it waits for every publish in flight
 * to settle, backs off, and resyncs: the sink says what the destination holds, the source's
 * positions are moved up to that, and publishing resumes after it, republishing the
 * unacknowledged entries it still holds in the same order.
 *
 * Only durable entries are forwarded: an entry a crash could still take from the log (not yet
 * fsynced) could otherwise be forwarded and then replaced by another entry at the same offset
 * after recovery, which the destination would drop as a duplicate.
 */
import { EventEmitter } from 'node:events';
import { WalrusError } from '../shared/errors.js';
import type { ForwardSink } from './sink.js';
import type { ForwardSource } from './source.js';

/** Tuning of a forwarder (defaults in parentheses). */
export interface ForwarderTuning {
  /** Most publishes awaiting acknowledgement (1,024). */
  maxInFlight: number;
  /** Most payload bytes awaiting acknowledgement (16 MiB; one larger entry still goes alone). */
  maxInFlightBytes: number;
  /** First retry delay after a failure, ms (100); doubles per failure in a row. */
  retryInitialMs: number;
  /** Longest retry delay, ms (5,000). */
  retryMaxMs: number;
}

/** Per-topic figures in {@link ForwarderStats}. */
export interface TopicForwardStats {
  /** The committed position: entries before it are in the destination and will not be forwarded again. */
  committed: number;
  /** Entries before this offset were acknowledged by the destination (commits follow). */
  acknowledged: number;
  /** Entries before this offset were read and published (or are being). */
  read: number;
  /** The offset the topic's next append will get. */
  end: number;
  /** Entries not yet committed: `end - committed`. */
  lag: number;
}

/** A failure as {@link ForwarderStats.lastError} reports it. */
export interface ForwardFailure {
  /** The error's message. */
  message: string;
  /** Its code (a WalrusError's, a NATS error's), when it has one. */
  code: string | undefined;
  /** When it happened. */
  at: Date;
}

/** What {@link Forwarder.stats} reports. */
export interface ForwarderStats {
  /** `running`; `retrying` after a failure, until publishing resumes; `closed`; `failed` (see `lastError`). */
  state: 'running' | 'retrying' | 'closed' | 'failed';
  /** Publishes awaiting acknowledgement, and their payload bytes. */
  inFlight: number;
  /** Payload bytes of the publishes in flight. */
  inFlightBytes: number;
  /** Entries acknowledged by the destination since the forwarder started. */
  forwarded: number;
  /** Of those, acknowledged as duplicates (the destination had them already). */
  duplicates: number;
  /** Failures followed by a retry. */
  retries: number;
  /** The last failure, or null. */
  lastError: ForwardFailure | null;
  /** Per forwarded topic. */
  topics: Record<string, TopicForwardStats>;
}

interface TopicState {
  name: string;
  committed: number;
  acknowledged: number;
  read: number;
  /** Entries below this are durable in the log. */
  durable: number;
  committing: Promise<void> | null;
}

interface Pending {
  topic: TopicState;
  offset: number;
  payload: Uint8Array;
  /** Place in the publish order; an acknowledgement covers every lower one (sink.ts). */
  seq: number;
}

interface Waiter {
  targets: Map<TopicState, number>;
  resolve: () => void;
  reject: (err: unknown) => void;
}

const READ_BATCH = 4096;

/**
 * A running forwarder: {@link forwardToJetStream} returns one. Events: `'committed'`
 * (topic, next offset) after each durable commit, `'retry'` ({ error, attempt, delayMs })
 * after a failure, `'failed'` (error) when it stops for good (a misconfiguration; see
 * docs/DISTRIBUTION.md), `'closed'`.
 */
export class Forwarder extends EventEmitter {
  private readonly topics: TopicState[];
  private readonly names: string[];
  private pending: Pending[] = [];
  private pendingHead = 0;
  private nextSeq = 0;
  private ackedThrough = -1;
  private inFlight = 0;
  private inFlightBytes = 0;
  private forwarded = 0;
  private duplicates = 0;
  private retries = 0;
  private lastError: ForwarderStats['lastError'] = null;
  private state: ForwarderStats['state'] = 'retrying';
  private failure: unknown = null;
  private stopping = false;
  private readonly stop = new AbortController();
  private wakeUp: (() => void) | null = null;
  private syncing = false;
  private waiters: Waiter[] = [];
  private readonly done: Promise<void>;

  /** @internal */
  constructor(
    private readonly source: ForwardSource,
    private readonly sink: ForwardSink,
    private readonly logId: string,
    topics: readonly string[],
    private readonly tuning: ForwarderTuning,
  ) {
    super();
    this.names = [...topics];
    this.topics = this.names.map((name) => ({ name, committed: 0, acknowledged: 0, read: 0, durable: 0, committing: null }));
    this.done = this.run();
  }

  /** Counters, lag per topic, the last error. */
  stats(): ForwarderStats {
    const topics: Record<string, TopicForwardStats> = {};
    for (const t of this.topics) {
      const end = this.source.end(t.name);
      topics[t.name] = { committed: t.committed, acknowledged: t.acknowledged, read: t.read, end, lag: Math.max(0, end - t.committed) };
    }
    return { state: this.state, inFlight: this.inFlight, inFlightBytes: this.inFlightBytes, forwarded: this.forwarded, duplicates: this.duplicates, retries: this.retries, lastError: this.lastError, topics };
  }

  /**
   * Resolves once every entry appended to the forwarded topics before the call is in the
   * destination and committed in the log. Rejects if the forwarder closes or fails first.
   */
  caughtUp(): Promise<void> {
    if (this.state === 'closed' || this.state === 'failed') return Promise.reject(this.endError());
    const targets = new Map(this.topics.map((t) => [t, this.source.end(t.name)] as const));
    return new Promise<void>((resolve, reject) => {
      this.waiters.push({ targets, resolve, reject });
      this.checkWaiters();
    });
  }

  /**
   * Stops: no new publish; waits for those in flight (at most the publish timeout), commits
   * what was acknowledged, and releases the sink. What was published but not acknowledged is
   * published again by the next forwarder and dropped by the destination as a duplicate.
   */
  async close(): Promise<void> {
    this.stopping = true;
    this.stop.abort();
    this.kick();
    await this.done;
  }

  private endError(): Error {
    return this.state === 'failed' && this.failure instanceof Error ? this.failure : new WalrusError('ERR_WALRUS_CLOSED', 'the forwarder is closed');
  }

  private async run(): Promise<void> {
    let attempt = 0;
    let opened = false;
    try {
      while (!this.stopping) {
        try {
          if (!opened) {
            await this.sink.open(this.names, this.logId);
            opened = true;
          }
          await this.resync();
          this.state = 'running';
          if (await this.pump()) attempt = 0;
        } catch (err) {
          if (isFatal(err)) throw err;
          this.state = 'retrying';
          // Settled first: the publishes still in flight fail with this session too.
          await this.settle();
          this.failure = null;
          if (this.stopping) break;
          this.retries++;
          attempt++;
          const delayMs = Math.min(this.tuning.retryMaxMs, this.tuning.retryInitialMs * 2 ** Math.min(attempt - 1, 20));
          this.noteError(err);
          this.emit('retry', { error: err, attempt, delayMs });
          await abortableDelay(delayMs, this.stop.signal);
        }
      }
      await this.settle();
      this.state = 'closed';
      for (const w of this.waiters.splice(0)) w.reject(this.endError());
      this.emit('closed');
    } catch (err) {
      this.noteError(err);
      this.failure = err;
      this.state = 'failed';
      await this.settle().catch(() => {});
      for (const w of this.waiters.splice(0)) w.reject(err);
      this.emit('failed', err);
    } finally {
      await this.sink.close().catch(() => {});
    }
  }

  private noteError(err: unknown): void {
    const e = err as { message?: unknown; code?: unknown };
    this.lastError = { message: typeof e?.message === 'string' ? e.message : String(err), code: e?.code === undefined ? undefined : String(e.code), at: new Date() };
  }

  /** Waits for every publish and commit in flight to finish, then commits what was acknowledged. */
  private async settle(): Promise<void> {
    while (this.inFlight > 0) await this.nextWake();
    await this.commitAcknowledged(true);
  }

  /**
   * Starts a session: the sink says what the destination holds; positions move up to it; the
   * unacknowledged entries still held are kept (in order) for republishing, minus those the
   * destination turned out to hold.
   */
  private async resync(): Promise<void> {
    const tails = await this.sink.resync(this.names);
    for (const t of this.topics) {
      const tail = tails.get(t.name)!.lastOffset + 1;
      let pos = await this.source.position(t.name);
      if (tail > pos) {
        const end = this.source.end(t.name);
        if (tail > end) {
          throw new WalrusError('ERR_WALRUS_FORWARD', `the destination holds topic ${JSON.stringify(t.name)} up to offset ${tail - 1}, beyond the log's end (${end}): it was forwarded from another log with the same identity (a copied directory?)`);
        }
        await this.source.commit(t.name, tail);
        pos = tail;
        this.emit('committed', t.name, pos);
      }
      t.committed = pos;
      t.acknowledged = Math.max(t.acknowledged, pos);
    }
    const kept: Pending[] = [];
    for (let i = this.pendingHead; i < this.pending.length; i++) {
      const p = this.pending[i]!;
      if (p.offset >= p.topic.committed) kept.push(p);
    }
    this.pending = kept;
    this.pendingHead = 0;
    this.ackedThrough = this.nextSeq - 1;
    for (const t of this.topics) {
      let read = t.committed;
      for (const p of kept) if (p.topic === t) read = p.offset + 1;
      t.read = read;
    }
    this.checkWaiters();
  }

  /** Publishes until a failure (thrown) or close (returns whether anything was acknowledged). */
  private async pump(): Promise<boolean> {
    const before = this.forwarded;
    for (const p of this.pending) this.issue(p);
    let turn = 0;
    while (!this.stopping) {
      if (this.failure !== null) throw this.failure;
      this.ensureSync();
      let progressed = false;
      for (let k = 0; k < this.topics.length && this.hasRoom(); k++) {
        const t = this.topics[(turn + k) % this.topics.length]!;
        if (t.read >= t.durable) continue;
        const room = Math.min(this.tuning.maxInFlight - this.inFlight, t.durable - t.read, READ_BATCH);
        const batch = await this.source.read(t.name, t.read, room, Math.max(1, this.tuning.maxInFlightBytes - this.inFlightBytes));
        if (this.stopping || this.failure !== null) break;
        if (batch.payloads.length === 0) continue;
        let offset = batch.firstOffset;
        for (const payload of batch.payloads) {
          const p: Pending = { topic: t, offset, payload, seq: 0 };
          this.pending.push(p);
          this.issue(p);
          offset++;
        }
        t.read = offset;
        progressed = true;
      }
      turn++;
      if (!progressed) await this.idle();
    }
    return this.forwarded > before;
  }

  private hasRoom(): boolean {
    return this.inFlight < this.tuning.maxInFlight && (this.inFlight === 0 || this.inFlightBytes < this.tuning.maxInFlightBytes);
  }

  /** Waits for an acknowledgement, a failure, durable entries, an append or close. */
  private async idle(): Promise<void> {
    const ac = new AbortController();
    const onStop = (): void => ac.abort();
    this.stop.signal.addEventListener('abort', onStop, { once: true });
    try {
      const seen = new Map(this.topics.map((t) => [t.name, t.read] as const));
      const waits: Promise<void>[] = [this.nextWake()];
      // Entries appended but not yet durable: the sync under way wakes us. Otherwise wait for an append.
      if (!this.syncing && this.hasRoom()) waits.push(this.source.waitForAppend(this.names, seen, ac.signal));
      await Promise.race(waits);
    } finally {
      ac.abort();
      this.stop.signal.removeEventListener('abort', onStop);
    }
  }

  private nextWake(): Promise<void> {
    return new Promise<void>((resolve) => {
      const prev = this.wakeUp;
      this.wakeUp = () => {
        prev?.();
        resolve();
      };
    });
  }

  private kick(): void {
    const w = this.wakeUp;
    this.wakeUp = null;
    w?.();
  }

  /** Keeps one log sync running while a forwarded topic has entries that are not yet durable. */
  private ensureSync(): void {
    if (this.syncing) return;
    const ends = this.topics.map((t) => this.source.end(t.name));
    if (!this.topics.some((t, i) => ends[i]! > t.durable)) return;
    this.syncing = true;
    this.source.sync().then(
      () => {
        this.syncing = false;
        this.topics.forEach((t, i) => (t.durable = Math.max(t.durable, ends[i]!)));
        this.kick();
      },
      (err: unknown) => {
        this.syncing = false;
        this.failure ??= fatal(err);
        this.kick();
      },
    );
  }

  private issue(p: Pending): void {
    p.seq = this.nextSeq++;
    this.inFlight++;
    this.inFlightBytes += p.payload.byteLength;
    this.sink.publish(p.topic.name, p.offset, p.payload).then(
      (duplicate) => {
        this.inFlight--;
        this.inFlightBytes -= p.payload.byteLength;
        this.forwarded++;
        if (duplicate) this.duplicates++;
        if (p.seq > this.ackedThrough) this.ackedThrough = p.seq;
        this.advance();
        this.kick();
      },
      (err: unknown) => {
        this.inFlight--;
        this.inFlightBytes -= p.payload.byteLength;
        this.failure ??= err;
        this.kick();
      },
    );
  }

  /** Drops acknowledged entries from the front of the order and starts their commits. */
  private advance(): void {
    while (this.pendingHead < this.pending.length && this.pending[this.pendingHead]!.seq <= this.ackedThrough) {
      const p = this.pending[this.pendingHead++]!;
      p.topic.acknowledged = p.offset + 1;
    }
    if (this.pendingHead > 1024 && this.pendingHead * 2 > this.pending.length) {
      this.pending = this.pending.slice(this.pendingHead);
      this.pendingHead = 0;
    }
    void this.commitAcknowledged(false);
  }

  /** One commit in flight per topic, each covering everything acknowledged when it starts. */
  private async commitAcknowledged(wait: boolean): Promise<void> {
    for (const t of this.topics) {
      if (t.committing === null && t.acknowledged > t.committed) {
        const target = t.acknowledged;
        t.committing = this.source.commit(t.name, target).then(
          () => {
            t.committing = null;
            t.committed = Math.max(t.committed, target);
            this.emit('committed', t.name, target);
            this.checkWaiters();
            if (t.acknowledged > t.committed && !this.stopping) void this.commitAcknowledged(false);
          },
          (err: unknown) => {
            t.committing = null;
            this.failure ??= fatal(err);
            this.kick();
          },
        );
      }
    }
    if (!wait) return;
    for (const t of this.topics) {
      while (t.committing !== null) await t.committing;
      if (t.acknowledged > t.committed && this.failure === null) {
        await this.commitAcknowledged(true);
        return;
      }
    }
    if (this.failure !== null && isFatal(this.failure)) throw this.failure;
  }

  private checkWaiters(): void {
    if (this.waiters.length === 0) return;
    this.waiters = this.waiters.filter((w) => {
      for (const [t, target] of w.targets) if (t.committed < target) return true;
      w.resolve();
      return false;
    });
  }
}

/** Errors retrying cannot fix: the forwarder stops with them. */
function isFatal(err: unknown): boolean {
  return (err as { fatal?: unknown })?.fatal === true || (err instanceof WalrusError && (err.code === 'ERR_WALRUS_FORWARD' || err.code === 'ERR_WALRUS_CLOSED' || err.code === 'ERR_WALRUS_IO' || err.code === 'ERR_WALRUS_CORRUPT'));
}

/** Failures of the log itself (reads, syncs, commits) are fatal. */
function fatal(err: unknown): unknown {
  if (err instanceof Error && !isFatal(err)) Object.defineProperty(err, 'fatal', { value: true });
  return err;
}

function abortableDelay(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise<void>((resolve) => {
    if (signal.aborted) return resolve();
    const done = (): void => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}
