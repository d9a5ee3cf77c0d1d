/**
 * Public types of reads and statistics, shared by the Walrus class, typed topics and
 * streams. A leaf module (types only): typed.ts and streams.ts take them from here, not from
 * walrus.ts.
 */
import type { ReadConsistency } from '../shared/schedule.js';

/** An entry as reads return it. */
export interface Entry {
  /** The topic it belongs to. */
  topic: string;
  /** Its offset in the topic: 0, 1, 2, ... in append order. */
  offset: number;
  /** Its payload (strings were stored as UTF-8). */
  data: Buffer;
}

/** Options of {@link Walrus.subscribe}. */
export interface SubscribeOptions {
  /** Aborting it makes the iterator reject with an AbortError. */
  signal?: AbortSignal;
}

/** Options of {@link Walrus.fetch} and {@link TypedTopic.fetch}. */
export interface FetchOptions {
  /**
   * Most payload bytes the batch holds (a non-negative safe integer; default 1 MiB): the
   * first entry is returned even when it alone is larger.
   */
  maxBytes?: number;
  /**
   * Most entries the batch holds: an integer from 1 to {@link MAX_FETCH_ENTRIES} (65,536),
   * which is also the default.
   */
  maxEntries?: number;
  /** Advance the topic's cursor past the entries (default `true`); `false` peeks. */
  checkpoint?: boolean;
}

/** Counters of one shard, in {@link WalrusStats.shards}. */
export interface ShardStats {
  /** fdatasync calls made by the shard's group commit. */
  fsyncs: number;
  /** Write submissions (io_uring_enter or pwritev rounds). */
  writeSubmits: number;
  /** Bytes written to segment files (headers, records, padding). */
  bytesWritten: number;
  /** Records written (entries and meta records). */
  recordsWritten: number;
  /** The shard's read-aheads (the `readAhead` option; docs/ARCHITECTURE.md, "Reads"). */
  readAhead: ReadAheadStats;
}

/**
 * Counters of a shard's read-aheads, in {@link ShardStats}: once a consumer's read is
 * answered, the shard worker reads and verifies that consumer's next read of the topic, and
 * answers the next request from it when it is exactly what the request would read.
 */
export interface ReadAheadStats {
  /** Read-aheads made (read and checksummed). */
  made: number;
  /** Reads answered from a read-ahead. */
  served: number;
  /** Read-aheads dropped unused: the consumer moved elsewhere (seek, commit, another read), asked for other limits, or the memory bound needed the room. */
  dropped: number;
  /** Read-aheads that met an error (a record failing its checksum, an I/O error): dropped, and the read that reaches those entries reads them itself and reports it. */
  failed: number;
  /** Bytes the shard's read-aheads hold now (at most 16 MiB per shard, 8 MiB per consumer and topic). */
  heldBytes: number;
}

/** What {@link Walrus.stats} reports. */
export interface WalrusStats {
  /** Bytes of torn tail that the last open truncated. */
  recoveredTornBytes: number;
  /** Whether the previous instance closed cleanly. */
  recoveredClean: boolean;
  /**
   * How write batches reach the kernel, for every shard of the log: see the `ioUring`
   * option; `'mmap'` for that backend; `'portable'` when the log uses the portable I/O path
   * (the `io` option: node:fs writev and fdatasync, no io_uring).
   */
  io: 'io_uring' | 'io_uring+pwritev' | 'pwritev' | 'mmap' | 'portable';
  /** One entry per shard, by shard index. */
  shards: ShardStats[];
  /** What atLeastOnce subscribers delivered without a read per entry (docs/ARCHITECTURE.md, "Live tails"). */
  liveTail: LiveTailStats;
}

/**
 * Entries that atLeastOnce subscribers (`subscribe`) of this instance delivered without a read
 * request of their own per entry, in {@link WalrusStats}.
 */
export interface LiveTailStats {
  /** From the copies of the entries appended while they ran, each once the shard worker had written it. */
  fromMemory: number;
  /** From their bulk peeks at the shard worker (a backlog, or after they fell too far behind). */
  fromPeeks: number;
}

/** Options of {@link Walrus.consumer}. */
export interface ConsumerOptions {
  /** The consistency of the consumer's checkpointing reads; default: the instance's `consistency`. */
  consistency?: ReadConsistency;
}

/** A named consumer as {@link Walrus.consumers} lists it. */
export interface ConsumerInfo {
  /** The consumer's name. */
  name: string;
  /** The topics it has a position in, by name. */
  topics: ConsumerTopicInfo[];
}

/** Where a named consumer stands in one topic (see {@link ConsumerInfo}). */
export interface ConsumerTopicInfo {
  /** The topic. */
  topic: string;
  /** Committed: every entry before it is consumed. */
  committed: number;
  /** Where its next checkpointing read starts. */
  position: number;
  /** Entries appended and not yet consumed (end - committed). */
  lag: number;
  /** Entries deleted by a retention bound before this consumer read them, since the log was opened. */
  skipped: number;
}
