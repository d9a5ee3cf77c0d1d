// Bulk consumption: an aggregator reads fixed-size binary click events with wal.fetch. Each
// read is one RecordBatch of up to 1 MiB or 65,536 entries that builds no entry objects: the
// loop reads each event's fields straight from its payload view. Under atLeastOnce(n) every
// fetch commits the batch before it (the aggregator came back for more, so it handled
// it), and commit() makes the last batch durable before close: after the reopen nothing is
// left to read.
//
//   node examples/bulk-aggregate.mjs [dir] [events]
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Walrus, ReadConsistency } from 'walrus-ts';

const dir = process.argv[2] ?? mkdtempSync(join(tmpdir(), 'walrus-bulk-'));
const EVENTS = Number(process.argv[3] ?? 200_000);
const PAGES = 8;
const EVENT_BYTES = 16; // user u32, page u16, 2 spare bytes, time f64 (ms)
const consistency = ReadConsistency.atLeastOnce(10_000);

let wal = await Walrus.open({ dir, consistency });
try {
  // Events in atomic batches of 2,000, each a view of one buffer (batchAppend copies them).
  const block = Buffer.alloc(2000 * EVENT_BYTES);
  for (let first = 0; first < EVENTS; first += 2000) {
    const n = Math.min(2000, EVENTS - first);
    const events = [];
    for (let k = 0; k < n; k++) {
      const i = first + k;
      const e = block.subarray(k * EVENT_BYTES, (k + 1) * EVENT_BYTES);
      e.writeUInt32LE(i % 1000, 0);
      e.writeUInt16LE((i * 7) % PAGES, 4);
      e.writeDoubleLE(1_700_000_000_000 + i, 8);
      events.push(e);
    }
    wal.batchAppend('clicks', events);
  }
  await wal.sync();

  const views = new Array(PAGES).fill(0);
  let users = 0;
  let batches = 0;
  let largest = 0;
  let next = 0;
  for (let batch = await wal.fetch('clicks'); batch.length > 0; batch = await wal.fetch('clicks')) {
    if (batch.firstOffset !== next) throw new Error(`expected offset ${next}, got ${batch.firstOffset}`);
    for (const e of batch.payloads()) {
      users += e.readUInt32LE(0);
      views[e.readUInt16LE(4)]++;
    }
    next = batch.firstOffset + batch.length;
    batches++;
    largest = Math.max(largest, batch.length);
    // Handled: its buffers go back to the shard worker, which reads the next batches into
    // them instead of into new memory (the batch and its views are empty from here on).
    batch.release();
  }
  await wal.commit('clicks'); // the last batch is handled: make that durable
  console.log(`aggregated ${next} clicks in ${batches} fetches (largest: ${largest} entries)`);
  console.log(`views per page: ${views.join(' ')}`);
  console.log(`sum of user ids: ${users}`);
} finally {
  await wal.close();
}

wal = await Walrus.open({ dir, consistency });
try {
  const rest = await wal.fetch('clicks');
  console.log(rest.length === 0 ? 'after reopen: nothing left to read' : `after reopen: ${rest.length} clicks again`);
} finally {
  await wal.close();
}
if (process.argv[2] === undefined) rmSync(dir, { recursive: true, force: true });
