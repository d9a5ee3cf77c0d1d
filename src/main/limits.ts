/**
 * Limits of one call, shared by the Walrus class, typed topics and streams. A leaf module:
 * typed.ts and streams.ts take these from here, not from walrus.ts (which imports them).
 */
import { constants as bufferConstants } from 'node:buffer';

/** Most entries one `batchAppend` takes (and one `batchRead` returns). */
export const MAX_BATCH_ENTRIES = 2000;
/**
 * Most payload bytes one `batchAppend` takes: 4 GiB, the most one Buffer or Uint8Array holds
 * on Node 20 (`buffer.constants.MAX_LENGTH`), or less where Node allows less. A batch too big
 * for the ring is copied into one buffer that travels beside it, so that is its real bound;
 * the 10 GiB once documented could not be reached (a 4-10 GiB batch failed with a RangeError).
 */
export const MAX_BATCH_BYTES = Math.min(2 ** 32, bufferConstants.MAX_LENGTH);
/** Payload bytes one read request of `iterate` asks its shard worker for. */
export const READ_CHUNK_BYTES = 4 * 1024 * 1024;
/**
 * Most entries one `fetch` returns, and its default `maxEntries`. Higher than
 * MAX_BATCH_ENTRIES because a RecordBatch costs the main thread nothing per entry (no object,
 * no Buffer until asked), so the cap only bounds the shard worker's side of one read: the
 * records it walks and checksums in one go (while it walks them, that shard's writes wait)
 * and the reply's entry table (READ_ENTRY_FIELDS float64s per entry: 2 MiB at this cap).
 * The worker's read path (workers/read/reader.ts, consumer.ts) sets no count limit of its
 * own and holds nothing that grows faster than the count: one small object per entry until
 * it writes the table, and the chunks it read. With
 * payloads of 16 bytes or more the default `maxBytes` (FETCH_DEFAULT_MAX_BYTES) is reached
 * first, so the cap matters only for tiny records: 65,536 of them are 2 to 3 MiB of file
 * (32-byte headers, 8-byte alignment) for the worker to read and checksum, the same order
 * as one default read of larger records.
 */
export const MAX_FETCH_ENTRIES = 65_536;
/**
 * Default `maxBytes` of `fetch`: 1 MiB of payload. Large enough that the per-request cost
 * (a message to the shard worker and back, and under StrictlyAtOnce one fsync shared by the
 * reads waiting for it) is spread over thousands of entries (8,192 of 128 bytes); small
 * enough that one read holds the shard worker, whose writes wait meanwhile, for about the
 * time it takes to read and checksum 1 MiB, and that the chunks a caller keeps alive through
 * payload views stay small. It is also the size the benchmarks' consumers use for batchRead.
 */
export const FETCH_DEFAULT_MAX_BYTES = 1024 * 1024;
