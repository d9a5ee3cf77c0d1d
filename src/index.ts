/**
 * walrus-ts: a durable, topic-organised write-ahead log for Node.js.
 *
 * @packageDocumentation
 */
export { Walrus } from './main/walrus.js';
export { enableFdBackend, disableFdBackend } from './main/options.js';
export { MAX_BATCH_ENTRIES, MAX_BATCH_BYTES, MAX_FETCH_ENTRIES } from './main/limits.js';
export { RecordBatch } from './main/batch.js';
export { Consumer } from './main/consumer.js';
export type { ConsumerInfo, ConsumerOptions, ConsumerTopicInfo } from './main/types.js';
export type { WalrusStats, ShardStats, ReadAheadStats, LiveTailStats } from './main/types.js';
export type { Entry, FetchOptions, SubscribeOptions } from './main/types.js';
export type { WalrusOptions, Backend } from './main/options.js';
export { FsyncSchedule, ReadConsistency } from './shared/schedule.js';
export { WalrusError } from './shared/errors.js';
export type { WalrusErrorCode, WalrusErrorDetails } from './shared/errors.js';
export { TypedTopic, TypedRecordBatch } from './main/records/typed.js';
export type { ReadStreamOptions, WriteStreamOptions } from './main/streams.js';
export type { TypedEntry } from './main/records/typed.js';
export { Producer } from './main/threads/producer.js';
export type { AttachOptions } from './main/threads/producer.js';
export type { ProducerHandle, ProducerHandleOptions } from './main/threads/handle.js';
