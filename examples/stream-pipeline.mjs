// Node streams: a pipeline that consumes one topic through its cursor, transforms each
// entry and appends the results to another topic, durably (sync: true), with backpressure
// carried end to end by the streams. `live: false` ends the source once it is drained;
// without it the read stream is a live tail that ends when the log closes.
//
//   node examples/stream-pipeline.mjs [dir]
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Walrus } from 'walrus-ts';

const dir = process.argv[2] ?? mkdtempSync(join(tmpdir(), 'walrus-streams-'));
const wal = await Walrus.open({ dir });

const raw = wal.typed('clicks');
for (let i = 0; i < 5000; i++) raw.append({ user: `u${i % 50}`, page: `/p/${i % 7}`, at: new Date(1_700_000_000_000 + i) });

let kept = 0;
const onlyHome = new Transform({
  objectMode: true,
  transform({ value }, _enc, cb) {
    if (value.page !== '/p/0') return cb();
    kept++;
    cb(null, { user: value.user, at: value.at });
  },
});
await pipeline(
  wal.createReadStream('clicks', { mode: 'values', live: false, highWaterMark: 256 }),
  onlyHome,
  wal.createWriteStream('home-visits', { mode: 'values', sync: true }),
);

const visits = [];
for await (const e of wal.typed('home-visits').iterate()) visits.push(e);
const left = await wal.readNext('clicks');
await wal.close();
console.log(`consumed 5000 clicks, kept ${kept} home-page visits, stored ${visits.length}`);
console.log(`first: ${visits[0].value.user} at ${visits[0].value.at.toISOString()}`);
console.log(`source cursor at the end: ${left === null ? 'nothing left' : `entry ${left.offset} left`}`);
if (process.argv[2] === undefined) rmSync(dir, { recursive: true, force: true });
