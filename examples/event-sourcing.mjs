// Event sourcing: account events are appended as typed records (plain objects with Dates
// and bigint amounts, stored as msgpack with shared structures), and the state is rebuilt
// from scratch by replaying the topic with `iterate` after a reopen, as a service does at
// start-up. `iterate` does not move the topic's cursor, so replays can run any number of
// times.
//
//   node examples/event-sourcing.mjs [dir]
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Walrus } from 'walrus-ts';

const dir = process.argv[2] ?? mkdtempSync(join(tmpdir(), 'walrus-events-'));

let wal = await Walrus.open({ dir });
const events = wal.typed('accounts');
const t0 = Date.UTC(2026, 0, 1);
events.append({ type: 'opened', account: 'alice', at: new Date(t0) });
events.append({ type: 'opened', account: 'bob', at: new Date(t0 + 1000) });
for (let i = 0; i < 100; i++) {
  events.append({ type: 'deposited', account: i % 2 ? 'alice' : 'bob', amount: 10n * BigInt(i), at: new Date(t0 + 2000 + i) });
}
events.batchAppend([
  { type: 'withdrew', account: 'alice', amount: 500n, at: new Date(t0 + 5000) },
  { type: 'deposited', account: 'bob', amount: 500n, at: new Date(t0 + 5000) },
]);
events.append({ type: 'closed', account: 'bob', at: new Date(t0 + 9000) });
await wal.close();

// Start-up of the service: rebuild the state from the log.
wal = await Walrus.open({ dir });
const state = new Map();
let replayed = 0;
for await (const { value: e } of wal.typed('accounts').iterate()) {
  replayed++;
  switch (e.type) {
    case 'opened':
      state.set(e.account, { balance: 0n, open: true, since: e.at });
      break;
    case 'deposited':
      state.get(e.account).balance += e.amount;
      break;
    case 'withdrew':
      state.get(e.account).balance -= e.amount;
      break;
    case 'closed':
      state.get(e.account).open = false;
      break;
    default:
      throw new Error(`unknown event ${e.type}`);
  }
}
let bytes = 0;
for await (const e of wal.iterate('accounts')) bytes += e.data.length;
await wal.close();

console.log(`replayed ${replayed} events (${(bytes / replayed).toFixed(1)} bytes each on average)`);
for (const [account, s] of state) {
  console.log(`${account}: balance ${s.balance}, ${s.open ? 'open' : 'closed'}, since ${s.since.toISOString()}`);
}
if (process.argv[2] === undefined) rmSync(dir, { recursive: true, force: true });
