// Two independent readers of one topic: a job runner that processes orders and commits after
// its own work, and an audit writer that records every order in batches. Each is a named
// consumer with its own durable position: neither takes entries from the other, a restart
// resumes each where it committed, and consumed segments go only when both are past them.
// Usage: node examples/two-consumers.mjs [dir]
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ReadConsistency, Walrus } from 'walrus-ts';

const dir = process.argv[2] ?? mkdtempSync(join(tmpdir(), 'walrus-two-consumers-'));
const ORDERS = 1000;

let wal = await Walrus.open({ dir });
for (let i = 0; i < ORDERS; i++) wal.append('orders', JSON.stringify({ id: i, total: (i % 50) + 1 }));
await wal.sync();

// The runner handles one order at a time and commits each after handling it.
const runner = wal.consumer('runner', { consistency: ReadConsistency.atLeastOnce(1) });
let handled = 0;
while (handled < 600) {
  const e = await runner.readNext('orders');
  if (e === null) break;
  handled++; // ... charge the card, ship the parcel ...
  await runner.commit('orders', e.offset + 1);
}
// The audit writer reads in bulk, at its own pace.
const audit = wal.consumer('audit');
let audited = 0;
let revenue = 0;
while (audited < 300) {
  const b = await audit.fetch('orders', { maxEntries: 256 });
  if (b.length === 0) break;
  for (const data of b.payloads()) revenue += JSON.parse(data.toString()).total;
  audited += b.length;
}
console.log(`before restart: runner handled ${handled}, audit recorded ${audited}`);
for (const c of await wal.consumers()) for (const t of c.topics) console.log(`  ${c.name}: committed ${t.committed}, lag ${t.lag}`);
await wal.close();

// After a restart each resumes at its own committed position.
wal = await Walrus.open({ dir });
const runner2 = wal.consumer('runner', { consistency: ReadConsistency.atLeastOnce(1) });
console.log(`after restart: runner resumes at ${await runner2.position('orders')}, audit at ${await wal.consumer('audit').position('orders')}`);
for (let e = await runner2.readNext('orders'); e !== null; e = await runner2.readNext('orders')) {
  handled++;
  await runner2.commit('orders', e.offset + 1);
}
const audit2 = wal.consumer('audit');
for (let b = await audit2.fetch('orders'); b.length > 0; b = await audit2.fetch('orders')) {
  for (const data of b.payloads()) revenue += JSON.parse(data.toString()).total;
  audited += b.length;
}
console.log(`done: runner handled ${handled} orders, audit recorded ${audited}, revenue ${revenue}`);
await wal.close();
