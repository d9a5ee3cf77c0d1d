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
