/**
 * Every byte layout that more than one thread or language relies on is defined here, once.
 *
 * `native/layout.h` is generated from `NATIVE_LAYOUT` below (`npm run gen:layout`), the addon
 * exports the values it was compiled with, and `test/layout.test.ts` fails if either copy
 * drifts from this file. docs/FORMAT.md describes the same layouts in prose.
 */

/**
 * On-disk format version written in every segment header. Version 2 added shared blocks
 * (SHARED_TOPIC_ID) and the `s` field of snapshot records; a version 2 reader also reads
 * version 1 segments (which hold neither) but writes only into version 2 segments.
 */
export const FORMAT_VERSION = 2;
/** Oldest format version this reader accepts. */
export const MIN_FORMAT_VERSION = 1;

/**
 * Record header: every entry, in the ring and on disk, starts with these 32 bytes, followed by
 * the payload and zero padding up to the next multiple of RECORD_ALIGN. All integers are
 * little-endian. The CRC32C covers bytes [RECORD_CRC_START, RECORD_HEADER_BYTES + len): every
 * header field after the CRC itself, then the payload. Padding is not covered.
 */
export const RECORD_HEADER_BYTES = 32;
export const RECORD_ALIGN = 8;
export const REC_CRC = 0; // u32 CRC32C
export const REC_LEN = 4; // u32 payload length in bytes
export const REC_TOPIC = 8; // u32 shard-local topic id (0 = the shard's meta topic)
export const REC_KIND = 12; // u8, one of RecordKind
export const REC_FLAGS = 13; // u8, reserved, 0
export const REC_RESERVED = 14; // u16, reserved, 0
export const REC_OFFSET_LO = 16; // u32 low half of the entry's offset in its topic
export const REC_OFFSET_HI = 20; // u32 high half (offsets stay below 2^53)
export const REC_SALT = 24; // u32 salt of the block the record was written into
export const REC_REMAINING = 28; // u32 entries left in this record's batch, this one included (1 = last)
/** First byte covered by the record CRC. */
export const RECORD_CRC_START = 4;

/** Record kinds. Kinds 16 and above exist only in the ring, never on disk (recovery accepts only Entry and Meta). */
export const RecordKind = {
  /** A user entry. */
  Entry: 1,
  /** A record of the shard's meta topic (topic id 0); msgpack payload, see meta.ts. */
  Meta: 2,
  /** Ring only: an entry whose payload travels beside the ring (too large for it). */
  External: 16,
  /** Ring only: declares a new topic id; payload is the topic name in UTF-8. */
  TopicDef: 17,
  /** Ring only: the rest of the ring up to its end is unused; continue at ring offset 0. */
  Wrap: 18,
} as const;
export type RecordKind = (typeof RecordKind)[keyof typeof RecordKind];

/** The shard-local topic id reserved for the meta topic. */
export const META_TOPIC_ID = 0;
/**
 * The topic id in the header of a *shared block*: a block holding the first records of many
 * small topics (each record still names its own topic). Never a real topic's id.
 */
export const SHARED_TOPIC_ID = 0xffffffff;

/**
 * Bytes a record occupies (header + payload + padding). Exact for any payload length up to
 * 2^53 (no 32-bit operators: a length read from a damaged file may be near 2^32).
 */
export function recordFootprint(payloadBytes: number): number {
  const raw = RECORD_HEADER_BYTES + payloadBytes + RECORD_ALIGN - 1;
  return raw - (raw % RECORD_ALIGN);
}

/**
 * Segment file: a 64-byte header at offset 0, zeros up to SEGMENT_DATA_START, then a grid of
 * `slots` block slots of `blockBytes` each. A block occupies one or more consecutive slots.
 */
export const SEGMENT_MAGIC = 'WALRUSTS'; // 8 ASCII bytes at offset 0
export const SEGMENT_HEADER_BYTES = 64;
export const SEGMENT_DATA_START = 4096;
export const SEG_MAGIC = 0; // 8 bytes
export const SEG_VERSION = 8; // u32 FORMAT_VERSION
export const SEG_HEADER_BYTES = 12; // u32 SEGMENT_HEADER_BYTES
export const SEG_SHARD = 16; // u32 shard index
export const SEG_BLOCK_BYTES = 20; // u32 slot size
export const SEG_SEQ_LO = 24; // u32 segment sequence number, low half
export const SEG_SEQ_HI = 28; // u32 high half
export const SEG_SLOTS = 32; // u32 number of slots
export const SEG_SALT = 36; // u32 random, chosen when the segment file is (re)initialised
export const SEG_CRC = 60; // u32 CRC32C of bytes [0, 60)

/** Block header: the first 64 bytes of a block's first slot; records follow it. */
export const BLOCK_MAGIC = 0x4b4c4257; // 'WBLK' read as a little-endian u32
export const BLOCK_HEADER_BYTES = 64;
export const BLK_MAGIC = 0; // u32 BLOCK_MAGIC
export const BLK_TOPIC = 4; // u32 topic id
export const BLK_SEQ_LO = 8; // u32 shard-wide block sequence number, low half
export const BLK_SEQ_HI = 12; // u32 high half
export const BLK_FIRST_LO = 16; // u32 topic offset of the block's first record, low half
export const BLK_FIRST_HI = 20; // u32 high half
export const BLK_SLOTS = 24; // u32 slots the block spans
export const BLK_SALT = 28; // u32 salt every record of this block carries in REC_SALT
export const BLK_CRC = 60; // u32 CRC32C of bytes [0, 60)

/**
 * Ring control area at the start of each shard's SharedArrayBuffer, followed by the ring data
 * (a power-of-two number of bytes). Int32 slots are indexes into an Int32Array over the
 * control area; BigInt64 slots are indexes into a BigInt64Array over the same bytes, starting
 * at byte RING_BIG_BASE.
 */
export const RING_CONTROL_BYTES = 256;
export const RingSlot = {
  /** Producer: ring bytes published, modulo 2^32. */
  Head: 0,
  /** Worker: ring bytes released (written to disk), modulo 2^32. */
  Tail: 1,
  /** Incremented and notified to wake a sleeping worker. */
  Doorbell: 2,
  /** Worker sets 1 before it sleeps on Doorbell. */
  WorkerSleeping: 3,
  /** Producer sets 1 while it blocks waiting for ring space. */
  ProducerWaiting: 4,
  /** ShardState. */
  State: 5,
  /** Incremented and notified after every fsync that advanced Durable. */
  DurableGen: 6,
  /** Incremented and notified after every release of ring space. */
  TailGen: 7,
  /**
   * Main ring only: incremented by a producer thread after it posted the attachment or
   * detachment of its own ring on the shard's channel (src/main/threads/), so the worker
   * polls that channel only when there is something to take.
   */
  Attachments: 8,
  /**
   * Main ring only: incremented by the opening thread's process 'exit' listener when producer
   * threads append (src/main/walrus.ts): the worker then writes every ring up to its Head as
   * of the request, and stores the request's number in ExitDone.
   */
  ExitRequest: 9,
  ExitDone: 10,
  /** Main ring only: incremented and notified after each write round while an exit request is served. */
  ExitProgress: 11,
} as const;
export const RING_BIG_BASE = 64;
export const RingBig = {
  /** Logical ring position (bytes since open) up to which records are written to the files. */
  Written: 0,
  /** Logical position up to which records are on stable storage. */
  Durable: 1,
  /** Highest logical position a sync() caller is waiting for. */
  SyncRequest: 2,
  /** Bytes of external (beside-the-ring) payloads not yet written. */
  ExternalBytes: 3,
  /** fdatasync calls completed (stats). */
  Fsyncs: 4,
  /** Write submissions (one pwritev per run, or one io_uring_enter per drain). */
  WriteSubmits: 5,
  /** Bytes written to segment files. */
  BytesWritten: 6,
  /** Records written. */
  RecordsWritten: 7,
} as const;
/**
 * Main ring's State. Closing: the worker is taking the last records before it closes; a
 * producer thread that sees it (or any non-zero State) appends nothing more.
 */
export const ShardState = { Open: 0, Failed: 1, Closed: 2, Closing: 3 } as const;

/**
 * The topic directory shared by every thread that appends (src/shared/producers/): one
 * SharedArrayBuffer made by `producerHandle()`. Int32 header words, then (byte offsets from
 * directoryLayout) the hash table (Int32 per slot: entry index + 1, 0 = empty), the entries
 * (DIR_ENTRY_WORDS Int32 each), the offset counters (BigInt64 per entry), the ledgers
 * (DIR_LEDGER_WORDS Int32 per producer), and the arena of topic names (UTF-8).
 */
export const DirWord = {
  /** Entries handed out (the next entry's index). */
  Count: 0,
  Capacity: 1,
  /** Hash table slots - 1 (a power of two minus one). */
  TableMask: 2,
  /** Topic id of entry 0; entry k's topic (made through the directory) has id IdBase + k. */
  IdBase: 3,
  /** Arena bytes handed out, and the arena's size. */
  ArenaUsed: 4,
  ArenaBytes: 5,
  MaxProducers: 6,
  Shards: 7,
  /** Bumped and notified after a producer thread's append when Watching is non-zero. */
  AppendGen: 8,
  /** Non-zero while the opening thread has subscribers waiting for entries. */
  Watching: 9,
  /**
   * Rings made by producers so far: each ring's id (a ledger slot is reused once its
   * producer closed, so a ring is named by this id, never by its producer's slot).
   */
  RingSerial: 10,
  /** Ledger slots handed out so far: each holder's token (LedgerWord.Taken) comes from it. */
  LedgerSerial: 11,
} as const;
export const DIR_HEADER_BYTES = 64;
/** Entry words: name's arena offset, name length, shard, topic id, lock word. */
export const DIR_ENTRY_WORDS = 8;
export const DirEntry = { NameAt: 0, NameLen: 1, Shard: 2, Id: 3, Lock: 4 } as const;
/**
 * Ledger words, one ledger per producer (index 0: the opening thread): whether the slot is
 * taken, the state word ((epoch << 2) | LedgerPhase), then what a publication in flight
 * writes before it enters Publishing: topic entry, shard, ring Head before and after, entry
 * count, and (Float64 at word 8) the first offset.
 */
export const DIR_LEDGER_WORDS = 16;
export const LedgerWord = { Taken: 0, State: 1, Entry: 2, Shard: 3, HeadBefore: 4, HeadAfter: 5, Count: 6, First: 8 } as const;
export const LedgerPhase = { Idle: 0, Holding: 1, Publishing: 2, Fenced: 3 } as const;
/**
 * LedgerWord.Taken: 0 when the slot is free, the holder's token (a positive number) while a
 * producer holds it, LEDGER_ABANDONED once its thread ended without closing it (stored by
 * the addon's thread-exit hook, native/thread_exit.cc).
 */
export const LEDGER_ABANDONED = -1;
/** Lock word: bit 30 = waiters; bits 15-29 = producer index + 1; bits 0-14 = epoch. */
export const LOCK_CONTENDED = 1 << 30;
export const LOCK_EPOCH_BITS = 15;
export const MAX_PRODUCERS = (1 << LOCK_EPOCH_BITS) - 2;

/** Byte offsets of the directory's areas for a capacity (entries), producers and arena size. */
export function directoryLayout(capacity: number, maxProducers: number, arenaBytes: number): { table: number; tableSlots: number; entries: number; counters: number; ledgers: number; arena: number; total: number } {
  let tableSlots = 1;
  while (tableSlots < capacity * 2) tableSlots *= 2;
  const table = DIR_HEADER_BYTES;
  const entries = table + tableSlots * 4;
  const counters = align8(entries + capacity * DIR_ENTRY_WORDS * 4);
  const ledgers = counters + capacity * 8;
  const arena = ledgers + maxProducers * DIR_LEDGER_WORDS * 4;
  return { table, tableSlots, entries, counters, ledgers, arena, total: align8(arena + arenaBytes) };
}

function align8(n: number): number {
  return n + ((8 - (n % 8)) % 8);
}

/** Write-batch descriptors passed to the addon (Float64Array, see native.ts). */
export const WRITE_OP_FIELDS = 4; // fd, file position, first iovec index, iovec count
export const IOV_FIELDS = 3; // source (-1 = ring, k = external buffer k), offset, length
export const IOV_SOURCE_RING = -1;
/**
 * sealRun's `out` (native.ts): this many numbers (frames taken, offset after the last
 * complete batch, index pairs written), then the index pairs.
 */
export const RUN_OUT_FIELDS = 3;

/** Every numeric constant the C++ side compiles against. */
export const NATIVE_LAYOUT = {
  RECORD_HEADER_BYTES,
  RECORD_ALIGN,
  RECORD_CRC_START,
  REC_CRC,
  REC_LEN,
  REC_TOPIC,
  REC_KIND,
  REC_FLAGS,
  REC_OFFSET_LO,
  REC_OFFSET_HI,
  REC_SALT,
  REC_REMAINING,
  RECORD_KIND_ENTRY: RecordKind.Entry,
  RING_CONTROL_BYTES,
  WRITE_OP_FIELDS,
  IOV_FIELDS,
  IOV_SOURCE_RING,
  RUN_OUT_FIELDS,
} as const;
