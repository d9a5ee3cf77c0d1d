/**
 * Public types of reads, shared by the Walrus class, typed topics and streams. A leaf
 * module (types only): typed.ts and streams.ts take them from here, not from walrus.ts.
 */

/** An entry as reads return it. */
export interface Entry {
  /** The topic it belongs to. */
  topic: string;
  /** Its offset in the topic: 0, 1, 2, ... in append order. */
  offset: number;
  /** Its payload (strings were stored as UTF-8). */
  data: Buffer;
}

/** Options of {@link Walrus.subscribe}. */
export interface SubscribeOptions {
  /** Aborting it makes the iterator reject with an AbortError. */
  signal?: AbortSignal;
}
