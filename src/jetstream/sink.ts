/**
 * The destination side of forwarding: a {@link ForwardSink}. forwarder.ts drives it and owns
 * everything else (reading, windows, retries, checkpoints, stats), so a sink for another
 * engine (Kafka: docs/DISTRIBUTION.md, "Other sinks") implements only these four calls.
 */

/** What the destination already holds of one topic, as {@link ForwardSink.resync} reports it. */
export interface SinkTail {
  /** Offset of the last entry of the topic the destination holds, or -1 for none. */
  lastOffset: number;
}

/**
 * A destination the forwarder publishes to. The forwarder's contract with it:
 *
 * - `resync(topics)` is called before the first publish and after every failure, with no
 *   publish in flight. It returns, per topic, the last offset the destination holds (it is
 *   the forwarder's proof of what was delivered before a crash), and prepares a new
 *   publishing session: the forwarder then publishes, in order, the entries after those.
 * - `publish` is called in the forwarder's global order (each topic's entries in offset
 *   order, topics interleaved), many at a time (up to the in-flight bound). Its promise
 *   resolves only once the destination stored the entry durably (or had it already); it
 *   rejects when that is not known. The sink must never store an entry unless every entry
 *   published before it in the session is stored (the destination's order is then the
 *   forwarder's order, and after any failure the stored entries are a prefix of what was
 *   published). After one rejection the session is over: later publishes of the session
 *   reject too, until the next `resync`.
 * - `close` releases what the sink opened (not a connection it was given).
 */
export interface ForwardSink {
  /**
   * Prepares the destination (connects, creates what is missing); called before anything
   * else, and again after a failure until it succeeds. `logId` identifies the log for
   * deduplication ids (identity.ts).
   */
  open(topics: readonly string[], logId: string): Promise<void>;
  /** What the destination holds of each topic; starts a new publishing session. */
  resync(topics: readonly string[]): Promise<Map<string, SinkTail>>;
  /** Publishes one entry; resolves once it is stored (true: it was there already, a duplicate). */
  publish(topic: string, offset: number, payload: Uint8Array): Promise<boolean>;
  /** Releases the sink's own resources. */
  close(): Promise<void>;
}
