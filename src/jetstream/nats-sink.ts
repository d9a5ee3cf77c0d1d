/**
 * The JetStream sink (docs/DISTRIBUTION.md, "Design"). Two server-side checks make it safe:
 *
 * - Every message carries `Nats-Msg-Id: <log id>/<topic, URI-encoded>/<offset>`: a message
 *   whose id the stream saw within its duplicate window is acknowledged as a duplicate and
 *   not stored again.
 * - Every message of a session carries `Nats-Expected-Last-Sequence`: the stream's last
 *   sequence at the session's start plus the messages published before it in the session.
 *   The stream stores a message only when its last sequence is exactly that, so it stores a
 *   message only right after the one published before it, and never out of order, whatever
 *   the connection lost, delayed or delivered late. The stream must therefore receive only
 *   this forwarder's messages.
 *
 * resync() asks the stream for its last sequence and, per topic, its last message on the
 * topic's subject: that message's id names the last offset of the topic the stream holds.
 */
import type { NatsConnection, NodeConnectionOptions } from '@nats-io/transport-node';
import type { JetStreamClient, JetStreamManager, StreamConfig } from '@nats-io/jetstream';
import { WalrusError } from '../shared/errors.js';
import type { ForwardSink, SinkTail } from './sink.js';

/** How the JetStream sink reaches the server and the stream. */
export interface JetStreamSinkOptions {
  /** A connection to use (not closed by the sink); else `servers` is connected to. */
  connection?: NatsConnection | undefined;
  /** Server URLs to connect to when no `connection` is given. */
  servers?: string | string[] | undefined;
  /** More options for that connection (reconnecting forever is the default). */
  connectOptions?: Partial<NodeConnectionOptions> | undefined;
  /** The stream's name. */
  stream: string;
  /** Topic to subject. */
  subject: (topic: string) => string;
  /** The log identity (identity.ts). */
  logId: string;
  /** Configuration of the stream when the sink creates it (it is never changed when it exists). */
  streamConfig?: Partial<StreamConfig> | undefined;
  /** How long a publish waits for its acknowledgement, ms. */
  publishTimeoutMs: number;
}

const MSG_ID_HEADER = 'Nats-Msg-Id';

/** The deduplication id of entry `offset` of `topic` in the log `logId`. */
export function messageId(logId: string, topic: string, offset: number): string {
  return `${logId}/${encodeURIComponent(topic)}/${offset}`;
}

async function loadNats(): Promise<{ transport: typeof import('@nats-io/transport-node'); jetstream: typeof import('@nats-io/jetstream') }> {
  try {
    const [transport, jetstream] = await Promise.all([import('@nats-io/transport-node'), import('@nats-io/jetstream')]);
    return { transport, jetstream };
  } catch (err) {
    throw new WalrusError('ERR_WALRUS_FORWARD', 'walrus-ts/jetstream needs the packages @nats-io/transport-node and @nats-io/jetstream (3.x): npm install @nats-io/transport-node @nats-io/jetstream', { cause: err });
  }
}

/** A ForwardSink publishing to one JetStream stream. */
export class JetStreamSink implements ForwardSink {
  private nc: NatsConnection | null = null;
  private js: JetStreamClient | null = null;
  private jsm: JetStreamManager | null = null;
  /** Expected last sequence of the next publish of this session; null: no session. */
  private next: number | null = null;
  private closed = false;

  constructor(private readonly opts: JetStreamSinkOptions) {}

  /** Sessions started so far: a late rejection of an old session's publish must not end a newer one. */
  private session = 0;
  private reconnecting = false;

  /** Whether the sink's connection is up (false before it is made and while it reconnects). */
  get connected(): boolean {
    return this.nc !== null && !this.nc.isClosed() && !this.reconnecting;
  }

  async open(topics: readonly string[]): Promise<void> {
    if (this.closed) return;
    const { transport, jetstream } = await loadNats();
    if (this.nc === null) {
      if (this.opts.connection !== undefined) {
        this.nc = this.opts.connection;
      } else {
        this.nc = await transport.connect({ servers: this.opts.servers, maxReconnectAttempts: -1, reconnectTimeWait: 250, name: 'walrus-ts forwarder', ...this.opts.connectOptions });
        if (this.closed) {
          await this.nc.close();
          return;
        }
      }
      void this.watchStatus(this.nc);
      this.js = jetstream.jetstream(this.nc, { timeout: this.opts.publishTimeoutMs });
    }
    this.jsm ??= await jetstream.jetstreamManager(this.nc, { timeout: this.opts.publishTimeoutMs });
    const jsm = this.jsm;
    const { stream } = this.opts;
    const subjects = [...new Set(topics.map((t) => this.opts.subject(t)))];
    try {
      await jsm.streams.info(stream);
    } catch (err) {
      if ((err as { code?: unknown }).code !== jetstream.JetStreamApiCodes.StreamNotFound) throw err;
      await jsm.streams.add({ ...this.opts.streamConfig, name: stream, subjects: [...new Set([...(this.opts.streamConfig?.subjects ?? []), ...subjects])] });
    }
    for (const s of subjects) {
      let owner: string;
      try {
        owner = await jsm.streams.find(s);
      } catch (err) {
        throw new WalrusError('ERR_WALRUS_FORWARD', `no JetStream stream takes subject ${JSON.stringify(s)} (stream ${JSON.stringify(stream)} exists without it): add it to the stream's subjects`, { cause: err });
      }
      if (owner !== stream) throw new WalrusError('ERR_WALRUS_FORWARD', `subject ${JSON.stringify(s)} belongs to stream ${JSON.stringify(owner)}, not ${JSON.stringify(stream)}`);
    }
  }

  private async watchStatus(nc: NatsConnection): Promise<void> {
    for await (const s of nc.status()) {
      if (s.type === 'disconnect' || s.type === 'reconnecting') this.reconnecting = true;
      else if (s.type === 'reconnect') this.reconnecting = false;
    }
  }

  async resync(topics: readonly string[]): Promise<Map<string, SinkTail>> {
    this.next = null;
    const jsm = this.jsm!;
    const { stream, logId } = this.opts;
    const info = await jsm.streams.info(stream);
    const tails = new Map<string, SinkTail>();
    for (const topic of topics) {
      const subject = this.opts.subject(topic);
      const last = await jsm.streams.getMessage(stream, { last_by_subj: subject });
      if (last === null) {
        tails.set(topic, { lastOffset: -1 });
        continue;
      }
      const id = last.header?.get(MSG_ID_HEADER) ?? '';
      const prefix = `${logId}/${encodeURIComponent(topic)}/`;
      const offset = id.startsWith(prefix) ? Number(id.slice(prefix.length)) : NaN;
      if (!Number.isSafeInteger(offset) || offset < 0) {
        throw new WalrusError(
          'ERR_WALRUS_FORWARD',
          `the last message on subject ${JSON.stringify(subject)} of stream ${JSON.stringify(stream)} (sequence ${last.seq}, ${MSG_ID_HEADER} ${JSON.stringify(id)}) was not forwarded from topic ${JSON.stringify(topic)} of this log (${logId}): each topic needs a subject only this log's forwarder publishes to`,
        );
      }
      tails.set(topic, { lastOffset: offset });
    }
    this.next = info.state.last_seq;
    this.session++;
    return tails;
  }

  publish(topic: string, offset: number, payload: Uint8Array): Promise<boolean> {
    if (this.next === null || this.js === null) return Promise.reject(new WalrusError('ERR_WALRUS_FORWARD', 'publish outside a session (after a failure, before resync)'));
    const expect = this.next++;
    const session = this.session;
    return this.js
      .publish(this.opts.subject(topic), payload, { msgID: messageId(this.opts.logId, topic, offset), expect: { lastSequence: expect }, timeout: this.opts.publishTimeoutMs })
      .then(
        (ack) => ack.duplicate,
        (err: unknown) => {
          // The session is over: what follows it was published expecting this one stored.
          if (session === this.session) this.next = null;
          throw err;
        },
      );
  }

  async close(): Promise<void> {
    this.closed = true;
    this.next = null;
    const nc = this.nc;
    this.nc = null;
    if (nc !== null && nc !== this.opts.connection) await nc.close();
  }
}
