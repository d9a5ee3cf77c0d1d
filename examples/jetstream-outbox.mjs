// An outbox: orders are appended to the local log at once (that never waits for the
// network), and a forwarder ships them to a NATS JetStream stream, each exactly once and in
// order, retrying while the server is away. Run a server first: nats-server -js
// (apt-get install nats-server). docs/DISTRIBUTION.md says what is guaranteed and why.
//
//   node examples/jetstream-outbox.mjs [dir] [nats url] [orders]
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Walrus } from 'walrus-ts';
import { forwardToJetStream } from 'walrus-ts/jetstream';
import { connect } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';

const dir = process.argv[2] ?? mkdtempSync(join(tmpdir(), 'walrus-outbox-'));
const servers = process.argv[3] ?? 'nats://127.0.0.1:4222';
const ORDERS = Number(process.argv[4] ?? 10_000);

const wal = await Walrus.open({ dir });
const forwarder = await forwardToJetStream(wal, {
  servers,
  topics: ['orders', 'refunds'],
  subject: (topic) => `shop.${topic}`,
  stream: 'SHOP',
});
forwarder.on('retry', ({ error, delayMs }) => console.error(`forwarding paused (${error.message}); retrying in ${delayMs} ms`));
try {
  for (let i = 0; i < ORDERS; i++) {
    wal.append('orders', JSON.stringify({ id: i, total: 10 + (i % 90) }));
    if (i % 10 === 9) wal.append('refunds', JSON.stringify({ order: i - 5 }));
  }
  await forwarder.caughtUp(); // everything appended so far is in the stream and committed
  const { topics, forwarded, retries } = forwarder.stats();
  console.log(`forwarded ${forwarded} entries (${retries} retries): orders up to ${topics.orders.committed}, refunds up to ${topics.refunds.committed}, lag ${topics.orders.lag + topics.refunds.lag}`);
} finally {
  await forwarder.close();
  await wal.close();
}

const nc = await connect({ servers });
const info = await (await jetstreamManager(nc)).streams.info('SHOP');
console.log(`stream SHOP holds ${info.state.messages} messages`);
await nc.close();
