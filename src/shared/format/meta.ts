/**
 * Records of a shard's meta topic (topic id 0). Their payloads are msgpack maps; docs/FORMAT.md
 * lists every kind. Unknown kinds are rejected, not skipped: a newer writer's meta records must
 * not be half-understood by an older reader.
 */
import { Packr } from 'msgpackr';

export type MetaRecord =
  /** A topic id is bound to a name. */
  | { k: 'topic'; id: number; name: string }
  /** Format 2: `topic` for many topics in one record, as pairs [id, name]. */
  | { k: 'topics'; t: [number, string][] }
  /**
   * Sync mark: every listed topic (id 0 = the meta topic itself) was durable up to `next`
   * (exclusive) when the fsync before this record completed.
   */
  | { k: 'sync'; t: [number, number][] }
  /** Clean shutdown: everything before this record was fsynced; `t` lists every topic's end. */
  | { k: 'close'; t: [number, number][] }
  /** The read cursor of topic `id` is at offset `next` (the next entry to deliver). */
  | { k: 'cursor'; id: number; next: number }
  /** Format 2: `cursor` for many topics in one record, as pairs [id, next]. */
  | { k: 'cursors'; t: [number, number][] }
  /** Entries of topic `id` before offset `start` were consumed and their files deleted. */
  | { k: 'trim'; id: number; start: number }
  /**
   * Restates topics as [id, name, start, cursor]. With `s` (format 2): every topic whose
   * name, start or cursor was last stated in a segment of sequence <= `s`, so meta blocks in
   * those segments are obsolete. Without `s` (format 1): every topic, so meta blocks that end
   * before it are obsolete.
   */
  | { k: 'snapshot'; t: [number, string, number, number][]; s?: number }
  /** Named consumers: consumer `c` (an id > 0 of this shard) is called `name`. */
  | { k: 'consumer'; c: number; name: string }
  /** Named consumers: committed positions of named consumer `c`, as pairs [topic id, next]. */
  | { k: 'positions'; c: number; t: [number, number][] }
  /**
   * Named consumers: every named consumer of the shard, as [id, name, [[topic id, next], ...]]:
   * replaces what earlier records said of named consumers (a consumer it omits is gone).
   * Written right after each snapshot record, so that meta blocks a snapshot makes obsolete
   * never hold the only statement of a consumer.
   */
  | { k: 'consumers'; c: [number, string, [number, number][]][] }
  /** Named consumers: consumer `c` was deleted with its positions. */
  | { k: 'dropConsumer'; c: number };

/**
 * Named consumers a shard keeps positions for, at most (wal.consumer: ERR_WALRUS_CONSUMER_LIMIT
 * beyond). Each costs its positions (~150 bytes of worker memory per topic it reads, and ~12
 * bytes in every `consumers` record, which follows each snapshot), so their number is bounded
 * for recovery and memory as topics are.
 */
export const MAX_CONSUMERS = 1024;

// Plain maps, no shared record structures: every meta record decodes on its own.
const packr = new Packr({ useRecords: false, moreTypes: false });
/**
 * Topic names must come back byte for byte. msgpackr decodes long strings with a default
 * TextDecoder when its native string extractor is absent, and that strips a leading U+FEFF
 * (the byte-order mark): "\ufeffx" came back as "x", so the topic lost its entries and later
 * hid another topic (issue 11, item 5). Names are therefore written as msgpack bin (their
 * UTF-8 bytes) and decoded here without BOM handling; strings (logs written before) are
 * still read.
 */
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const utf8Bytes = (name: string): Uint8Array => Buffer.from(name, 'utf8');

export function encodeMeta(m: MetaRecord): Uint8Array {
  switch (m.k) {
    case 'topic':
      return packr.pack({ k: m.k, id: m.id, name: utf8Bytes(m.name) });
    case 'snapshot': {
      const t = m.t.map(([id, name, start, cursor]) => [id, utf8Bytes(name), start, cursor]);
      return packr.pack(m.s === undefined ? { k: m.k, t } : { k: m.k, t, s: m.s });
    }
    case 'topics':
      return packr.pack({ k: m.k, t: m.t.map(([id, name]) => [id, utf8Bytes(name)]) });
    case 'consumer':
      return packr.pack({ k: m.k, c: m.c, name: utf8Bytes(m.name) });
    case 'consumers':
      return packr.pack({ k: m.k, c: m.c.map(([c, name, t]) => [c, utf8Bytes(name), t]) });
    default:
      return packr.pack(m);
  }
}

/** A topic as a snapshot record restates it. */
export interface SnapshotTopic {
  readonly id: number;
  readonly name: string;
  readonly start: number;
  readonly cursor: number;
}

/**
 * `{ k: 'snapshot', t }` or `{ k: 'snapshot', t, s }` up to the array `t`, as msgpackr writes
 * them: a map16 (plain objects always get one), then the fixstr keys and values in order.
 */
const SNAPSHOT_HEAD = Buffer.from([0xde, 0x00, 0x02, 0xa1, 0x6b, 0xa8, ...Buffer.from('snapshot'), 0xa1, 0x74]);
const SNAPSHOT_HEAD_S = Buffer.from([0xde, 0x00, 0x03, 0xa1, 0x6b, 0xa8, ...Buffer.from('snapshot'), 0xa1, 0x74]);
const S_KEY = [0xa1, 0x73];

/**
 * The payload of a snapshot record restating `topics`: the bytes encodeMeta writes for
 * `{ k: 'snapshot', t: [[id, name, start, cursor], ...], s }` (test/properties.test.ts checks
 * they are equal), written straight from the topics into one buffer of the exact size. A
 * deletion restates up to every topic of its shard: through encodeMeta, 50,000 topics took
 * about 25 MB of entry arrays, name buffers and msgpackr's growing buffer, all alive until
 * the encoding ended, so they went to the worker's old generation and stayed there until its
 * next full collection.
 */
export function encodeSnapshot(topics: Iterable<SnapshotTopic>, s?: number): Uint8Array {
  let count = 0;
  let size = SNAPSHOT_HEAD.length + (s === undefined ? 0 : S_KEY.length + numberBytes(s));
  for (const t of topics) {
    const n = Buffer.byteLength(t.name, 'utf8');
    size += 1 + numberBytes(t.id) + binHeaderBytes(n) + n + numberBytes(t.start) + numberBytes(t.cursor);
    count++;
  }
  size += count < 0x10 ? 1 : count < 0x10000 ? 3 : 5;
  const out = Buffer.allocUnsafeSlow(size); // every byte is written below
  const head = s === undefined ? SNAPSHOT_HEAD : SNAPSHOT_HEAD_S;
  out.set(head);
  let p = head.length;
  if (count < 0x10) out[p++] = 0x90 | count;
  else if (count < 0x10000) {
    out[p++] = 0xdc;
    p = out.writeUInt16BE(count, p);
  } else {
    out[p++] = 0xdd;
    p = out.writeUInt32BE(count, p);
  }
  for (const t of topics) {
    out[p++] = 0x94;
    p = writeNumber(out, p, t.id);
    const n = Buffer.byteLength(t.name, 'utf8');
    if (n < 0x100) {
      out[p++] = 0xc4;
      out[p++] = n;
    } else if (n < 0x10000) {
      out[p++] = 0xc5;
      p = out.writeUInt16BE(n, p);
    } else {
      out[p++] = 0xc6;
      p = out.writeUInt32BE(n, p);
    }
    p += out.write(t.name, p, n, 'utf8');
    p = writeNumber(out, p, t.start);
    p = writeNumber(out, p, t.cursor);
  }
  if (s !== undefined) {
    out[p++] = S_KEY[0]!;
    out[p++] = S_KEY[1]!;
    p = writeNumber(out, p, s);
  }
  if (p !== size) throw new Error(`walrus-ts internal error: snapshot record of ${p} bytes, ${size} expected`);
  return out;
}

/** Bytes of a bin header for `n` bytes. */
function binHeaderBytes(n: number): number {
  return n < 0x100 ? 2 : n < 0x10000 ? 3 : 5;
}

/** Bytes msgpackr writes for the number `v` (writeNumber). */
function numberBytes(v: number): number {
  if (v >>> 0 === v) return v < 0x80 ? 1 : v < 0x100 ? 2 : v < 0x10000 ? 3 : 5;
  if (v >> 0 === v) return v >= -0x20 ? 1 : v >= -0x80 ? 2 : v >= -0x8000 ? 3 : 5;
  return 9;
}

/**
 * Writes `v` at `p` as msgpackr does with useRecords: false and no float32: the smallest
 * integer format for 32-bit integers, else a float64; returns the position after it.
 */
function writeNumber(out: Buffer, p: number, v: number): number {
  if (v >>> 0 === v) {
    if (v < 0x80) out[p++] = v;
    else if (v < 0x100) {
      out[p++] = 0xcc;
      out[p++] = v;
    } else if (v < 0x10000) {
      out[p++] = 0xcd;
      p = out.writeUInt16BE(v, p);
    } else {
      out[p++] = 0xce;
      p = out.writeUInt32BE(v, p);
    }
  } else if (v >> 0 === v) {
    if (v >= -0x20) out[p++] = 0x100 + v;
    else if (v >= -0x80) {
      out[p++] = 0xd0;
      out[p++] = v + 0x100;
    } else if (v >= -0x8000) {
      out[p++] = 0xd1;
      p = out.writeInt16BE(v, p);
    } else {
      out[p++] = 0xd2;
      p = out.writeInt32BE(v, p);
    }
  } else {
    out[p++] = 0xcb;
    p = out.writeDoubleBE(v, p);
  }
  return p;
}

/** A name field: bin (UTF-8 bytes) or, as older logs wrote it, a string; null if neither. */
function decodeName(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (!(v instanceof Uint8Array)) return null;
  try {
    return utf8.decode(v);
  } catch {
    return null;
  }
}

/** Decodes a meta payload; returns a reason string when it is not a valid meta record. */
export function decodeMeta(bytes: Uint8Array): MetaRecord | string {
  let v: unknown;
  try {
    v = packr.unpack(bytes);
  } catch (err) {
    return `undecodable meta record (${(err as Error).message})`;
  }
  if (typeof v !== 'object' || v === null) return 'meta record is not a map';
  const m = v as { k?: unknown; id?: unknown; name?: unknown; t?: unknown };
  switch (m.k) {
    case 'topic': {
      const name = decodeName(m.name);
      if (isId(m.id) && m.id > 0 && name !== null) return { k: 'topic', id: m.id, name };
      return 'malformed topic record';
    }
    case 'cursor':
      if (isId(m.id) && m.id > 0 && isOffset((m as { next?: unknown }).next)) return { k: 'cursor', id: m.id, next: (m as { next: number }).next };
      return 'malformed cursor record';
    case 'trim': {
      const start = (m as { start?: unknown }).start;
      if (isId(m.id) && m.id > 0 && isOffset(start)) return { k: 'trim', id: m.id, start };
      return 'malformed trim record';
    }
    case 'snapshot': {
      if (!Array.isArray(m.t)) return 'malformed snapshot record';
      const t: [number, string, number, number][] = [];
      for (const x of m.t as unknown[]) {
        if (!Array.isArray(x) || x.length !== 4) return 'malformed snapshot record';
        const e = x as unknown[];
        const name = decodeName(e[1]);
        if (name === null || !isId(e[0]) || e[0] <= 0 || !isOffset(e[2]) || !isOffset(e[3])) return 'malformed snapshot record';
        t.push([e[0], name, e[2], e[3]]);
      }
      const seq = (m as { s?: unknown }).s;
      if (seq === undefined) return { k: 'snapshot', t };
      if (isOffset(seq) && seq > 0) return { k: 'snapshot', t, s: seq };
      return 'malformed snapshot record';
    }
    case 'topics': {
      if (!Array.isArray(m.t)) return 'malformed topics record';
      const t: [number, string][] = [];
      for (const x of m.t as unknown[]) {
        if (!Array.isArray(x) || x.length !== 2) return 'malformed topics record';
        const name = decodeName(x[1]);
        if (name === null || !isId(x[0]) || x[0] <= 0) return 'malformed topics record';
        t.push([x[0], name]);
      }
      return { k: 'topics', t };
    }
    case 'cursors':
      if (isPairs(m.t)) return { k: 'cursors', t: m.t };
      return 'malformed cursors record';
    case 'consumer':
    case 'positions':
    case 'consumers':
    case 'dropConsumer':
      return decodeConsumerRecord(m.k, m as Record<string, unknown>);
    case 'sync':
    case 'close':
      if (Array.isArray(m.t) && m.t.every((p) => Array.isArray(p) && p.length === 2 && isId(p[0]) && isOffset(p[1]))) {
        return { k: m.k, t: m.t as [number, number][] };
      }
      return `malformed ${m.k} record`;
    default:
      return `unknown meta record kind ${JSON.stringify(m.k)}`;
  }
}

/** The named consumers' records (decodeMeta's cases for them). */
function decodeConsumerRecord(k: 'consumer' | 'positions' | 'consumers' | 'dropConsumer', m: Record<string, unknown>): MetaRecord | string {
  switch (k) {
    case 'consumer': {
      const c = m.c;
      const name = decodeName(m.name);
      if (isId(c) && c > 0 && name !== null) return { k: 'consumer', c, name };
      return 'malformed consumer record';
    }
    case 'positions': {
      const c = m.c;
      if (isId(c) && c > 0 && isPairs(m.t)) return { k: 'positions', c, t: m.t };
      return 'malformed positions record';
    }
    case 'consumers': {
      const list = m.c;
      if (!Array.isArray(list)) return 'malformed consumers record';
      const out: [number, string, [number, number][]][] = [];
      for (const x of list as unknown[]) {
        if (!Array.isArray(x) || x.length !== 3) return 'malformed consumers record';
        const name = decodeName(x[1]);
        if (!isId(x[0]) || x[0] <= 0 || name === null || !isPairs(x[2])) return 'malformed consumers record';
        out.push([x[0], name, x[2]]);
      }
      return { k: 'consumers', c: out };
    }
    case 'dropConsumer': {
      const c = m.c;
      if (isId(c) && c > 0) return { k: 'dropConsumer', c };
      return 'malformed dropConsumer record';
    }
  }
}

/** Pairs [topic id > 0, offset]. */
function isPairs(v: unknown): v is [number, number][] {
  return Array.isArray(v) && v.every((p) => Array.isArray(p) && p.length === 2 && isId(p[0]) && p[0] > 0 && isOffset(p[1]));
}

function isId(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 && v < 2 ** 32;
}

function isOffset(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}
