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
