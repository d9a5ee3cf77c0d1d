/**
 * The producer handle: what `wal.producerHandle()` gives and `Walrus.attach` takes in
 * another thread. Only structured-clonable values (SharedArrayBuffers, numbers, strings), so
 * it travels in `workerData`, `postMessage` or a piscina pool's `workerData` to any number of
 * threads, and every copy shares the same memory.
 */
import { invalidArgType } from '../../shared/errors.js';
import { RingSlot, wakeWorker } from '../../shared/ring.js';
import { BroadcastChannel } from 'node:worker_threads';
import type { ProducerChannelMessage } from '../../shared/messages.js';

export const HANDLE_KIND = 'walrus-ts/producer-handle';

/** A log's producer handle (see {@link Walrus.producerHandle}). Treat it as opaque. */
export interface ProducerHandle {
  /** What this value is: `'walrus-ts/producer-handle'`. */
  readonly kind: typeof HANDLE_KIND;
  /** Version of the handle's layout. */
  readonly version: 1;
  /** The topic directory (shared/producers/directory.ts). */
  readonly directory: SharedArrayBuffer;
  /** Each shard's main ring (its control slots: State, Doorbell, Attachments). */
  readonly rings: SharedArrayBuffer[];
  /** Prefix of the shards' channel names (shard k: `${channel}:${k}`). */
  readonly channel: string;
  /** The log's `maxRecordBytes`, which producers check as the log does. */
  readonly maxRecordBytes: number;
  /** The log's `backpressureMs`: the longest wait of a producer's append on a full ring. */
  readonly backpressureMs: number;
  /** Default size of a producer's ring per shard. */
  readonly ringBytes: number;
}

/** Options of `wal.producerHandle()`; they apply when the first handle is made. */
export interface ProducerHandleOptions {
  /**
   * Most topics the log can have while producer threads may append (the shared directory's
   * size, fixed once made). Default: four times the topics the log has, at least 65,536.
   */
  maxTopics?: number;
  /** Most producers attached at once (default 1,024). */
  maxProducers?: number;
  /**
   * Size of each producer's ring per shard it appends to, a power of two from 64 KiB to the
   * log's ringBytes (default: the log's ringBytes, at most 4 MiB).
   */
  ringBytes?: number;
}

/** Checks that `h` is a producer handle (a TypeError naming `name` if not). */
export function checkHandle(h: unknown, name = 'handle'): ProducerHandle {
  const x = h as Partial<ProducerHandle> | null;
  if (
    typeof x !== 'object' ||
    x === null ||
    x.kind !== HANDLE_KIND ||
    x.version !== 1 ||
    !(x.directory instanceof SharedArrayBuffer) ||
    !Array.isArray(x.rings) ||
    !x.rings.every((r) => r instanceof SharedArrayBuffer) ||
    typeof x.channel !== 'string'
  ) {
    throw invalidArgType(name, 'a producer handle made by wal.producerHandle()', h);
  }
  return x as ProducerHandle;
}

/** Shard `shard`'s channel name. */
export function channelName(prefix: string, shard: number): string {
  return `${prefix}:${shard}`;
}

/**
 * Posts `m` on shard `shard`'s channel, then tells its worker (Attachments, doorbell). The
 * channel is opened for the one message: a channel left open would also receive every other
 * producer's messages.
 */
export function postToShard(handle: ProducerHandle, shard: number, m: ProducerChannelMessage): void {
  const bc = new BroadcastChannel(channelName(handle.channel, shard));
  try {
    bc.postMessage(m);
  } finally {
    bc.close();
  }
  const ctl = new Int32Array(handle.rings[shard]!, 0, RingSlot.Attachments + 1);
  Atomics.add(ctl, RingSlot.Attachments, 1);
  wakeWorker(ctl);
}
