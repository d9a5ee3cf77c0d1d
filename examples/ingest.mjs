// High-rate ingest: producers append batches with batchAppend (one atomic batch each: after
// a crash either all of a batch is there or none of it) and acknowledge each batch once it
// is durable with sync(); the shard workers' group commit makes one fdatasync cover every
// batch appended while the previous one ran, so far fewer fsyncs happen than batches.
//
//   node examples/ingest.mjs [dir] [batches]
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { Walrus, FsyncSchedule } from 'walrus-ts';

const dir = process.argv[2] ?? mkdtempSync(join(tmpdir(), 'walrus-ingest-'));
const BATCHES = Number(process.argv[3] ?? 400);
const BATCH = 1000;
const IN_FLIGHT = 16;

// Records of 500-1000 random bytes, generated up front so the generator is not measured.
const pool = Array.from({ length: 4096 }, (_, i) => randomBytes(500 + (i % 501)));
// backpressureMs: 0: the producers share the event loop, so a full ring must not block it;
// batchAppend throws ERR_WALRUS_BACKPRESSURE at once and the producer awaits drain() instead.
// (By default batchAppend would block the thread until there is room.)
const wal = await Walrus.open({ dir, fsync: FsyncSchedule.milliseconds(200), backpressureMs: 0 });

const start = process.hrtime.bigint();
let bytes = 0;
let acked = 0;
let next = 0;
async function producer(topic) {
  while (next < BATCHES) {
    const b = next++;
    const entries = Array.from({ length: BATCH }, (_, i) => pool[(b * BATCH + i) % pool.length]);
    for (const e of entries) bytes += e.length;
    for (;;) {
      try {
        wal.batchAppend(topic, entries);
        break;
      } catch (err) {
        if (err.code !== 'ERR_WALRUS_BACKPRESSURE') throw err;
        await wal.drain(); // the disk is behind: wait for room, then retry the same batch
      }
    }
    await wal.sync(); // acknowledged once durable; concurrent syncs share fsyncs
    acked++;
  }
}
await Promise.all(Array.from({ length: IN_FLIGHT }, (_, k) => producer(`sensor-${k % 4}`)));
const seconds = Number(process.hrtime.bigint() - start) / 1e9;
const fsyncs = wal.stats().shards.reduce((n, s) => n + s.fsyncs, 0);

let stored = 0;
for (const topic of wal.topics()) for await (const _ of wal.iterate(topic)) stored++;
await wal.close();

console.log(`ingested ${acked * BATCH} entries in ${acked} durable batches of ${BATCH} (${(bytes / 1e6).toFixed(0)} MB) in ${seconds.toFixed(2)} s`);
console.log(`${Math.round((acked * BATCH) / seconds)} entries/s, ${(bytes / 1e6 / seconds).toFixed(0)} MB/s`);
console.log(`group commit: ${fsyncs} fsyncs for ${acked} acknowledged batches`);
console.log(`read back: ${stored} entries`);
if (process.argv[2] === undefined) rmSync(dir, { recursive: true, force: true });
