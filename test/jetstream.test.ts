/**
 * walrus-ts/jetstream against real nats-server processes (never a mock): kill -9 of the
 * forwarding process at random points, the server stopped and restarted under load, and a
 * node of a three-node R3 cluster killed and restarted. Each ends with the stream holding
 * every entry of every topic exactly once and in order, and nothing a crash took from the log.
 *
 * Needs nats-server (apt-get install nats-server). Without it these tests are skipped with a
 * message, except under CI=true, where that fails the run. WALRUS_JETSTREAM_CYCLES sets the
 * number of kill cycles (default 50).
 */
import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, test } from 'vitest';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager, type JsMsg } from '@nats-io/jetstream';
import { Walrus, FsyncSchedule } from '../dist/index.js';
import { forwardToJetStream, messageId, type Forwarder } from '../dist/jetstream/index.js';
import { tempDir } from './helpers.js';
import { HOW_TO_RUN, natsServerPath, startCluster, startServer } from './fixtures/nats-server.mjs';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const BIN = natsServerPath();

/** Numbers in [0, 1) from a seed (xorshift32), so a failing run can be repeated. */
function rng(seed: number): () => number {
  let x = seed || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}
const IN_CI = process.env.CI !== undefined && process.env.CI !== '' && process.env.CI !== 'false';
const CYCLES = Number(process.env.WALRUS_JETSTREAM_CYCLES ?? 50);
const CHILD = new URL('./fixtures/jetstream-child.mjs', import.meta.url).pathname;

if (BIN === null && !IN_CI) console.warn(`test/jetstream.test.ts: ${HOW_TO_RUN}`);

test.runIf(BIN === null && IN_CI)('nats-server is installed (CI must run the JetStream tests)', () => {
  throw new Error(HOW_TO_RUN);
});

/** Every message of `stream`, in stream order, as [subject, msg id, payload]. */
async function streamContents(nc: NatsConnection, stream: string): Promise<{ subject: string; id: string; data: Buffer }[]> {
  const jsm = await jetstreamManager(nc);
  const total = (await jsm.streams.info(stream)).state.messages;
  const out: { subject: string; id: string; data: Buffer }[] = [];
  if (total === 0) return out;
  const consumer = await jetstream(nc).consumers.get(stream);
  const messages = await consumer.consume();
  for await (const m of messages as AsyncIterable<JsMsg>) {
    out.push({ subject: m.subject, id: m.headers?.get('Nats-Msg-Id') ?? '', data: Buffer.from(m.data) });
    if (out.length === total) break;
  }
  await messages.close();
  return out;
}

/**
 * Checks that the stream holds, for each topic, offsets 0 .. ends[topic] - 1 exactly once and in
 * order, each with its log's message id and payload `check(topic, offset, payload)` accepts.
 */
function expectExactlyOnce(contents: { subject: string; id: string; data: Buffer }[], logId: string, subject: (t: string) => string, ends: Record<string, number>, check?: (t: string, offset: number, data: Buffer) => void): void {
  const next: Record<string, number> = Object.fromEntries(Object.keys(ends).map((t) => [t, 0]));
  const bySubject = new Map(Object.keys(ends).map((t) => [subject(t), t]));
  for (const m of contents) {
    const t = bySubject.get(m.subject);
    expect(t, `subject ${m.subject}`).toBeDefined();
    const offset = next[t!]!;
    expect(m.id, `topic ${t} at ${offset}`).toBe(messageId(logId, t!, offset));
    check?.(t!, offset, m.data);
    next[t!] = offset + 1;
  }
  expect(next).toEqual(ends);
}

function logIdOf(dir: string): string {
  return readFileSync(join(dir, 'walrus.id'), 'latin1').trim();
}

/** Resolves on the forwarder's next 'retry' event (a failure it saw). */
function nextRetry(fwd: Forwarder): Promise<unknown> {
  return new Promise((resolve) => fwd.once('retry', resolve));
}

describe.skipIf(BIN === null)('forwarding to JetStream (real nats-server)', () => {
  test('examples/jetstream-outbox.mjs forwards every order and refund once', async () => {
    const { server, cleanup } = await startServer();
    try {
      const { stdout } = await promisify(execFile)(process.execPath, [new URL('../examples/jetstream-outbox.mjs', import.meta.url).pathname, tempDir(), server.url, '3000'], { timeout: 60_000 });
      expect(stdout).toMatch(/forwarded 3300 entries \(\d+ retries\): orders up to 3000, refunds up to 300, lag 0/);
      expect(stdout).toMatch(/stream SHOP holds 3300 messages/);
    } finally {
      await cleanup();
    }
  });

  test('forwards every entry once, in order, with the log identity in each message id; options are checked', async () => {
    const { server, cleanup } = await startServer();
    const dir = tempDir();
    const wal = await Walrus.open({ dir, shards: 2 });
    const nc = await connect({ servers: server.url });
    try {
      await expect(forwardToJetStream(wal, { servers: server.url, topics: [], subject: (t) => t, stream: 'S' })).rejects.toThrow(/options.topics/);
      await expect(forwardToJetStream(wal, { servers: server.url, topics: ['a', 'b'], subject: () => 'same', stream: 'S' })).rejects.toThrow(/same subject/);
      await expect(forwardToJetStream(wal, { servers: server.url, topics: ['a'], subject: () => 'x.*', stream: 'S' })).rejects.toThrow(/invalid subject/);
      await expect(forwardToJetStream(wal, { topics: ['a'], subject: (t) => t, stream: 'S' } as never)).rejects.toThrow(/servers or connection/);
      await expect(forwardToJetStream(wal, { servers: server.url, topics: ['a'], subject: (t) => t, stream: 'S', consumer: '' })).rejects.toMatchObject({ code: 'ERR_WALRUS_INVALID_CONSUMER' });
      expect(existsSync(join(dir, 'walrus.id'))).toBe(false);

      const rand = rng(7);
      const payloads: Record<string, Buffer[]> = { 'orders/eu': [], 'orders us': [] };
      for (let i = 0; i < 3000; i++) {
        const t = i % 3 === 0 ? 'orders us' : 'orders/eu';
        const b = Buffer.alloc(Math.floor(rand() * 300));
        for (let k = 0; k < b.length; k++) b[k] = Math.floor(rand() * 256);
        payloads[t]!.push(b);
        wal.append(t, b);
      }
      const subject = (t: string): string => (t === 'orders us' ? 'w.us' : 'w.eu');
      const fwd = await forwardToJetStream(wal, { connection: nc, topics: ['orders/eu', 'orders us'], subject, stream: 'ORDERS', maxInFlight: 64 });
      await fwd.caughtUp();
      const logId = logIdOf(dir);
      expect(logId).toMatch(/^[0-9a-f]{32}$/);
      const st = fwd.stats();
      expect(st.topics['orders/eu']).toMatchObject({ committed: 2000, lag: 0 });
      expect(st.topics['orders us']).toMatchObject({ committed: 1000, lag: 0 });
      expect(st).toMatchObject({ forwarded: 3000, duplicates: 0, inFlight: 0, state: 'running' });
      // The forwarder's named consumer committed exactly what was forwarded; the default
      // consumer was not touched (the application can read the same topics).
      const fc = wal.consumer('jetstream');
      expect(await fc.committed('orders/eu')).toBe(2000);
      expect(await fc.committed('orders us')).toBe(1000);
      expect((await wal.fetch('orders/eu', { checkpoint: false })).firstOffset).toBe(0);
      wal.append('orders us', 'late');
      await fwd.caughtUp();
      await fwd.close();
      expect(fwd.stats().state).toBe('closed');
      expect(nc.isClosed()).toBe(false); // a given connection is not the forwarder's to close
      const contents = await streamContents(nc, 'ORDERS');
      payloads['orders us']!.push(Buffer.from('late'));
      expectExactlyOnce(contents, logId, subject, { 'orders/eu': 2000, 'orders us': 1001 }, (t, o, data) => expect(data.equals(payloads[t]![o]!)).toBe(true));
      // Restarting forwards nothing again, and the identity is the same.
      const again = await forwardToJetStream(wal, { connection: nc, topics: ['orders/eu', 'orders us'], subject, stream: 'ORDERS' });
      await again.caughtUp();
      await again.close();
      expect(again.stats().forwarded).toBe(0);
      expect(logIdOf(dir)).toBe(logId);
      expect((await jetstreamManager(nc).then((m) => m.streams.info('ORDERS'))).state.messages).toBe(3001);
    } finally {
      await nc.close();
      await wal.close();
      await cleanup();
    }
  });

  test(`kill -9 of the forwarding process at random points, ${CYCLES} cycles: every entry exactly once, in order, none the log lost`, async () => {
    const { server, cleanup } = await startServer();
    const dir = tempDir();
    const topics = ['t0', 't1', 't2'];
    const stream = 'KILL';
    const rand = rng(Number(process.env.WALRUS_JETSTREAM_SEED ?? 17));
    const starts: Record<string, number>[] = [];
    const nc = await connect({ servers: server.url });
    const t0 = Date.now();
    try {
      for (let cycle = 0; cycle < CYCLES; cycle++) {
        const consistency = cycle % 2 === 0 ? 'strict' : 8;
        const child = spawn(process.execPath, [CHILD, JSON.stringify({ dir, servers: server.url, stream, topics, cycle, consistency })], { stdio: ['ignore', 'pipe', 'pipe'] });
        let stderr = '';
        child.stderr.on('data', (d) => (stderr += d));
        const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
        let buf = '';
        await new Promise<void>((resolve, reject) => {
          child.stdout.on('data', (d) => {
            buf += d;
            const m = /^start (.*)$/m.exec(buf);
            if (m && starts.length === cycle) {
              starts.push(JSON.parse(m[1]!));
              // Anywhere from opening the stream to well into forwarding.
              setTimeout(() => { child.kill('SIGKILL'); resolve(); }, Math.floor(rand() * 600));
            }
          });
          child.once('exit', () => (starts.length > cycle ? resolve() : reject(new Error(`child exited before starting: ${stderr}`))));
        });
        await exited;
        expect(stderr, `cycle ${cycle} stderr`).not.toMatch(/Error/);
      }
      // A last forwarder, in this process, completes the job.
      const wal = await Walrus.open({ dir, shards: 2, fsync: FsyncSchedule.milliseconds(20) });
      const ends: Record<string, number> = {};
      const final: Record<string, number> = {};
      for (const t of topics) {
        final[t] = wal.append(t, `${CYCLES}:probe`);
        ends[t] = final[t]! + 1;
      }
      starts.push(final, ends);
      const fwd = await forwardToJetStream(wal, { connection: nc, topics, subject: (t) => `kill.${t}`, stream });
      await fwd.caughtUp();
      await fwd.close();
      await wal.close();
      const contents = await streamContents(nc, stream);
      const logId = logIdOf(dir);
      expectExactlyOnce(contents, logId, (t) => `kill.${t}`, ends, (t, o, data) => {
        const [c, what] = data.toString().split(':');
        const cycle = Number(c);
        // Appended by that cycle's process, and not taken from the log by its crash: the
        // next process started after it.
        expect(starts[cycle]![t]!, `${t}@${o} from cycle ${cycle}`).toBeLessThanOrEqual(o);
        expect(o, `${t}@${o} from cycle ${cycle} (lost in that crash, yet forwarded)`).toBeLessThan(starts[cycle + 1]![t]!);
        expect(what === 'probe' ? starts[cycle]![t] : Number(what)).toBe(o);
      });
      console.log(`jetstream kill cycles: ${CYCLES} in ${((Date.now() - t0) / 1000).toFixed(1)} s, ${contents.length} messages, ends ${JSON.stringify(ends)}`);
    } finally {
      await nc.close();
      await cleanup();
    }
  }, 170_000);

  test('the server stopped and restarted (store kept) while forwarding: nothing lost or duplicated, resumes by itself', async () => {
    const { server, cleanup } = await startServer();
    const dir = tempDir();
    const wal = await Walrus.open({ dir, shards: 2 });
    const topics = ['a', 'b'];
    const subject = (t: string): string => `rs.${t}`;
    let stopProducer = false;
    const ends: Record<string, number> = { a: 0, b: 0 };
    const producer = (async () => {
      while (!stopProducer) {
        for (const t of topics) ends[t] = wal.batchAppend(t, Array.from({ length: 5 }, (_, k) => `${t}${ends[t]! + k}`)) + 5;
        await new Promise((r) => setTimeout(r, 1));
      }
    })();
    const fwd = await forwardToJetStream(wal, { servers: server.url, topics, subject, stream: 'RS', publishTimeoutMs: 1000, retryInitialMs: 50, retryMaxMs: 500, connectOptions: { reconnectTimeWait: 100 } });
    try {
      await new Promise<void>((resolve) => fwd.on('committed', function on(this: Forwarder) { if (fwd.stats().forwarded > 2000) { fwd.off('committed', on); resolve(); } }));
      const retried = nextRetry(fwd);
      await server.stop('SIGTERM');
      await retried;
      const during = { ...ends };
      expect(fwd.stats().state).toBe('retrying');
      // Appends go on while the server is down (the log is the buffer).
      await new Promise<void>((resolve) => { const check = (): void => { if (ends.a > during.a + 500) resolve(); else setTimeout(check, 10); }; check(); });
      await server.start();
      stopProducer = true;
      await producer;
      await fwd.caughtUp();
      const st = fwd.stats();
      expect(st.retries).toBeGreaterThan(0);
      expect(st.lastError).not.toBeNull();
      await fwd.close();
      const nc = await connect({ servers: server.url });
      try {
        expectExactlyOnce(await streamContents(nc, 'RS'), logIdOf(dir), subject, ends, (t, o, data) => expect(data.toString()).toBe(`${t}${o}`));
      } finally {
        await nc.close();
      }
    } finally {
      stopProducer = true;
      await producer;
      await fwd.close();
      await wal.close();
      await cleanup();
    }
  }, 120_000);

  test('a three-node cluster with an R3 stream: one node killed during forwarding, then restarted: nothing lost or duplicated', async () => {
    const { servers, cleanup } = await startCluster();
    const dir = tempDir();
    const wal = await Walrus.open({ dir, shards: 2 });
    const topics = ['x', 'y', 'z'];
    const subject = (t: string): string => `r3.${t}`;
    let stopProducer = false;
    const ends: Record<string, number> = { x: 0, y: 0, z: 0 };
    const producer = (async () => {
      while (!stopProducer) {
        for (const t of topics) ends[t] = wal.batchAppend(t, Array.from({ length: 3 }, (_, k) => `${t}${ends[t]! + k}`)) + 3;
        await new Promise((r) => setTimeout(r, 1));
      }
    })();
    const urls = servers.map((s) => s.url);
    const fwd = await forwardToJetStream(wal, { servers: urls, topics, subject, stream: 'R3', streamConfig: { num_replicas: 3 }, publishTimeoutMs: 2000, retryInitialMs: 50, retryMaxMs: 500, connectOptions: { reconnectTimeWait: 100 } });
    const nc = await connect({ servers: urls });
    try {
      await new Promise<void>((resolve) => fwd.on('committed', function on() { if (fwd.stats().forwarded > 3000) { fwd.off('committed', on); resolve(); } }));
      const jsm = await jetstreamManager(nc);
      const leader = (await jsm.streams.info('R3')).cluster?.leader;
      const victim = servers.find((s) => s.name === leader) ?? servers[0]!;
      const before = fwd.stats().forwarded;
      await victim.stop('SIGKILL');
      // Forwarding goes on with two of three nodes (a new leader is elected).
      await new Promise<void>((resolve) => fwd.on('committed', function on() { if (fwd.stats().forwarded > before + 2000) { fwd.off('committed', on); resolve(); } }));
      await victim.start();
      stopProducer = true;
      await producer;
      await fwd.caughtUp();
      await fwd.close();
      expectExactlyOnce(await streamContents(nc, 'R3'), logIdOf(dir), subject, ends, (t, o, data) => expect(data.toString()).toBe(`${t}${o}`));
      console.log(`jetstream R3: killed ${victim.name} (the stream leader: ${victim.name === leader}), ${fwd.stats().retries} retries, ends ${JSON.stringify(ends)}`);
    } finally {
      stopProducer = true;
      await producer;
      await fwd.close();
      await nc.close();
      await wal.close();
      await cleanup();
    }
  }, 150_000);
});
