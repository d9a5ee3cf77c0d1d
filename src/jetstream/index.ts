/**
 * `walrus-ts/jetstream`: forwards topics of a log to a NATS JetStream stream, exactly once
 * and in order (docs/DISTRIBUTION.md). Needs the optional peer dependencies
 * `@nats-io/transport-node` and `@nats-io/jetstream` (3.x).
 *
 * ```ts
 * import { Walrus } from 'walrus-ts';
 * import { forwardToJetStream } from 'walrus-ts/jetstream';
 *
 * const wal = await Walrus.open({ dir: './wal_files' });
 * const forwarder = await forwardToJetStream(wal, {
 *   servers: 'nats://127.0.0.1:4222',
 *   topics: ['orders'],
 *   subject: (topic) => `walrus.${topic}`,
 *   stream: 'ORDERS',
 * });
 * wal.append('orders', 'one');
 * await forwarder.caughtUp();
 * await forwarder.close();
 * await wal.close();
 * ```
 *
 * @packageDocumentation
 */
import type { NatsConnection, NodeConnectionOptions } from '@nats-io/transport-node';
import type { StreamConfig } from '@nats-io/jetstream';
import type { Walrus } from '../main/walrus.js';
import { encodeTopic } from '../shared/format/topic.js';
import { invalidArgType, invalidArgValue, outOfRange } from '../shared/errors.js';
import { Forwarder, type ForwarderTuning } from './forwarder.js';
import { logIdentity } from './identity.js';
import { JetStreamSink } from './nats-sink.js';
import type { ForwardSink } from './sink.js';
import { consumerSource } from './source.js';
import { checkConsumerName } from '../main/consumer.js';

export { Forwarder } from './forwarder.js';
export type { ForwardFailure, ForwarderStats, ForwarderTuning, TopicForwardStats } from './forwarder.js';
export type { ForwardSink, SinkTail } from './sink.js';
export { messageId } from './nats-sink.js';

/** Options of {@link forwardToJetStream}. */
export interface JetStreamForwardOptions extends Partial<ForwarderTuning> {
  /** Server URL(s) to connect to; the forwarder owns that connection and closes it. */
  servers?: string | string[];
  /** An existing connection to use instead (the forwarder never closes it). */
  connection?: NatsConnection;
  /** More options for the connection made from `servers` (by default it reconnects forever). */
  connectOptions?: Partial<NodeConnectionOptions>;
  /** The topics to forward (at least one). */
  topics: readonly string[];
  /** Maps a topic to its subject: a valid subject without wildcards, different for every topic. */
  subject: (topic: string) => string;
  /** The stream's name. It is created when missing (file storage, the topics' subjects, and `streamConfig`). */
  stream: string;
  /** Configuration for creating the stream (replicas, `duplicate_window`, limits...); ignored when it exists. */
  streamConfig?: Partial<StreamConfig>;
  /**
   * The named consumer of the log the forwarder reads through (default 'jetstream'): its
   * committed position in a topic is what was forwarded. Use one name per forwarder of a log.
   */
  consumer?: string;
  /** The log identity in message ids; default: the one stored in the log's `walrus.id` (created at the first forward). */
  logId?: string;
  /** How long a publish waits for its acknowledgement before it counts as failed, ms (5,000). */
  publishTimeoutMs?: number;
}

/** The named consumer a forwarder reads through unless told otherwise. */
export const DEFAULT_CONSUMER = 'jetstream';

const SUBJECT = /^[^\s*>.]+(\.[^\s*>.]+)*$/;

function positiveInt(name: string, v: unknown, dflt: number, max = Number.MAX_SAFE_INTEGER): number {
  if (v === undefined) return dflt;
  if (typeof v !== 'number') throw invalidArgType(name, 'of type number', v);
  if (!Number.isSafeInteger(v) || v < 1 || v > max) throw outOfRange(name, `an integer from 1 to ${max}`, v);
  return v;
}

/**
 * Starts forwarding every entry of `options.topics` to the JetStream stream
 * `options.stream`, each topic in offset order, each entry exactly once
 * (docs/DISTRIBUTION.md says what that rests on). Resolves at once with the running
 * {@link Forwarder}; it connects, creates the stream if needed and retries with backoff in
 * the background (see its `stats()`), while appends to the log go on as usual.
 */
export async function forwardToJetStream(wal: Walrus, options: JetStreamForwardOptions): Promise<Forwarder> {
  if (typeof options !== 'object' || options === null) throw invalidArgType('options', 'of type object', options);
  const { servers, connection, topics, subject, stream, consumer } = options;
  if (connection === undefined && servers === undefined) throw invalidArgValue('options', options, 'must have servers or connection');
  if (servers !== undefined && typeof servers !== 'string' && !(Array.isArray(servers) && servers.every((s) => typeof s === 'string'))) {
    throw invalidArgType('options.servers', 'a string or an array of strings', servers);
  }
  if (!Array.isArray(topics) || topics.length === 0) throw invalidArgValue('options.topics', topics, 'must be a non-empty array of topics');
  if (typeof subject !== 'function') throw invalidArgType('options.subject', 'of type function', subject);
  if (typeof stream !== 'string' || stream === '' || /[\s.*>/\\]/.test(stream)) throw invalidArgValue('options.stream', stream, 'must be a stream name (no spaces, ".", "*", ">", "/" or "\\")');
  if (consumer !== undefined) checkConsumerName(consumer, 'options.consumer');
  const names = [...new Set(topics)];
  const subjects = new Map<string, string>();
  for (const t of names) {
    encodeTopic(t);
    const s = subject(t);
    if (typeof s !== 'string' || !SUBJECT.test(s)) throw invalidArgValue('options.subject', s, `returned an invalid subject for topic ${JSON.stringify(t)} (tokens separated by ".", no spaces or wildcards)`);
    const other = subjects.get(s);
    if (other !== undefined) throw invalidArgValue('options.subject', s, `returned the same subject for topics ${JSON.stringify(other)} and ${JSON.stringify(t)}`);
    subjects.set(s, t);
  }
  const tuning: ForwarderTuning = {
    maxInFlight: positiveInt('options.maxInFlight', options.maxInFlight, 1024, 1 << 20),
    maxInFlightBytes: positiveInt('options.maxInFlightBytes', options.maxInFlightBytes, 16 << 20),
    retryInitialMs: positiveInt('options.retryInitialMs', options.retryInitialMs, 100, 600_000),
    retryMaxMs: positiveInt('options.retryMaxMs', options.retryMaxMs, 5000, 3_600_000),
  };
  const publishTimeoutMs = positiveInt('options.publishTimeoutMs', options.publishTimeoutMs, 5000, 600_000);
  if (options.logId !== undefined && (typeof options.logId !== 'string' || !/^[A-Za-z0-9_-]{1,64}$/.test(options.logId))) {
    throw invalidArgValue('options.logId', options.logId, 'must be 1 to 64 letters, digits, "_" or "-"');
  }
  const source = consumerSource(wal, consumer ?? DEFAULT_CONSUMER);
  const logId = options.logId ?? logIdentity(source.dir);
  const byTopic = new Map([...subjects].map(([s, t]) => [t, s] as const));
  const sink = new JetStreamSink({
    connection,
    servers,
    connectOptions: options.connectOptions,
    stream,
    subject: (t) => byTopic.get(t)!,
    logId,
    streamConfig: { storage: 'file' as StreamConfig['storage'], ...options.streamConfig },
    publishTimeoutMs,
  });
  return new Forwarder(source, sink, logId, names, tuning);
}

/**
 * Forwards `topics` through any {@link ForwardSink} (docs/DISTRIBUTION.md, "Other sinks"),
 * with the same reading, ordering, retry and checkpoint rules as {@link forwardToJetStream}.
 */
export function forwardToSink(wal: Walrus, sink: ForwardSink, topics: readonly string[], tuning: Partial<ForwarderTuning> = {}, consumer = DEFAULT_CONSUMER): Forwarder {
  checkConsumerName(consumer, 'consumer');
  if (!Array.isArray(topics) || topics.length === 0) throw invalidArgValue('topics', topics, 'must be a non-empty array of topics');
  for (const t of topics) encodeTopic(t);
  if (typeof sink !== 'object' || sink === null) throw invalidArgType('sink', 'a ForwardSink', sink);
  const source = consumerSource(wal, consumer);
  return new Forwarder(source, sink, logIdentity(source.dir), [...new Set(topics)], {
    maxInFlight: positiveInt('tuning.maxInFlight', tuning.maxInFlight, 1024, 1 << 20),
    maxInFlightBytes: positiveInt('tuning.maxInFlightBytes', tuning.maxInFlightBytes, 16 << 20),
    retryInitialMs: positiveInt('tuning.retryInitialMs', tuning.retryInitialMs, 100, 600_000),
    retryMaxMs: positiveInt('tuning.retryMaxMs', tuning.retryMaxMs, 5000, 3_600_000),
  });
}
