/**
 * The table of a shard's requests waiting for their reply (src/main/client/requests.ts): each
 * reply settles exactly the request it answers, a slot's next request is not settled by a
 * reply meant for the one before, and a failure rejects every waiting request in the order
 * they were sent. What the table is for (keeping nothing of a settled request) is measured by
 * test/scale.test.ts's consume phase.
 */
import { describe, expect, it } from 'vitest';
import { PendingRequests } from '../dist/main/client/requests.js';

/** A request as the shard client holds it, recording how it was settled. */
function request(log: string[], name: string) {
  return [(m: string) => log.push(`${name} resolved ${m}`), (e: Error) => log.push(`${name} rejected ${e.message}`)] as const;
}

describe('PendingRequests', () => {
  it('gives each waiting request its own positive id, and a reply takes it once', () => {
    const table = new PendingRequests<string>();
    const log: string[] = [];
    const ids = ['a', 'b', 'c'].map((name) => table.add(...request(log, name)));
    expect(new Set(ids).size).toBe(3);
    for (const id of ids) expect(id).toBeGreaterThan(0);
    table.take(ids[1]!)!.resolve('1');
    expect(table.take(ids[1]!)).toBeUndefined();
    table.take(ids[2]!)!.resolve('2');
    table.take(ids[0]!)!.resolve('0');
    expect(log).toEqual(['b resolved 1', 'c resolved 2', 'a resolved 0']);
    // The ids the worker uses for messages nobody waits for (0: open, 'taken' without ack; -1: close at terminate).
    expect(table.take(0)).toBeUndefined();
    expect(table.take(-1)).toBeUndefined();
  });

  it('a reply for a request no longer waiting does not settle the one that took its slot', () => {
    const table = new PendingRequests<string>();
    const log: string[] = [];
    const first = table.add(...request(log, 'first'));
    table.take(first)!.resolve('x');
    const second = table.add(...request(log, 'second'));
    expect(second).not.toBe(first);
    expect(table.take(first)).toBeUndefined();
    table.take(second)!.resolve('y');
    expect(log).toEqual(['first resolved x', 'second resolved y']);
  });

  it('ids stay distinct and safe integers through millions of requests one after another', () => {
    const table = new PendingRequests<string>();
    const noop = () => {};
    let previous = -1;
    // More than the turns of one slot (2^21): the turn wraps, and a slot's id changes every time.
    for (let i = 0; i < 2 ** 21 + 10; i++) {
      const id = table.add(noop, noop);
      const taken = table.take(id);
      // Checked without expect(): its cost per call made this loop take seconds.
      if (!Number.isSafeInteger(id) || id <= 0 || id === previous || taken === undefined) throw new Error(`request ${i}: id ${id} after ${previous}, taken: ${taken !== undefined}`);
      previous = id;
    }
  });

  it('takeAll gives every waiting request in the order they were sent and leaves the table empty', () => {
    const table = new PendingRequests<string>();
    const log: string[] = [];
    const ids = ['a', 'b', 'c', 'd'].map((name) => table.add(...request(log, name)));
    // Slots freed out of order are taken again by later requests: the order is still the sending order.
    table.take(ids[0]!)!.resolve('0');
    table.take(ids[2]!)!.resolve('2');
    const late = ['e', 'f'].map((name) => table.add(...request(log, name)));
    for (const p of table.takeAll()) p.reject(new Error('failed'));
    expect(log).toEqual(['a resolved 0', 'c resolved 2', 'b rejected failed', 'd rejected failed', 'e rejected failed', 'f rejected failed']);
    for (const id of [...ids, ...late]) expect(table.take(id)).toBeUndefined();
    expect(table.takeAll()).toEqual([]);
  });
});
