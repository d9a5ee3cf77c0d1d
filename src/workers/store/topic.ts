/**
 * A shard's topics as objects: the references of each topic (name, blocks, shared records,
 * named consumers' positions) in an object of its own, its numbers (offsets, cursors, sequence
 * numbers) in one Float64Array row per topic, shared by every topic of the shard.
 *
 * Why columns: V8 keeps a number in an object field unboxed only while every value the field
 * has held (in any object of the same shape) was a small integer; otherwise each object gets
 * a 16-byte heap box per field. Offsets decoded from frames are not always small integers to
 * V8, so after a log was read most of these fields were boxed: with 100,000 topics of one
 * entry each on 2 shards, once consumed, each worker's heap held about 600,000 heap numbers
 * and 33.5 MiB of live data. In rows it is 20.2 MiB (the rows, 104 bytes a topic, are outside
 * the heap).
 */
import type { Block, Position, SmallRecord, TopicLog } from './model.js';

// Column of each numeric field of TopicLog (model.ts documents them) within a topic's row.
const NEXT = 0;
const COMPLETE = 1;
const DURABLE = 2;
const MARKED = 3;
const START = 4;
const CURSOR = 5;
const CURSOR_WRITTEN = 6;
const DELIVERED = 7;
const SMALL_BYTES = 8;
const NAME_SEQ = 9;
const START_SEQ = 10;
const CURSOR_SEQ = 11;
const FLOOR = 12;
const FIELDS = 13;

/** Rows of the first table; it doubles when full. */
const INITIAL_ROWS = 64;

/**
 * The numeric state of a shard's topics: one row of FIELDS doubles per topic, in the order
 * the topics were made. Rows are never freed: a shard forgets no topic while it runs.
 */
export class TopicColumns {
  /** Replaced by a copy twice the size when full, so topics reach it through their columns. */
  table = new Float64Array(INITIAL_ROWS * FIELDS);
  private used = 0;

  /** The index of a new row's first field (all fields 0). */
  addRow(): number {
    const at = this.used;
    if (at + FIELDS > this.table.length) {
      const grown = new Float64Array(this.table.length * 2);
      grown.set(this.table);
      this.table = grown;
    }
    this.used = at + FIELDS;
    return at;
  }
}

/** A topic whose numeric fields live in a row of `columns` (the getters and setters below). */
class ColumnTopic implements TopicLog {
  blocks: Block[] = [];
  cur: Block | null = null;
  readHint: { offset: number; block: Block; rel: number } | null = null;
  small: SmallRecord[] = [];
  sharedBatch = false;
  positions: Map<number, Position> | null = null;

  constructor(
    readonly id: number,
    readonly name: string,
    private readonly columns: TopicColumns,
    private readonly row: number,
  ) {}

  get next(): number {
    return this.columns.table[this.row + NEXT]!;
  }
  set next(v: number) {
    this.columns.table[this.row + NEXT] = v;
  }
  get complete(): number {
    return this.columns.table[this.row + COMPLETE]!;
  }
  set complete(v: number) {
    this.columns.table[this.row + COMPLETE] = v;
  }
  get durable(): number {
    return this.columns.table[this.row + DURABLE]!;
  }
  set durable(v: number) {
    this.columns.table[this.row + DURABLE] = v;
  }
  get marked(): number {
    return this.columns.table[this.row + MARKED]!;
  }
  set marked(v: number) {
    this.columns.table[this.row + MARKED] = v;
  }
  get start(): number {
    return this.columns.table[this.row + START]!;
  }
  set start(v: number) {
    this.columns.table[this.row + START] = v;
  }
  get cursor(): number {
    return this.columns.table[this.row + CURSOR]!;
  }
  set cursor(v: number) {
    this.columns.table[this.row + CURSOR] = v;
  }
  get cursorWritten(): number {
    return this.columns.table[this.row + CURSOR_WRITTEN]!;
  }
  set cursorWritten(v: number) {
    this.columns.table[this.row + CURSOR_WRITTEN] = v;
  }
  get delivered(): number {
    return this.columns.table[this.row + DELIVERED]!;
  }
  set delivered(v: number) {
    this.columns.table[this.row + DELIVERED] = v;
  }
  get smallBytes(): number {
    return this.columns.table[this.row + SMALL_BYTES]!;
  }
  set smallBytes(v: number) {
    this.columns.table[this.row + SMALL_BYTES] = v;
  }
  get nameSeq(): number {
    return this.columns.table[this.row + NAME_SEQ]!;
  }
  set nameSeq(v: number) {
    this.columns.table[this.row + NAME_SEQ] = v;
  }
  get startSeq(): number {
    return this.columns.table[this.row + START_SEQ]!;
  }
  set startSeq(v: number) {
    this.columns.table[this.row + START_SEQ] = v;
  }
  get cursorSeq(): number {
    return this.columns.table[this.row + CURSOR_SEQ]!;
  }
  set cursorSeq(v: number) {
    this.columns.table[this.row + CURSOR_SEQ] = v;
  }
  get floor(): number {
    return this.columns.table[this.row + FLOOR]!;
  }
  set floor(v: number) {
    this.columns.table[this.row + FLOOR] = v;
  }
}

/** A new topic of the shard whose numbers `columns` holds: no entries, every number 0. */
export function newTopic(id: number, name: string, columns: TopicColumns): TopicLog {
  return new ColumnTopic(id, name, columns, columns.addRow());
}
