// walrus-ts itself, in the comparison's terms: one topic, one shard, FsyncSchedule.NoFsync
// (so that nothing but the benchmark's own waits makes data durable). 'walrus' appends
// record by record with append(); 'walrus-batch' hands each batch to batchAppend().
import path from 'node:path';
import { Walrus, FsyncSchedule, ReadConsistency } from '../../dist/index.js';
import { appendAndSyncRetry, appendRetry, batchAppendRetry, isBackpressure } from '../lib/walrus.mjs';

const TOPIC = 'bench';
const READ_BYTES = 4 * 1024 * 1024;

const WARM_TOPIC = 'warm';
const WARM_ENTRIES = 20_000;

/**
 * Opens a log and warms its shard worker (untimed): every open starts a new worker thread
 * whose first drains, fsyncs and reads run before V8 has compiled them (several times
 * slower), while the peers' code, on the main thread, is warm after the first round. A
 * long-running process sees the warm numbers; read.mjs measures the cold ones.
 */
async function openWal(dir, data, io = 'auto') {
  // atLeastOnce with a huge period: the read-back writes no cursor records while it drains.
  const wal = await Walrus.open({ dir: path.join(dir, 'wal'), fsync: FsyncSchedule.NoFsync, shards: 1, consistency: ReadConsistency.atLeastOnce(1e9), io });
  for (let i = 0; i < WARM_ENTRIES; i += 1000) await batchAppendRetry(wal, WARM_TOPIC, data.payloadsAt(i, 1000));
  await wal.sync();
  while ((await wal.batchRead(WARM_TOPIC, READ_BYTES, true)).length > 0);
  return wal;
}

function common(wal) {
  return {
    finish: () => wal.flush(), // everything written to the files (no fsync), like the others' level none
    async readAll(check, sampleEvery) {
      let entries = 0;
      let bytes = 0;
      for (;;) {
        const batch = await wal.batchRead(TOPIC, READ_BYTES, true); // CRC32C checked per record
        if (batch.length === 0) break;
        for (let k = 0; k < batch.length; k++) {
          const e = batch[k];
          if (entries % sampleEvery === 0) check(e.offset, e.data);
          entries++;
          bytes += e.data.length;
        }
      }
      return { entries, bytes };
    },
    /** Gives `k` named consumers a position at the topic's start (before anything is consumed, which would let its segments go). */
    async prepareConsumers(k) {
      for (let i = 0; i < k; i++) await wal.consumer(`bench-${i}`).seek(TOPIC, 0);
    },
    /**
     * `k` named consumers (atLeastOnce with a huge period: no cursor records while they
     * drain) drain the topic at once with fetch, each CRC-checking every entry it reads and
     * releasing each batch once handled;
     * returns each one's entries, bytes and seconds.
     */
    async readConsumers(k, check, sampleEvery) {
      return Promise.all(
        Array.from({ length: k }, async (_, i) => {
          const c = wal.consumer(`bench-${i}`, { consistency: ReadConsistency.atLeastOnce(1e9) });
          const t0 = performance.now();
          let entries = 0;
          let bytes = 0;
          for (;;) {
            const b = await c.fetch(TOPIC, { maxBytes: READ_BYTES });
            if (b.length === 0) break;
            for (let j = 0; j < b.length; j++) {
              const p = b.payload(j);
              if (entries % sampleEvery === 0) check(b.offset(j), p);
              entries++;
              bytes += p.length;
            }
            b.release(); // handled: its buffers serve the next reads
          }
          return { entries, bytes, seconds: (performance.now() - t0) / 1000 };
        }),
      );
    },
    close: () => wal.close(),
  };
}

/** The 'walrus' system on the given I/O path ('auto': the addon; 'portable': node:fs only). */
function recordAppender(name, note, io) {
  return {
    name,
    note,
    levels: ['none', 'group', 'record'],
    concurrent: true,
    walrus: true,
    async open(dir, level, data) {
      const wal = await openWal(dir, data, io);
      const slowRest = async (seq, from, count) => {
        for (let k = from; k < count; k++) await appendRetry(wal, TOPIC, data.payloadAt(seq + k));
      };
      return {
        ...common(wal),
        writeBatch(seq, count) {
          for (let k = 0; k < count; k++) {
            try {
              wal.append(TOPIC, data.payloadAt(seq + k));
            } catch (e) {
              if (!isBackpressure(e)) throw e;
              const rest = slowRest(seq, k, count);
              return level === 'group' ? rest.then(() => wal.sync()) : rest;
            }
          }
          return level === 'group' ? wal.sync() : undefined;
        },
        writeOne: (seq) => appendAndSyncRetry(wal, TOPIC, data.payloadAt(seq)),
      };
    },
  };
}

export const walrus = recordAppender('walrus', 'append() per record, NoFsync, 1 shard; none: timed to flush() (written, no fsync); group: append() x batch then await sync(); record: await appendAndSync() (x1 one at a time, x16/x256 that many in flight, sharing fsyncs)', 'auto');

/**
 * walrus on its portable I/O path (node:fs and @node-rs/crc32, no addon: issue 13), beside the
 * native one: what macOS and Windows users, or a Linux without a usable prebuild or compiler, get.
 */
export const walrusPortable = recordAppender('walrus-portable', 'as walrus, on the portable node:fs I/O path (io: \'portable\')', 'portable');

export const walrusBatch = {
  name: 'walrus-batch',
  note: 'batchAppend() of each batch (atomic on disk), otherwise as walrus',
  levels: ['none', 'group'],
  walrus: true,
  async open(dir, level, data) {
    const wal = await openWal(dir, data);
    return {
      ...common(wal),
      writeBatch(seq, count) {
        const entries = data.payloadsAt(seq, count);
        try {
          wal.batchAppend(TOPIC, entries);
        } catch (e) {
          if (!isBackpressure(e)) throw e;
          const rest = batchAppendRetry(wal, TOPIC, entries);
          return level === 'group' ? rest.then(() => wal.sync()) : rest;
        }
        return level === 'group' ? wal.sync() : undefined;
      },
    };
  },
};
