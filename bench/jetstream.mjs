// Forwarding to NATS JetStream (walrus-ts/jetstream), against a real nats-server started
// here on a loopback port with a temporary store (docs/BENCHMARKS.md, "JetStream forwarding"):
//
// 1. throughput: N messages of P bytes forwarded from a log (appended first, then one
//    forwarder until caughtUp()) against a plain JetStream async publisher sending the same
//    messages (same subjects, Nats-Msg-Id set, the same window of unacknowledged publishes)
//    to another stream of the same server, in the same run; the ratio forwarder / plain
//    (target >= 0.8). Each is run `ROUNDS` times, alternating, median reported.
// 2. lag: a producer appends at a fixed rate for a few seconds while the forwarder runs; the
//    lag (entries appended but not yet committed as forwarded) sampled every 50 ms.
//
// Skipped with a message when nats-server is not installed. Env: WALRUS_BENCH_JS_N (50,000),
// WALRUS_BENCH_JS_BYTES (128), WALRUS_BENCH_JS_RATE (entries/s, 5,000), WALRUS_BENCH_JS_SECONDS (5).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Walrus } from '../dist/index.js';
import { HOW_TO_RUN, natsServerPath, startServer } from '../test/fixtures/nats-server.mjs';

if (natsServerPath() === null) {
  console.log(`bench/jetstream.mjs skipped: ${HOW_TO_RUN.replace(' and are skipped; under CI=true they fail instead', '')}`);
  process.exit(0);
}
const { connect } = await import('@nats-io/transport-node');
const { jetstream, jetstreamManager } = await import('@nats-io/jetstream');
const { forwardToJetStream } = await import('../dist/jetstream/index.js');

const N = Number(process.env.WALRUS_BENCH_JS_N ?? 50_000);
const BYTES = Number(process.env.WALRUS_BENCH_JS_BYTES ?? 128);
const RATE = Number(process.env.WALRUS_BENCH_JS_RATE ?? 5_000);
const SECONDS = Number(process.env.WALRUS_BENCH_JS_SECONDS ?? 5);
const ROUNDS = 3;
const WINDOW = 1024;
const TOPICS = ['a', 'b', 'c', 'd'];

const median = (xs) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];
const payload = (i) => {
  const b = Buffer.alloc(BYTES, 0x61);
  b.writeUInt32LE(i, 0);
  return b;
};

const { server, cleanup } = await startServer();
const root = mkdtempSync(join(tmpdir(), 'walrus-bench-js-'));
const nc = await connect({ servers: server.url });
const js = jetstream(nc);
const jsm = await jetstreamManager(nc);

async function plainRound(round) {
  const stream = `PLAIN${round}`;
  await jsm.streams.add({ name: stream, subjects: TOPICS.map((t) => `plain${round}.${t}`), storage: 'file' });
  const t0 = performance.now();
  const inflight = new Set();
  for (let i = 0; i < N; i++) {
    const t = TOPICS[i % TOPICS.length];
    const p = js.publish(`plain${round}.${t}`, payload(i), { msgID: `plain/${t}/${i}` });
    inflight.add(p);
    p.then(() => inflight.delete(p));
    if (inflight.size >= WINDOW) await Promise.race(inflight);
  }
  await Promise.all(inflight);
  const ms = performance.now() - t0;
  await jsm.streams.delete(stream);
  return N / (ms / 1000);
}

async function forwardRound(round) {
  const dir = join(root, `fwd${round}`);
  const wal = await Walrus.open({ dir });
  for (let i = 0; i < N; i++) wal.append(TOPICS[i % TOPICS.length], payload(i));
  await wal.sync();
  const stream = `FWD${round}`;
  const t0 = performance.now();
  const fwd = await forwardToJetStream(wal, { connection: nc, topics: TOPICS, subject: (t) => `fwd${round}.${t}`, stream, maxInFlight: WINDOW });
  await fwd.caughtUp();
  const ms = performance.now() - t0;
  await fwd.close();
  await wal.close();
  await jsm.streams.delete(stream);
  return N / (ms / 1000);
}

async function lagRun() {
  const dir = join(root, 'lag');
  const wal = await Walrus.open({ dir });
  const fwd = await forwardToJetStream(wal, { connection: nc, topics: TOPICS, subject: (t) => `lag.${t}`, stream: 'LAG', maxInFlight: WINDOW });
  const samples = [];
  const sampler = setInterval(() => {
    const st = fwd.stats();
    samples.push(Object.values(st.topics).reduce((s, t) => s + t.lag, 0));
  }, 50);
  const t0 = performance.now();
  let appended = 0;
  const total = RATE * SECONDS;
  while (appended < total) {
    const due = Math.min(total, Math.floor(((performance.now() - t0) / 1000) * RATE));
    for (; appended < due; appended++) wal.append(TOPICS[appended % TOPICS.length], payload(appended));
    await new Promise((r) => setTimeout(r, 1));
  }
  const producedMs = performance.now() - t0;
  await fwd.caughtUp();
  const drainMs = performance.now() - t0 - producedMs;
  clearInterval(sampler);
  await fwd.close();
  await wal.close();
  return { samples, producedMs, drainMs, total };
}

try {
  console.log(`JetStream forwarding: nats-server on loopback, ${N} messages of ${BYTES} B over ${TOPICS.length} topics, window ${WINDOW}, ${ROUNDS} rounds`);
  const plain = [];
  const fwd = [];
  for (let r = 0; r < ROUNDS; r++) {
    plain.push(await plainRound(r));
    fwd.push(await forwardRound(r));
  }
  const p = median(plain);
  const f = median(fwd);
  console.log(`plain async publisher: ${Math.round(p)} msg/s (rounds ${plain.map(Math.round).join(', ')})`);
  console.log(`walrus forwarder:      ${Math.round(f)} msg/s (rounds ${fwd.map(Math.round).join(', ')})`);
  console.log(`ratio forwarder / plain: ${(f / p).toFixed(2)} (target >= 0.8)`);
  const lag = await lagRun();
  const s = [...lag.samples].sort((x, y) => x - y);
  const pct = (q) => s[Math.min(s.length - 1, Math.floor(q * s.length))];
  console.log(`lag at ${RATE} appends/s for ${SECONDS} s (${lag.total} entries): median ${pct(0.5)}, p99 ${pct(0.99)}, max ${s[s.length - 1]} entries behind; caught up ${Math.round(lag.drainMs)} ms after the last append`);
} finally {
  await nc.close();
  await cleanup();
  rmSync(root, { recursive: true, force: true });
}
