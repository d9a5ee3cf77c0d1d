/**
 * Checkpointing reads: every topic has one read cursor, kept in the shard's meta topic so it
 * rides the same writes and the same group commit as the data (a durable cursor implies the
 * data before it is durable).
 *
 * Each topic has two positions (workers/store/model.ts): `delivered`, where the next read starts,
 * and `cursor`, the committed position (everything before it is consumed). Cursor records
 * only ever persist `cursor`.
 *
 * StrictlyAtOnce: a checkpointing read commits what it returns at once (cursor = delivered),
 * writes a cursor record and is answered only after the fsync that covers it; every read
 * waiting at that moment shares that fsync. The read in flight at a crash is therefore
 * at-most-once: its entries are consumed before the caller has them.
 * atLeastOnce(n): a checkpointing read first commits what earlier reads returned (the caller
 * came back for more, so it handled them), then reads and moves `delivered` only. The cursor
 * record is written once the committed cursor is n or more entries past the last one written
 * (before the read is answered), and becomes durable with the shard's next fsync. After a
 * kill -9 at most (n - 1) + the entries of the last read returned are delivered again, and
 * none is skipped. commit() commits `delivered` explicitly and makes it durable; close()
 * writes every committed cursor exactly.
 */
import { WalrusError, ioError, serializeError } from '../../shared/errors.js';
import { READ_ENTRY_FIELDS, readTransfer, type FromWorker } from '../../shared/messages.js';
import type { ReadConsistency } from '../../shared/schedule.js';
import { type TopicLog } from '../store/model.js';
import { moveCursor } from '../store/blocks.js';
import { EMPTY_READ, readEntries, type ReadOutput } from './reader.js';
import type { Writer } from '../write/writer.js';

type Reply = Extract<FromWorker, { type: 'readResult' }>;

export interface ConsumeRequest {
  id: number;
  topicId: number;
  maxEntries: number;
  maxBytes: number;
  checkpoint: boolean;
}

export class Consumers {
  /** StrictlyAtOnce replies held until the next fsync completes. */
  private awaiting: Reply[] = [];
  /**
   * atLeastOnce replies whose read queued a cursor record, held until the record is written:
   * answered first, a kill -9 right after could lose the record (it was only in this
   * worker's memory) and redeliver more than the bound, (n - 1) + the last read's entries.
   * Found by the crash cycles.
   */
  private unwritten: Reply[] = [];

  constructor(
    private readonly writer: Writer,
    private readonly consistency: ReadConsistency,
    private readonly post: (m: FromWorker, transfer?: ArrayBuffer[]) => void,
  ) {}

  /** Whether replies wait for an fsync (the worker must then submit one). */
  get waiting(): boolean {
    return this.awaiting.length > 0;
  }

  /** Whether replies wait for their cursor record to be written (the worker must submit). */
  get unwrittenWaiting(): boolean {
    return this.unwritten.length > 0;
  }

  /** The queued cursor records were written (handed to the kernel): answer their reads. */
  written(): void {
    for (const r of this.unwritten.splice(0)) this.send(r);
  }

  /**
   * Reads from `delivered` of `t` (undefined: a topic this shard does not hold); a
   * checkpointing read commits as its mode says (see the file comment). `failed` is the
   * shard's failure, if any: a StrictlyAtOnce checkpoint cannot be made durable then, so it
   * is refused.
   */
  consume(t: TopicLog | undefined, m: ConsumeRequest, failed: WalrusError | null): void {
    try {
      const strict = this.consistency.kind === 'strictlyAtOnce';
      // atLeastOnce: coming back for more commits everything returned before this read,
      // whatever this read finds.
      if (t && m.checkpoint && !strict) moveCursor(t, t.delivered);
      const out: ReadOutput = t ? readEntries(t, t.delivered, m.maxEntries, m.maxBytes) : EMPTY_READ();
      const n = out.entries.length / READ_ENTRY_FIELDS;
      const reply: Reply = { type: 'readResult', id: m.id, data: out.data, entries: out.entries };
      if (!t || !m.checkpoint || (strict && n === 0)) {
        this.send(reply);
        return;
      }
      if (strict && failed) throw failed;
      if (n > 0) t.delivered = out.entries[(n - 1) * READ_ENTRY_FIELDS]! + 1;
      if (strict) {
        moveCursor(t, t.delivered);
        this.writer.appendCursor(t);
        this.awaiting.push(reply);
        return;
      }
      if (!failed && t.cursor - t.cursorWritten >= this.consistency.persistEvery) {
        this.writer.appendCursor(t);
        this.unwritten.push(reply);
        return;
      }
      this.send(reply);
    } catch (err) {
      this.post({ type: 'requestFailed', id: m.id, error: serializeError(err instanceof WalrusError ? err : ioError(err, 'read failed')) });
    }
  }

  /**
   * commit(): everything checkpointing reads of `t` returned is consumed. Queues the cursor
   * record if the committed cursor moved past the last one written; the caller then writes
   * and fsyncs before answering.
   */
  commit(t: TopicLog | undefined): void {
    if (!t) return;
    moveCursor(t, t.delivered);
    if (t.cursor !== t.cursorWritten) this.writer.appendCursor(t);
  }

  /** The fsync covering every held cursor record completed: answer their reads. */
  released(): void {
    for (const r of this.awaiting.splice(0)) this.send(r);
  }

  /** The fsync failed: none of the held reads may be answered with entries. */
  failed(err: WalrusError): void {
    for (const r of [...this.awaiting.splice(0), ...this.unwritten.splice(0)]) this.post({ type: 'requestFailed', id: r.id, error: serializeError(err) });
  }

  private send(r: Reply): void {
    this.post(r, readTransfer(r.data, r.entries));
  }
}
