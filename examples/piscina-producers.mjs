// Appending from a piscina pool: the thread that opens the log makes a producer handle and
// puts it in the pool's workerData; each pool thread attaches once (Walrus.attach) and its
// tasks append to the same log, lock-free with every other thread, with dense offsets per
// topic. A task acknowledges its orders once they are durable (sync(): one group commit of
// the shard covers every thread's appends waiting for it).
//
//   node examples/piscina-producers.mjs [dir] [tasks]
//
// This one file is both the program and the pool's task module.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Piscina, isWorkerThread, workerData } from 'piscina';
import { FsyncSchedule, Walrus } from 'walrus-ts';

/** This pool thread's producer, attached by its first task. */
let producer = null;

/** A task: append a customer's orders as one atomic batch and to the shared audit topic. */
export default async function appendOrders({ customer, orders }) {
  producer ??= Walrus.attach(workerData.wal);
  const first = producer.batchAppend(`orders/${customer}`, orders.map((o) => JSON.stringify(o)));
  const audit = producer.append('audit', `${customer}: ${orders.length} orders`);
  await producer.sync();
  return { first, audit };
}

if (!isWorkerThread) {
  const dir = process.argv[2] ?? mkdtempSync(join(tmpdir(), 'walrus-piscina-'));
  const TASKS = Number(process.argv[3] ?? 200);
  const wal = await Walrus.open({ dir, fsync: FsyncSchedule.milliseconds(20) });
  const pool = new Piscina({ filename: new URL(import.meta.url).href, workerData: { wal: wal.producerHandle() }, maxThreads: 4, minThreads: 4 });

  const customers = ['ada', 'grace', 'edsger', 'barbara'];
  const results = await Promise.all(
    Array.from({ length: TASKS }, (_, i) => {
      const customer = customers[i % customers.length];
      const orders = Array.from({ length: 1 + (i % 5) }, (_, k) => ({ task: i, item: k }));
      return pool.run({ customer, orders });
    }),
  );
  await pool.destroy();
  console.log(`${TASKS} tasks appended from a pool of 4 threads`);

  // Every task's audit entry has its own offset, the offsets of the audit topic are dense,
  // and every customer's batches are whole and in the offsets the tasks were given.
  const audits = results.map((r) => r.audit).sort((a, b) => a - b);
  console.log(`audit offsets dense: ${audits.every((o, i) => o === i)}`);
  let whole = true;
  let orders = 0;
  for (const [c, customer] of customers.entries()) {
    // The first offset each of this customer's tasks was given, and the task.
    const taskAt = new Map();
    results.forEach((r, i) => i % customers.length === c && taskAt.set(r.first, i));
    let expected = 0;
    for await (const e of wal.iterate(`orders/${customer}`)) {
      const { task, item } = JSON.parse(e.data.toString());
      if (e.offset !== expected++ || taskAt.get(e.offset - item) !== task) whole = false;
      orders++;
    }
  }
  console.log(`orders read back: ${orders}, batches whole at their offsets: ${whole}`);
  await wal.close();
  if (process.argv[2] === undefined) rmSync(dir, { recursive: true });
}
