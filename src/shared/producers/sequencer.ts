/**
 * Offsets of a topic appended from several threads. Each thread frames its records into a
 * ring of its own (one per shard), with no lock and no offsets yet; then, holding the
 * topic's lock for a few stores, it reads the topic's counter, writes the offsets into the
 * records' headers, publishes them (its ring's Head), advances the counter, and unlocks.
 * A record of a topic is therefore published only after every earlier offset of the topic
 * is published, in whatever ring: the shard worker merges the rings and always finds the
 * next offset of a topic published somewhere (batch.ts), and offsets stay dense.
 *
 * The lock is never held across a blocking call (ring space is claimed and the payloads are
 * copied before it is taken), and a thread that dies holding it cannot wedge the topic:
 *
 * - Before taking the lock a thread sets its ledger state to Holding with a new epoch, and
 *   the lock word names it and that epoch. Before publishing it moves Holding to Publishing
 *   with a compareExchange, after writing into its ledger what the publication is (shard,
 *   Head before and after, first offset, count).
 * - A thread that finds the lock held by the same holder and epoch for BREAK_AFTER_MS looks
 *   at that holder's ledger. Holding: it fences it (Holding to Fenced, compareExchange), so
 *   the holder can no longer publish; the counter never moved; it takes the lock. Publishing:
 *   the holder's records are complete in its ring; the breaker advances the counter past
 *   them (the same compareExchange the holder would do) and takes the lock, and the shard
 *   worker, which has every ring, publishes them (helpPublish) when it finds the topic's
 *   next offset missing. Anything else: the holder finished and died before unlocking.
 * - A fenced holder that was only slow finds out at its compareExchange to Publishing and
 *   sequences the same records again (new offsets): its append still succeeds.
 * - Counter and Head only move by compareExchange from the value the ledger names, so a
 *   slow holder and its breaker doing the same step cannot move either one twice.
 */
import { WalrusError } from '../errors.js';
import { DirEntry, DirWord, DIR_ENTRY_WORDS, LEDGER_ABANDONED, LOCK_CONTENDED, LOCK_EPOCH_BITS, LedgerPhase, LedgerWord } from '../format/layout.js';
import type { TopicDirectory } from './directory.js';
import { hooks } from './seams.js';

/** The test suite's stall hook (seams.ts); null in the package. */
const stallAt = hooks === null ? null : hooks.at.bind(hooks);

/** How long a lock may stay with one holder and epoch before a waiter looks at the holder. */
export const BREAK_AFTER_MS = 200;
/** Spins on a held lock before the thread sleeps on it. */
const SPINS = 64;
const EPOCH_MASK = (1 << LOCK_EPOCH_BITS) - 1;

/** What a publication does with the holder's ring, from the appender (client/appender.ts). */
export interface Publication {
  /** The topic's directory entry and shard. */
  entry: number;
  shard: number;
  /** Entries (offsets) the publication takes. */
  count: number;
  /** The ring's Head before and after the publication (modulo 2^32). */
  headBefore: number;
  headAfter: number;
  /** Writes offsets first, first + 1, ... into the records' headers. */
  patch(first: number): void;
  /** Publishes: compareExchange of the ring's Head from headBefore to headAfter, wake the worker. */
  publish(): void;
  /** Throws if the shard no longer takes appends (closing, closed, failed). */
  checkOpen(): void;
}

export class Sequencer {
  private epoch = 0;
  private readonly entries: Int32Array;
  private readonly ledgers: Int32Array;
  private readonly stateAt: number;

  constructor(
    private readonly dir: TopicDirectory,
    /** This thread's ledger index (0: the opening thread). */
    readonly producer: number,
    /** Rings shard `shard`'s doorbell (after a breaker left records for its worker to publish). */
    private readonly wakeShard: (shard: number) => void,
    /**
     * Where this holder's epochs start: a slot taken over from a thread that died holding a
     * lock leaves that lock naming the slot and an epoch, which this holder's own epochs
     * should not repeat soon (the holder's token makes a good start).
     */
    firstEpoch = 0,
  ) {
    this.epoch = firstEpoch & EPOCH_MASK;
    this.entries = dir.entries;
    this.ledgers = dir.ledgers;
    this.stateAt = dir.ledgerWord(producer, LedgerWord.State);
  }

  /** Sequences and publishes `p`; returns its first offset. */
  sequence(p: Publication): number {
    for (;;) {
      const epoch = (this.epoch = (this.epoch + 1) & EPOCH_MASK);
      const holding = (epoch << 2) | LedgerPhase.Holding;
      // Holding before the State check: a closing worker stores State, then waits for ledgers
      // that are not Idle (Dekker: one of the two sees the other's store).
      Atomics.store(this.ledgers, this.stateAt, holding);
      try {
        p.checkOpen();
      } catch (err) {
        Atomics.store(this.ledgers, this.stateAt, epoch << 2);
        throw err;
      }
      const lockAt = p.entry * DIR_ENTRY_WORDS + DirEntry.Lock;
      const mine = ((this.producer + 1) << LOCK_EPOCH_BITS) | epoch;
      const contended = this.lock(lockAt, mine);
      if (stallAt !== null) stallAt('holding');
      const first = this.dir.next(p.entry);
      p.patch(first);
      const L = this.ledgers;
      const base = this.dir.ledgerWord(this.producer, 0);
      L[base + LedgerWord.Entry] = p.entry;
      L[base + LedgerWord.Shard] = p.shard;
      L[base + LedgerWord.HeadBefore] = p.headBefore;
      L[base + LedgerWord.HeadAfter] = p.headAfter;
      L[base + LedgerWord.Count] = p.count;
      this.dir.ledgerFloats[(base + LedgerWord.First) >>> 1] = first;
      const publishing = (epoch << 2) | LedgerPhase.Publishing;
      if (Atomics.compareExchange(L, this.stateAt, holding, publishing) !== holding) {
        // Fenced by a waiter that thought this thread dead: nothing was published and the
        // lock is theirs. Sequence the same records again.
        continue;
      }
      if (stallAt !== null) stallAt('publishing');
      p.publish();
      advanceCounter(this.dir, p.entry, first, p.count);
      Atomics.compareExchange(L, this.stateAt, publishing, epoch << 2);
      this.unlock(lockAt, mine, contended);
      return first;
    }
  }

  /** Takes the lock word at `lockAt` as `mine`; returns whether it was taken with waiters noted. */
  private lock(lockAt: number, mine: number): boolean {
    const E = this.entries;
    let v = Atomics.compareExchange(E, lockAt, 0, mine);
    if (v === 0) return false;
    let spins = 0;
    let seen = v;
    let seenAt = Date.now();
    for (;;) {
      if (v === 0) {
        v = Atomics.compareExchange(E, lockAt, 0, mine | LOCK_CONTENDED);
        if (v === 0) return true;
        continue;
      }
      if ((v & ~LOCK_CONTENDED) !== (seen & ~LOCK_CONTENDED)) {
        seen = v;
        seenAt = Date.now();
      } else if (Date.now() - seenAt >= BREAK_AFTER_MS && this.breakLock(lockAt, v, mine)) {
        return true;
      }
      if (spins < SPINS) {
        spins++;
      } else {
        // Note the wait in the lock word, then sleep until the holder unlocks (it notifies
        // when the bit is set), or until it is time to look at the holder.
        if ((v & LOCK_CONTENDED) === 0 && Atomics.compareExchange(E, lockAt, v, v | LOCK_CONTENDED) !== v) {
          v = Atomics.load(E, lockAt);
          continue;
        }
        Atomics.wait(E, lockAt, v | LOCK_CONTENDED, BREAK_AFTER_MS);
      }
      v = Atomics.load(E, lockAt);
    }
  }

  private unlock(lockAt: number, mine: number, contended: boolean): void {
    const E = this.entries;
    if (!contended && Atomics.compareExchange(E, lockAt, mine, 0) === mine) return;
    // Waiters noted themselves (or a breaker took the lock: then it is not ours to free).
    if (Atomics.compareExchange(E, lockAt, mine | LOCK_CONTENDED, 0) === (mine | LOCK_CONTENDED)) Atomics.notify(E, lockAt);
  }

  /**
   * The lock word has said `held` for BREAK_AFTER_MS: takes it if its holder is dead or
   * stalled (see the file comment). Returns whether the lock is now `mine`.
   */
  private breakLock(lockAt: number, held: number, mine: number): boolean {
    const holder = ((held & ~LOCK_CONTENDED) >>> LOCK_EPOCH_BITS) - 1;
    const epoch = held & EPOCH_MASK;
    const L = this.ledgers;
    const stateAt = this.dir.ledgerWord(holder, LedgerWord.State);
    const base = this.dir.ledgerWord(holder, 0);
    const state = Atomics.load(L, stateAt);
    if (state === ((epoch << 2) | LedgerPhase.Holding)) {
      if (Atomics.compareExchange(L, stateAt, state, (epoch << 2) | LedgerPhase.Fenced) !== state) return false;
    } else if (state === ((epoch << 2) | LedgerPhase.Publishing)) {
      // Complete in the holder's ring: the counter moves past it here, its worker publishes it.
      // The fields are read between two reads of the state: a holder that moved on meanwhile
      // writes the next publication's fields (its state changes first), and those must not
      // be taken for this one's.
      const first = this.dir.ledgerFloats[(base + LedgerWord.First) >>> 1]!;
      const entry = L[base + LedgerWord.Entry]!;
      const count = L[base + LedgerWord.Count]!;
      const shard = L[base + LedgerWord.Shard]!;
      if (Atomics.load(L, stateAt) !== state) return false;
      advanceCounter(this.dir, entry, first, count);
      this.wakeShard(shard);
    }
    // Otherwise the holder finished (Idle, or already on a later epoch) without unlocking.
    return Atomics.compareExchange(this.entries, lockAt, held, mine | LOCK_CONTENDED) === held;
  }
}

/** Moves `entry`'s counter from `first` to `first + count`, unless someone already did. */
function advanceCounter(dir: TopicDirectory, entry: number, first: number, count: number): void {
  Atomics.compareExchange(dir.counters, entry, BigInt(first), BigInt(first + count));
}

/**
 * For the shard worker: publications left in Publishing for shard `shard` (their holder
 * died or stalls between the phase change and its Head store). Calls `help(producer,
 * headBefore, headAfter)` for each; the worker does the Head compareExchange itself.
 */
export function forEachPublishing(dir: TopicDirectory, shard: number, help: (producer: number, headBefore: number, headAfter: number) => void): void {
  const L = dir.ledgers;
  for (let k = 0; k < dir.maxProducers; k++) {
    const base = dir.ledgerWord(k, 0);
    if (Atomics.load(L, base + LedgerWord.Taken) === 0 && k !== 0) continue;
    const state = Atomics.load(L, base + LedgerWord.State);
    if ((state & 3) !== LedgerPhase.Publishing || L[base + LedgerWord.Shard] !== shard) continue;
    const before = L[base + LedgerWord.HeadBefore]! >>> 0;
    const after = L[base + LedgerWord.HeadAfter]! >>> 0;
    // Still that publication (see breakLock): else these may be the next one's, not yet sequenced.
    if (Atomics.load(L, base + LedgerWord.State) !== state) continue;
    help(k, before, after);
  }
}

/** Whether any producer is inside a publication (Holding or Publishing): a closing worker waits for them. */
export function anyInFlight(dir: TopicDirectory): boolean {
  const L = dir.ledgers;
  for (let k = 0; k < dir.maxProducers; k++) {
    const phase = Atomics.load(L, dir.ledgerWord(k, LedgerWord.State)) & 3;
    if (phase === LedgerPhase.Holding || phase === LedgerPhase.Publishing) return true;
  }
  return false;
}

/**
 * A producer slot for a new thread (1 and up; 0 is the opening thread's) and the token that
 * marks it as this holder's (LedgerWord.Taken). A free slot, or one whose thread ended
 * without closing it (LEDGER_ABANDONED) outside any publication: a slot abandoned inside one
 * keeps its ledger for the lock breakers and the shard worker, which may still need it.
 */
export function takeLedger(dir: TopicDirectory): { slot: number; token: number } {
  const L = dir.ledgers;
  const token = (Atomics.add(dir.header, DirWord.LedgerSerial, 1) & 0x7fffffff) + 1;
  for (let k = 1; k < dir.maxProducers; k++) {
    const takenAt = dir.ledgerWord(k, LedgerWord.Taken);
    const v = Atomics.load(L, takenAt);
    if (v === LEDGER_ABANDONED) {
      const phase = Atomics.load(L, dir.ledgerWord(k, LedgerWord.State)) & 3;
      if (phase === LedgerPhase.Holding || phase === LedgerPhase.Publishing) continue;
    } else if (v !== 0) {
      continue;
    }
    if (Atomics.compareExchange(L, takenAt, v, token) === v) {
      Atomics.store(L, dir.ledgerWord(k, LedgerWord.State), 0);
      return { slot: k, token };
    }
  }
  throw new WalrusError('ERR_WALRUS_TOO_MANY_PRODUCERS', `the producer handle allows ${dir.maxProducers - 1} attached producers at once; close one first (with the native addon, the slot of a thread that ended without close() is reused; without it, that slot stays taken)`);
}

/** Frees slot `producer` if `token` still holds it. */
export function releaseLedger(dir: TopicDirectory, producer: number, token: number): void {
  Atomics.compareExchange(dir.ledgers, dir.ledgerWord(producer, LedgerWord.Taken), token, 0);
}
