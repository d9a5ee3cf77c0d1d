/**
 * Everything that crosses between the main thread and a shard worker. Each direction is a
 * discriminated union, handled by an exhaustive switch whose default throws.
 */
import type { MessagePort } from 'node:worker_threads';
import type { SerializedError } from './errors.js';
import type { IoPath } from './native.js';
import type { FsyncSchedule, ReadConsistency } from './schedule.js';

export type IoPolicy = 'always' | 'multi' | 'never';

/** workerData of a shard worker. */
export interface ShardInit {
  shard: number;
  /** The namespace directory (absolute). */
  dir: string;
  ring: SharedArrayBuffer;
  /**
   * The 'memory' backend: segments are anonymous memory files (memfd) instead of files in
   * `dir`, which is then only a label for messages. Everything else runs as on disk.
   */
  memory: boolean;
  fsync: FsyncSchedule;
  consistency: ReadConsistency;
  blockBytes: number;
  segmentSlots: number;
  maxRecordBytes: number;
  /** This shard's share of options.retentionBytes, or Infinity. */
  retentionBytes: number;
  /** options.retentionMs, or Infinity. */
  retentionMs: number;
  /** 'always': every batch through io_uring; 'multi': batches touching more than one file; 'never'. */
  uring: IoPolicy;
  /** 'mmap': segments are mapped and written by copies, made durable with msync (uring is then 'never'). */
  backend: 'fd' | 'mmap';
  /**
   * The I/O path the log resolved at open. native.ts reads it from workerData under this
   * name (WORKER_IO_PATH_KEY) as the worker's modules load, so the worker uses exactly it.
   */
  walrusIoPath: IoPath;
  /** The worker posts its failure (a SerializedError) here before it sets State to Failed. */
  failPort: MessagePort;
  /** Name of the shard's BroadcastChannel for producer threads (ProducerChannelMessage). */
  channel: string;
  /** CPU to pin the worker to, or -1. */
  cpu: number;
  /** options.readAhead: make each consumer's next read in advance (workers/read/read-ahead.ts). */
  readAhead: boolean;
  /**
   * The read-ahead counters (READ_STATS_FIELDS BigInt64 slots: made, served, dropped, failed,
   * heldBytes), written by the worker, read by stats().
   */
  readStats: SharedArrayBuffer;
  debug: boolean;
}

/** A topic as recovery found it. */
export interface RecoveredTopic {
  id: number;
  name: string;
  /** The offset the next entry will get. */
  next: number;
}

/** A named consumer as requests name it: wal.consumer(name, { consistency }). */
export interface ConsumerRef {
  name: string;
  consistency: ReadConsistency;
}

export type ToWorker =
  /**
   * The payloads of the External ring record at logical ring position `pos`: `lengths[i]`
   * bytes each, back to back in `payload`. `ring`: the id of the producer thread's ring that
   * holds the record (ProducerChannelMessage 'attach'; absent: the main ring). Producer threads post it on the shard's
   * channel (ProducerChannelMessage), the opening thread on the worker's port.
   */
  | { type: 'external'; pos: number; payload: Uint8Array; lengths: Float64Array; ring?: number }
  | { type: 'read'; id: number; topicId: number; from: number; maxEntries: number; maxBytes: number }
  /**
   * Read from where the consumer stands in the topic (workers/read/consumer.ts; `consumer`
   * null: the default consumer); advance it when `checkpoint`. `readAhead` false: make no
   * read-ahead after it (a live tail's peek, whose next read starts past it).
   */
  | { type: 'consume'; id: number; topicId: number; maxEntries: number; maxBytes: number; checkpoint: boolean; consumer: ConsumerRef | null; readAhead: boolean }
  /**
   * A live tail (main/live-tail.ts) delivered entries [from, to) of the topic to an
   * atLeastOnce consumer from memory, one by one, as a run of readNext calls would have: the
   * consumer's position moves as those reads would have moved it (all but the last entry
   * committed, the next read at `to`). With `ack`, the committed position is also recorded
   * now (whatever persistEvery says), and the message is answered with 'taken' once that
   * record is written; without, a record is queued only when persistEvery says so, and
   * nothing answers. `from` may equal `to` (nothing delivered since the last one).
   */
  | { type: 'taken'; id: number; topicId: number; consumer: ConsumerRef | null; from: number; to: number; ack: boolean }
  /** Buffers of released read replies (RecordBatch.release), transferred back for later reads. Not answered. */
  | { type: 'recycle'; id: number; buffers: ArrayBuffer[] }
  /**
   * sync() after atLeastOnce checkpoints: make every cursor record queued or written so far
   * durable, even when no entry was appended since the last fsync. Answered with 'synced'.
   */
  | { type: 'syncCursors'; id: number }
  /**
   * commit(topic): every entry checkpointing reads of the topic returned is consumed; write
   * the cursor record and fsync. Answered with 'synced'.
   */
  | { type: 'commit'; id: number; topicId: number; consumer: ConsumerRef | null; offset?: number }
  /** seek(): the consumer's position in the topic moves to `offset` (clamped), durably. Answered with 'synced'. */
  | { type: 'seek'; id: number; topicId: number; consumer: ConsumerRef; offset: number }
  /** Where the consumer stands in the topic. Answered with 'position'. */
  | { type: 'position'; id: number; topicId: number; consumer: ConsumerRef | null }
  /** The named consumers of the shard and their positions. Answered with 'consumers'. */
  | { type: 'consumers'; id: number }
  /** Deletes a named consumer, durably. Answered with 'synced'. */
  | { type: 'dropConsumer'; id: number; name: string }
  | { type: 'close'; id: number };

export type FromWorker =
  | {
      type: 'ready';
      topics: RecoveredTopic[];
      /** Highest topic id ever used in this shard (ids are never reused). */
      maxTopicId: number;
      tornBytes: number;
      uring: boolean;
      cleanShutdown: boolean;
    }
  /** Recovery failed; the worker exits after this. */
  | { type: 'openFailed'; error: SerializedError }
  /**
   * `entries` holds READ_ENTRY_FIELDS numbers per entry: offset, index of the buffer in
   * `data` that holds its payload, payload start in that buffer, payload length.
   */
  | {
      type: 'readResult';
      id: number;
      data: ArrayBuffer[];
      entries: Float64Array;
      /**
       * A read from the consumer's position (consume): where its next checkpointing read
       * starts (for a peek, where it read from); else -1.
       */
      next: number;
    }
  /** The answer to a 'taken' with `ack`: the committed position last written for the consumer in the topic. */
  | { type: 'taken'; id: number; written: number }
  | { type: 'requestFailed'; id: number; error: SerializedError }
  /** The shard hit an I/O error and refuses further appends. */
  | { type: 'failed'; error: SerializedError }
  | { type: 'synced'; id: number }
  /** committed and delivered: the consumer's positions; start and end: the topic's stored entries. */
  | { type: 'position'; id: number; cursor: number; delivered: number; start: number; end: number }
  /** Per named consumer: name, then [topic id, committed, delivered, skipped, topic end] per topic. */
  | { type: 'consumers'; id: number; list: [string, [number, number, number, number, number][]][] }
  | { type: 'closed'; id: number };

/**
 * What producer threads post on a shard's BroadcastChannel (src/main/threads/). A producer
 * posts, then adds 1 to the main ring's Attachments and rings the doorbell; the worker takes
 * the channel's messages with receiveMessageOnPort when Attachments changed.
 */
export type ProducerChannelMessage =
  /**
   * Ring `ringId` (unique in the log) of producer `producer` (its ledger index, reused after
   * a producer closes) takes that producer's appends to the shard from now on.
   */
  | { type: 'attach'; producer: number; ringId: number; ring: SharedArrayBuffer; directory: SharedArrayBuffer }
  /** Ring `ringId`'s producer closed: drop it once drained. */
  | { type: 'detach'; ringId: number }
  | Extract<ToWorker, { type: 'external' }>;

export const READ_ENTRY_FIELDS = 4;

/** Slots of ShardInit.readStats, in order: made, served, dropped, failed, heldBytes. */
export const READ_STATS_FIELDS = 5;

/** The transfer list of a read reply: its buffers move to the main thread, no copy. */
export function readTransfer(data: ArrayBuffer[], entries: Float64Array): ArrayBuffer[] {
  return [...data, entries.buffer as ArrayBuffer];
}

export function unreachable(x: never): never {
  throw new Error(`walrus-ts internal error: unhandled message ${JSON.stringify(x)}`);
}
