// walrus-ts helpers shared by the benchmark scripts: retry on backpressure, topic names that
// land on distinct shards, summed shard counters, and the io path probe.
import fs from 'node:fs';
import { Walrus, FsyncSchedule } from '../../dist/index.js';
import { topicHash } from '../../dist/shared/format/topic.js';

export function isBackpressure(e) {
  return e !== null && typeof e === 'object' && e.code === 'ERR_WALRUS_BACKPRESSURE';
}

/** `wal.append`, waiting for room (`wal.drain()`) and retrying on backpressure; returns the retries. */
export async function appendRetry(wal, topic, data) {
  for (let retries = 0; ; retries++) {
    try {
      wal.append(topic, data);
      return retries;
    } catch (e) {
      if (!isBackpressure(e)) throw e;
      await wal.drain();
    }
  }
}

/** `wal.batchAppend` with the same retry; returns the retries. */
export async function batchAppendRetry(wal, topic, entries) {
  for (let retries = 0; ; retries++) {
    try {
      wal.batchAppend(topic, entries);
      return retries;
    } catch (e) {
      if (!isBackpressure(e)) throw e;
      await wal.drain();
    }
  }
}

/** `wal.appendAndSync` with the same retry. */
export async function appendAndSyncRetry(wal, topic, data) {
  for (;;) {
    try {
      return await wal.appendAndSync(topic, data);
    } catch (e) {
      if (!isBackpressure(e)) throw e;
      await wal.drain();
    }
  }
}

/**
 * `count` topic names spread as evenly as the stable hash allows over `shards` shards (topic
 * k goes to shard k % shards), so that a multi-shard run really uses every shard.
 */
export function topicsOverShards(count, shards, prefix = 'bench') {
  const out = [];
  const used = new Set();
  for (let k = 0; out.length < count; k++) {
    const want = out.length % shards;
    for (let j = 0; ; j++) {
      const name = `${prefix}-${k}-${j}`;
      if (!used.has(name) && topicHash(Buffer.from(name, 'utf8')) % shards === want) {
        used.add(name);
        out.push(name);
        break;
      }
    }
  }
  return out;
}

const ZERO = { fsyncs: 0, writeSubmits: 0, bytesWritten: 0, recordsWritten: 0 };

/** Shard counters of `after` minus those of `before` (null: from zero), summed over shards. */
export function statsDelta(after, before = null) {
  const out = { ...ZERO };
  after.shards.forEach((s, i) => {
    const b = before?.shards[i] ?? ZERO;
    for (const k of Object.keys(ZERO)) out[k] += s[k] - b[k];
  });
  return out;
}

/** The io path the library picks here ('io_uring+pwritev', 'pwritev', ...), from a throwaway log. */
export async function probeIo(dir) {
  const wal = await Walrus.open({ dir, fsync: FsyncSchedule.NoFsync, shards: 1 });
  try {
    return wal.stats().io;
  } finally {
    await wal.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
