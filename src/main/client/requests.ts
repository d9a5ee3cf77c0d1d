/**
 * The requests a shard's worker has not answered yet, by id: a table of slots, not a Map.
 *
 * A Map with an id added and deleted per request is replaced by a new hash table every few
 * dozen requests, and V8 keeps a replaced table, its entries included (with a link to its
 * successor, for iterators still walking it), until the next full collection. Once the
 * table is in the old generation (a full collection moves it there), its replacements are
 * allocated there too, and each replaced table is a root of every scavenge for the young
 * objects its entries point to: every request's promise, closures and reply stayed reachable,
 * were copied by one scavenge and promoted by the next. Reading 100,000 topics (64 reads in
 * flight), about 500 bytes a read survived a scavenge that way (10% of what the main thread
 * allocated; 1.4% with this table), and V8 grows the young generation by what survives: on
 * Node 24 it grew to 128 MiB (test/scale.test.ts, consuming every topic: +320 to +350 MiB RSS
 * with the Map, +213 to +231 with this table).
 *
 * A slot is cleared when its request is answered or rejected, so nothing here keeps a request
 * once it is settled, and the table only grows to the most requests in flight at once. An id
 * names its slot (id % SLOTS) and the slot's turn (how many requests it has held, modulo
 * TURNS), so a stray reply to a request that is no longer waiting (the worker sends none)
 * cannot settle a later request that took its slot.
 */

export interface Pending<T> {
  resolve: (m: T) => void;
  reject: (e: Error) => void;
}

interface Waiting<T> extends Pending<T> {
  id: number;
  /** Order of sending: takeAll gives the requests in it, so a failure rejects them in the order they were sent. */
  seq: number;
}

/** More slots than an array can have: the table never runs out. */
const SLOTS = 2 ** 32;
/** Turns 1 to TURNS - 1 (0 is never used, so no request's id is 0); every id stays below SLOTS * TURNS, 2^53. */
const TURNS = 2 ** 21;

export class PendingRequests<T> {
  private readonly slots: (Waiting<T> | undefined)[] = [];
  private readonly turns: number[] = [];
  private readonly free: number[] = [];
  private seq = 0;

  /** Holds a request until its reply comes; returns its id (positive). */
  add(resolve: (m: T) => void, reject: (e: Error) => void): number {
    let slot = this.free.pop();
    if (slot === undefined) {
      slot = this.slots.length;
      this.slots.push(undefined);
      this.turns.push(0);
    }
    const turn = (this.turns[slot]! % (TURNS - 1)) + 1;
    this.turns[slot] = turn;
    const id = turn * SLOTS + slot;
    this.slots[slot] = { id, seq: this.seq++, resolve, reject };
    return id;
  }

  /** The request `id`, removed; undefined when none with that id is waiting. */
  take(id: number): Pending<T> | undefined {
    if (!(id > 0)) return undefined;
    const slot = id % SLOTS;
    const w = this.slots[slot];
    if (w === undefined || w.id !== id) return undefined;
    this.slots[slot] = undefined;
    this.free.push(slot);
    return w;
  }

  /** Every waiting request, removed, in the order they were added. */
  takeAll(): Pending<T>[] {
    const out: Waiting<T>[] = [];
    for (let slot = 0; slot < this.slots.length; slot++) {
      const w = this.slots[slot];
      if (w === undefined) continue;
      this.slots[slot] = undefined;
      this.free.push(slot);
      out.push(w);
    }
    return out.sort((a, b) => a.seq - b.seq);
  }
}
