/**
 * The topic directory: what every thread that appends to one log shares about its topics,
 * in one SharedArrayBuffer (layout: DirWord and directoryLayout in format/layout.ts).
 *
 * - Names to entries: an open-addressing hash table of entry indexes. An entry (name in the
 *   arena, shard, topic id) is written completely by the thread that makes it and becomes
 *   visible with one compareExchange of an empty table slot, so there is no half-made entry
 *   for anyone to see or wait for, and a thread that dies while making one leaves at most an
 *   unused entry behind. Two threads making the same name race on the slot; the loser
 *   takes the winner's entry (its own stays unused).
 * - Per entry, the topic's offset counter (the offset its next entry gets) and its lock word
 *   (sequencer.ts), which orders the publications of the topic's entries across threads.
 * - Per producer, a ledger slot (sequencer.ts).
 *
 * Nothing here blocks. Entries are never removed: the capacity is fixed when the handle is
 * made (producerHandle's `maxTopics`).
 */
import { WalrusError } from '../errors.js';
import { DIR_ENTRY_WORDS, DIR_LEDGER_WORDS, DirEntry, DirWord, directoryLayout } from '../format/layout.js';
import { topicHash } from '../format/topic.js';

export interface DirectoryTopic {
  /** Entry index in the directory. */
  entry: number;
  shard: number;
  id: number;
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

export class TopicDirectory {
  readonly header: Int32Array;
  private readonly table: Int32Array;
  /** Entry words (DirEntry), DIR_ENTRY_WORDS per entry; also the lock words. */
  readonly entries: Int32Array;
  /** The offset counters, one per entry. */
  readonly counters: BigInt64Array;
  /** Ledger words (LedgerWord), DIR_LEDGER_WORDS per producer; First through `ledgerFloats`. */
  readonly ledgers: Int32Array;
  readonly ledgerFloats: Float64Array;
  private readonly arena: Uint8Array;
  readonly capacity: number;
  readonly maxProducers: number;

  constructor(readonly sab: SharedArrayBuffer) {
    this.header = new Int32Array(sab, 0, 16);
    this.capacity = this.header[DirWord.Capacity]!;
    this.maxProducers = this.header[DirWord.MaxProducers]!;
    const l = directoryLayout(this.capacity, this.maxProducers, this.header[DirWord.ArenaBytes]!);
    this.table = new Int32Array(sab, l.table, l.tableSlots);
    this.entries = new Int32Array(sab, l.entries, this.capacity * DIR_ENTRY_WORDS);
    this.counters = new BigInt64Array(sab, l.counters, this.capacity);
    this.ledgers = new Int32Array(sab, l.ledgers, this.maxProducers * DIR_LEDGER_WORDS);
    this.ledgerFloats = new Float64Array(sab, l.ledgers, (this.maxProducers * DIR_LEDGER_WORDS) / 2);
    this.arena = new Uint8Array(sab, l.arena, this.header[DirWord.ArenaBytes]!);
  }

  /** A new, empty directory for `shards` shards whose made topics get ids from `idBase` on. */
  static create(capacity: number, maxProducers: number, shards: number, idBase: number): TopicDirectory {
    // 32 bytes a name on average before the arena runs out first (names are 1 to 255 bytes).
    const arenaBytes = capacity * 32;
    const l = directoryLayout(capacity, maxProducers, arenaBytes);
    const sab = new SharedArrayBuffer(l.total);
    const h = new Int32Array(sab, 0, 16);
    h[DirWord.Capacity] = capacity;
    h[DirWord.TableMask] = l.tableSlots - 1;
    h[DirWord.IdBase] = idBase;
    h[DirWord.ArenaBytes] = arenaBytes;
    h[DirWord.MaxProducers] = maxProducers;
    h[DirWord.Shards] = shards;
    return new TopicDirectory(sab);
  }

  get shards(): number {
    return this.header[DirWord.Shards]!;
  }

  /** The topic named `name` (its UTF-8 bytes), or null. */
  lookup(name: Uint8Array): DirectoryTopic | null {
    const mask = this.header[DirWord.TableMask]!;
    for (let i = topicHash(name) & mask, probes = 0; probes <= mask; i = (i + 1) & mask, probes++) {
      const v = Atomics.load(this.table, i);
      if (v === 0) return null;
      if (this.nameIs(v - 1, name)) return this.topic(v - 1);
    }
    return null;
  }

  /**
   * The topic named `name`, made if it does not exist (in shard `shard`, with id `id`, or the
   * directory's IdBase + entry when `id` is -1). Throws ERR_WALRUS_TOO_MANY_TOPICS when the
   * directory is full.
   */
  lookupOrAdd(name: Uint8Array, shard: number, id = -1, next = 0): DirectoryTopic {
    const found = this.lookup(name);
    if (found !== null) return found;
    const entry = this.make(name, shard, id, next);
    const mask = this.header[DirWord.TableMask]!;
    for (let i = topicHash(name) & mask; ; i = (i + 1) & mask) {
      let v = Atomics.load(this.table, i);
      if (v === 0) {
        v = Atomics.compareExchange(this.table, i, 0, entry + 1);
        if (v === 0) return this.topic(entry);
      }
      // Someone made this name first: theirs it is (our entry stays unused).
      if (this.nameIs(v - 1, name)) return this.topic(v - 1);
    }
  }

  /** Writes a new entry, not yet reachable from the table. */
  private make(name: Uint8Array, shard: number, id: number, next: number): number {
    const entry = Atomics.add(this.header, DirWord.Count, 1);
    const at = Atomics.add(this.header, DirWord.ArenaUsed, name.length);
    if (entry >= this.capacity || at + name.length > this.arena.length) {
      throw new WalrusError('ERR_WALRUS_TOO_MANY_TOPICS', `the producer handle's topic directory is full (maxTopics ${this.capacity}); nothing was written (make the handle with a larger maxTopics)`);
    }
    this.arena.set(name, at);
    const w = entry * DIR_ENTRY_WORDS;
    this.entries[w + DirEntry.NameAt] = at;
    this.entries[w + DirEntry.NameLen] = name.length;
    this.entries[w + DirEntry.Shard] = shard;
    this.entries[w + DirEntry.Id] = id >= 0 ? id : this.header[DirWord.IdBase]! + entry;
    Atomics.store(this.counters, entry, BigInt(next));
    return entry;
  }

  private nameIs(entry: number, name: Uint8Array): boolean {
    const w = entry * DIR_ENTRY_WORDS;
    if (this.entries[w + DirEntry.NameLen] !== name.length) return false;
    const at = this.entries[w + DirEntry.NameAt]!;
    for (let k = 0; k < name.length; k++) if (this.arena[at + k] !== name[k]) return false;
    return true;
  }

  private topic(entry: number): DirectoryTopic {
    const w = entry * DIR_ENTRY_WORDS;
    return { entry, shard: this.entries[w + DirEntry.Shard]!, id: this.entries[w + DirEntry.Id]! };
  }

  /** The name of the topic with id `id` made through the directory (id >= IdBase), or null. */
  nameOfId(id: number): string | null {
    const entry = id - this.header[DirWord.IdBase]!;
    if (entry < 0 || entry >= Math.min(this.capacity, Atomics.load(this.header, DirWord.Count))) return null;
    const w = entry * DIR_ENTRY_WORDS;
    if (this.entries[w + DirEntry.Id] !== id) return null;
    const at = this.entries[w + DirEntry.NameAt]!;
    return utf8.decode(this.arena.subarray(at, at + this.entries[w + DirEntry.NameLen]!));
  }

  /** Every topic in the directory (entries the table reaches: a lost race's entry is not one). */
  *topics(): IterableIterator<DirectoryTopic & { name: string }> {
    for (let i = 0; i < this.table.length; i++) {
      const v = Atomics.load(this.table, i);
      if (v === 0) continue;
      const w = (v - 1) * DIR_ENTRY_WORDS;
      const at = this.entries[w + DirEntry.NameAt]!;
      yield { ...this.topic(v - 1), name: utf8.decode(this.arena.subarray(at, at + this.entries[w + DirEntry.NameLen]!)) };
    }
  }

  /** The offset the next entry of `entry`'s topic gets. */
  next(entry: number): number {
    return Number(Atomics.load(this.counters, entry));
  }

  /** Index of ledger word `word` of producer `producer`. */
  ledgerWord(producer: number, word: number): number {
    return producer * DIR_LEDGER_WORDS + word;
  }
}
