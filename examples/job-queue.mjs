// A job queue with StrictlyAtOnce. A producer enqueues jobs; a pool of concurrent workers
// takes them with readNext (each checkpointing read resolves only once its cursor advance is
// durable, and concurrent reads share fsyncs); halfway through, the log is closed and
// reopened, as in a clean restart, and the workers carry on where the cursor is: every job
// is handed out once.
//
// What a crash (kill -9, power loss) does: a job whose checkpointing read was in flight has
// been consumed on disk before the worker had it, so it is lost (at-most-once for the read in
// flight). The second part shows the pattern that loses nothing: peek with
// readNext(topic, false), process, then readNext(topic) to checkpoint; a crash then repeats
// at most the job in flight (docs/DURABILITY.md, "Read cursors"). It needs one worker per
// topic: concurrent peeks see the same job.
//
//   node examples/job-queue.mjs [dir]
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Walrus, ReadConsistency } from 'walrus-ts';

const dir = process.argv[2] ?? mkdtempSync(join(tmpdir(), 'walrus-jobs-'));
const JOBS = 1000;
const WORKERS = 8;
const open = () => Walrus.open({ dir, consistency: ReadConsistency.StrictlyAtOnce });

let wal = await open();
wal.batchAppend('jobs', Array.from({ length: JOBS }, (_, i) => JSON.stringify({ id: i, task: `resize image ${i}` })));
await wal.sync();
console.log(`enqueued ${JOBS} jobs`);

const done = new Map();
async function work(name, limit) {
  while (done.size < limit) {
    const e = await wal.readNext('jobs');
    if (e === null) return;
    const job = JSON.parse(e.data.toString());
    if (done.has(job.id)) throw new Error(`job ${job.id} handed out twice`);
    done.set(job.id, name);
  }
}

// First run: stop after about half the jobs, as if the process were restarted.
await Promise.all(Array.from({ length: WORKERS }, (_, k) => work(`w${k}`, JOBS / 2)));
await wal.close();
console.log(`before restart: ${done.size} jobs done`);

wal = await open();
await Promise.all(Array.from({ length: WORKERS }, (_, k) => work(`w${k}`, Infinity)));
const fsyncs = wal.stats().shards.reduce((n, s) => n + s.fsyncs, 0);
await wal.close();

const perWorker = new Map();
for (const w of done.values()) perWorker.set(w, (perWorker.get(w) ?? 0) + 1);
console.log(`after restart: ${done.size} jobs done, each handed out once`);
console.log(`workers: ${[...perWorker].map(([w, n]) => `${w}=${n}`).join(' ')}`);
console.log(`fsyncs after the restart: ${fsyncs} for ${JOBS - JOBS / 2} checkpointed reads (shared by concurrent workers)`);

// Work that must not be lost: peek, process, checkpoint. The checkpoint returns the job just
// processed (nothing else reads this topic) and makes its consumption durable.
wal = await open();
wal.batchAppend('critical', Array.from({ length: 100 }, (_, i) => JSON.stringify({ id: i })));
const processed = [];
for (;;) {
  const job = await wal.readNext('critical', false);
  if (job === null) break;
  processed.push(JSON.parse(job.data.toString()).id); // a crash after this: the job comes again
  const taken = await wal.readNext('critical');
  if (taken.offset !== job.offset) throw new Error('another reader took a job');
}
await wal.close();
const inOrder = processed.every((id, k) => id === k);
console.log(`peek, process, checkpoint: ${processed.length} critical jobs processed${inOrder ? ' in order' : ' OUT OF ORDER'}`);
if (process.argv[2] === undefined) rmSync(dir, { recursive: true, force: true });
