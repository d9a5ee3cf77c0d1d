/**
 * Where the forwarder reads: a {@link ForwardSource}. The forwarder never checkpoints on
 * reading; it reads ahead of the committed position without moving it, and commits a topic's
 * position only over entries its sink acknowledged (forwarder.ts). So correctness does not
 * depend on the log's ReadConsistency.
 *
 * The implementation reads through a named consumer of the log (consumerSource, default name
 * 'jetstream'), whose committed positions are the forwarder's.
 */
import type { Walrus } from '../main/walrus.js';
import { WalrusError } from '../shared/errors.js';

/** Entries read ahead of the committed position: offsets `firstOffset`, `firstOffset + 1`, ... */
export interface SourceBatch {
  /** Offset of `payloads[0]`; may exceed the offset asked for when retention removed entries. */
  firstOffset: number;
  /** The entries' bytes, in offset order (views valid until the next read of the topic). */
  payloads: Uint8Array[];
}

/** What the forwarder reads from: one committed position per topic, reads that never move it. */
export interface ForwardSource {
  /** The committed position of `topic`: the offset of the first entry not yet forwarded. */
  position(topic: string): Promise<number>;
  /** The offset the next append to `topic` will get. */
  end(topic: string): number;
  /** Up to `maxEntries` entries / `maxBytes` (at least one entry when any) from `from`, without moving the position. */
  read(topic: string, from: number, maxEntries: number, maxBytes: number): Promise<SourceBatch>;
  /** Moves the committed position of `topic` forward to `next`, durably, before resolving. */
  commit(topic: string, next: number): Promise<void>;
  /** Resolves once every entry appended before the call is on stable storage. */
  sync(): Promise<void>;
  /** Resolves when an append to one of `topics` makes `end` exceed `seen`, or when `signal` aborts. */
  waitForAppend(topics: readonly string[], seen: ReadonlyMap<string, number>, signal: AbortSignal): Promise<void>;
  /** The directory of the log (null when it has none: the memory backend). */
  readonly dir: string | null;
}

/**
 * The parts of a Walrus this module uses that are not public API: the namespace directory,
 * a topic's next offset and its wake-up list (what subscribe waits on), and the watch that
 * wakes that list for producer threads' appends. Kept in this one
 * place; forwarder tests fail loudly if they move.
 */
interface WalrusInternals {
  nsDir: string | null;
  topicFor(topic: string): WatchedTopic;
  /** With producer threads: wakes the topic's wake-up list for their appends too (they do not pass through this thread). */
  watchProducers(t: WatchedTopic): void;
}

type WatchedTopic = { next: number; watchers: (() => void)[] | null };

function internals(wal: Walrus): WalrusInternals {
  const w = wal as unknown as Partial<WalrusInternals>;
  if (typeof w.topicFor !== 'function' || typeof w.watchProducers !== 'function' || !('nsDir' in w)) {
    throw new WalrusError('ERR_WALRUS_FORWARD', 'this Walrus instance does not have the internals the forwarder reads (walrus-ts/jetstream and walrus-ts must come from the same package)');
  }
  return w as WalrusInternals;
}

/**
 * Named consumer `consumer` of the log as a source: its committed position in each topic is
 * what was forwarded, and commit() is Consumer.commit(topic, next), durable under every
 * ReadConsistency. The forwarder never takes entries from the application's own readers
 * (the default consumer or other named ones), and consumed segments stay until it has
 * forwarded them (deletion waits for the slowest consumer of a topic).
 */
export function consumerSource(wal: Walrus, consumer: string): ForwardSource {
  const inner = internals(wal);
  const c = wal.consumer(consumer);
  return {
    dir: inner.nsDir,
    position(topic) {
      return c.committed(topic);
    },
    end(topic) {
      return inner.topicFor(topic).next;
    },
    async read(topic, from, maxEntries, maxBytes) {
      const payloads: Uint8Array[] = [];
      let firstOffset = from;
      let bytes = 0;
      for await (const e of wal.iterate(topic, from)) {
        if (payloads.length === 0) firstOffset = e.offset;
        else if (bytes + e.data.byteLength > maxBytes) break;
        payloads.push(e.data);
        bytes += e.data.byteLength;
        if (payloads.length >= maxEntries) break;
      }
      return { firstOffset, payloads };
    },
    commit(topic, next) {
      return c.commit(topic, next);
    },
    sync() {
      return wal.sync();
    },
    waitForAppend(topics, seen, signal) {
      // One wake-up on every topic's list (the lists subscribe waits on); whichever fires
      // first, or the abort, removes it from all of them, so nothing piles up across waits.
      const ts = topics.map((t) => inner.topicFor(t));
      return new Promise<void>((resolve) => {
        if (signal.aborted || ts.some((t, i) => t.next > (seen.get(topics[i]!) ?? 0))) {
          resolve();
          return;
        }
        let done = false;
        const wake = (): void => {
          if (done) return;
          done = true;
          for (const t of ts) if (t.watchers !== null) t.watchers = t.watchers.filter((w) => w !== wake);
          signal.removeEventListener('abort', wake);
          resolve();
        };
        for (const t of ts) (t.watchers ??= []).push(wake);
        for (const t of ts) inner.watchProducers(t);
        signal.addEventListener('abort', wake, { once: true });
      });
    },
  };
}
