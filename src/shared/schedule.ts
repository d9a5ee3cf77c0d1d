/** Fsync schedules and read consistency modes: the public values and their wire form. */
import { invalidArgType, outOfRange } from './errors.js';

/** When appended data is made durable (see docs/DURABILITY.md). */
export type FsyncSchedule =
  | {
      /** Which schedule. */
      readonly kind: 'milliseconds';
      /** The longest delay, in ms, between an append and the fsync that covers it. */
      readonly ms: number;
    }
  | {
      /** Which schedule. */
      readonly kind: 'syncEach';
    }
  | {
      /** Which schedule. */
      readonly kind: 'noFsync';
    };

/**
 * The fsync schedules, for the `fsync` option of {@link Walrus.open}. Whatever the schedule,
 * `sync()`, `appendAndSync()` and `close()` make everything appended before them durable.
 */
export const FsyncSchedule = Object.freeze({
  /** Data is fsynced at most about `ms` milliseconds after it was appended. */
  milliseconds(ms: number): FsyncSchedule {
    if (typeof ms !== 'number') throw invalidArgType('ms', 'of type number', ms);
    if (!Number.isInteger(ms) || ms < 1 || ms > 3_600_000) outOfRangeThrow('ms', 'an integer >= 1 and <= 3600000', ms);
    return Object.freeze({ kind: 'milliseconds', ms });
  },
  /** Each shard fsyncs after every write it issues, with no delay. */
  SyncEach: Object.freeze({ kind: 'syncEach' }) as FsyncSchedule,
  /** The library never fsyncs on its own; sync() and close() still do. */
  NoFsync: Object.freeze({ kind: 'noFsync' }) as FsyncSchedule,
});

/** How cursor advances are persisted (see docs/DURABILITY.md). */
export type ReadConsistency =
  | {
      /** Which mode. */
      readonly kind: 'strictlyAtOnce';
    }
  | {
      /** Which mode. */
      readonly kind: 'atLeastOnce';
      /** Committed entries per topic between two cursor records at most. */
      readonly persistEvery: number;
    };

/**
 * The cursor persistence modes, for the `consistency` option of {@link Walrus.open}: what
 * a checkpointing `readNext` / `batchRead` / `subscribe` promises across crashes
 * (docs/DURABILITY.md, "Read cursors").
 */
export const ReadConsistency = Object.freeze({
  /**
   * A checkpointing read resolves only after its cursor advance is durable: no entry it
   * returned is ever returned again. The read in flight at a crash is at-most-once (its
   * entries are consumed before the caller has them). To lose nothing: peek with
   * `readNext(topic, false)`, process, then checkpoint with `readNext(topic)`; a crash then
   * repeats at most the entry in flight.
   */
  StrictlyAtOnce: Object.freeze({ kind: 'strictlyAtOnce' }) as ReadConsistency,
  /**
   * At-least-once: the entries a checkpointing read returns are committed when the next
   * checkpointing read of the topic (or `commit(topic)`) comes, and a cursor record is
   * written once the committed cursor is `persistEvery` entries past the last one. After a
   * crash no entry is skipped and at most `persistEvery - 1` entries plus those of the last
   * read are delivered again per topic (after a power loss, counted from the last fsync).
   * `close()` persists the committed cursor.
   */
  atLeastOnce(persistEvery: number): ReadConsistency {
    if (typeof persistEvery !== 'number') throw invalidArgType('persistEvery', 'of type number', persistEvery);
    if (!Number.isInteger(persistEvery) || persistEvery < 1 || persistEvery > 2 ** 31) {
      outOfRangeThrow('persistEvery', 'an integer >= 1 and <= 2147483648', persistEvery);
    }
    return Object.freeze({ kind: 'atLeastOnce', persistEvery });
  },
});

function outOfRangeThrow(name: string, range: string, v: unknown): never {
  throw outOfRange(name, range, v);
}

export function isFsyncSchedule(v: unknown): v is FsyncSchedule {
  if (typeof v !== 'object' || v === null) return false;
  const s = v as { kind?: unknown; ms?: unknown };
  if (s.kind === 'syncEach' || s.kind === 'noFsync') return true;
  return s.kind === 'milliseconds' && typeof s.ms === 'number' && Number.isInteger(s.ms) && s.ms >= 1;
}

export function isReadConsistency(v: unknown): v is ReadConsistency {
  if (typeof v !== 'object' || v === null) return false;
  const c = v as { kind?: unknown; persistEvery?: unknown };
  if (c.kind === 'strictlyAtOnce') return true;
  return c.kind === 'atLeastOnce' && typeof c.persistEvery === 'number' && Number.isInteger(c.persistEvery) && c.persistEvery >= 1;
}
