/**
 * `walrus-ts dump DIR TOPIC`: a topic's entries with their offsets, read through the
 * engine's read path (src/workers/read/reader.ts `readEntries`, which checks every record's CRC)
 * over the chains the recovery scan accepted: exactly what an open would return.
 */
import { inspect } from 'node:util';
import { READ_ENTRY_FIELDS } from '../shared/messages.js';
import { FileStructures } from '../main/records/structures.js';
import { TYPED_TAG, ValueCodec } from '../main/records/typed.js';
import { readEntries } from '../workers/read/reader.js';
import type { TopicLog } from '../workers/store/model.js';
import { type CommandSpec, type Parsed, CliError, EXIT, choiceOption, intOption, stringOption } from './args.js';
import { lockForReading, namespacePath, openLogView } from './log.js';
import type { Out } from './output.js';

const FORMATS = ['utf8', 'hex', 'base64', 'json'] as const;
type Format = (typeof FORMATS)[number];
/** Entries read per call: bounds memory however long the topic is. */
const CHUNK_ENTRIES = 1000;
const CHUNK_BYTES = 4 << 20;

export const dumpSpec: CommandSpec = {
  name: 'dump',
  usage: 'walrus-ts dump DIR TOPIC [--from N] [--limit N] [--format utf8|hex|base64|json] [--key K] [--json]',
  positionals: ['DIR', 'TOPIC'],
  options: { key: { type: 'string' }, from: { type: 'string' }, limit: { type: 'string' }, format: { type: 'string' } },
  help: `Prints the entries of TOPIC with their offsets, as an open of the log would return them
(every record's CRC is checked; a torn tail is not shown). Never writes to the log; on a
log open by another process, prints a best-effort snapshot with a warning on stderr.

Options:
  --from N     first offset to print (default: the topic's first stored entry)
  --limit N    print at most N entries (default: all)
  --format F   how payloads are shown: utf8 (default; as a JSON string literal, so each
               entry stays on one line), hex, base64, or json (the payload parsed as JSON).
               With utf8 and json, typed records (wal.typed) are shown decoded: utf8 prints
               the value as util.inspect does, json as JSON (bigint as a string, Map and Set
               as arrays, binary as base64)
  --key K      the namespace key the log was opened with (files in DIR/<sanitized K>)
  --json       one JSON document on stdout (fields: docs/CLI.md); payloads as --format
               says, base64 by default
  --help, -h   this text

Output (default): one line per entry: OFFSET <tab> BYTES <tab> PAYLOAD.

Exit codes: 0 done, 64 usage error, 65 an entry is not JSON (--format json) or a typed
  record does not decode,
  66 no such directory, no log in it or no such topic, 74 I/O or checksum error.`,
};

/** A decoded typed value as JSON can carry it: bigint as a string, Map/Set as arrays, bytes as base64. */
function jsonSafe(this: unknown, key: string, value: unknown): unknown {
  // The holder's own value: a Buffer's toJSON() has already replaced `value`.
  const original = (this as Record<string, unknown>)[key];
  if (original instanceof Uint8Array) return Buffer.from(original.buffer, original.byteOffset, original.byteLength).toString('base64');
  if (typeof value === 'bigint') return value.toString();
  if (value instanceof Map) return [...value.entries()];
  if (value instanceof Set) return [...value.values()];
  return value;
}

/** How one entry's payload is shown; `typed` decodes typed records (their first byte, 0xc1, never starts UTF-8 text). */
function render(data: Buffer, format: Format, offset: number, typed: (offset: number, data: Buffer) => unknown): unknown {
  const isTyped = data.length > 1 && data[0] === TYPED_TAG;
  switch (format) {
    case 'utf8':
      return isTyped ? inspect(typed(offset, data), { depth: null, breakLength: Infinity }) : data.toString('utf8');
    case 'hex':
      return data.toString('hex');
    case 'base64':
      return data.toString('base64');
    case 'json':
      if (isTyped) return JSON.parse(JSON.stringify(typed(offset, data), jsonSafe) ?? 'null') as unknown;
      try {
        return JSON.parse(data.toString('utf8')) as unknown;
      } catch {
        throw new CliError(`the entry at offset ${offset} is not JSON (use --format utf8, hex or base64)`, EXIT.dataErr);
      }
    default:
      throw new Error(`walrus internal error: unknown format ${String(format satisfies never)}`);
  }
}

export async function runDump(args: Parsed, out: Out): Promise<number> {
  const [dir, topic] = args.positionals as [string, string];
  const json = args.values.json === true;
  const format = choiceOption(args.values, 'format', FORMATS, json ? 'base64' : 'utf8');
  const from = intOption(args.values, 'from', 0);
  const limit = intOption(args.values, 'limit', Number.MAX_SAFE_INTEGER);
  const ns = namespacePath(dir, stringOption(args.values, 'key', ''));
  const lock = lockForReading(ns);
  const view = openLogView(ns, lock);
  try {
    if (view.live) out.note(`warning: the log in ${ns} is open by another process: showing a best-effort snapshot`);
    const corrupt = view.shards.reduce((n, s) => n + s.scan.corrupt.length, 0);
    // What is shown is what open would return, were it to succeed: say when it would not.
    if (corrupt > 0) out.note(`warning: the log in ${ns} has ${corrupt} corruption(s) of durable data (run verify): showing what precedes them`);
    let found: { t: TopicLog; shard: number } | null = null;
    for (const s of view.shards) {
      for (const t of s.store.topics.values()) if (t.id !== 0 && t.name === topic) found = { t, shard: s.shard };
    }
    if (!found) throw new CliError(`no topic ${JSON.stringify(topic)} in ${ns}`, EXIT.noInput);
    const { t, shard } = found;
    const first = Math.max(from, t.start);
    // Typed records' shared structures are read (never written) from the namespace directory.
    let codec: ValueCodec | null = null;
    const typed = (off: number, data: Buffer): unknown => (codec ??= new ValueCodec(new FileStructures(ns))).decode(topic, off, data);
    if (json) {
      const head = { dir: ns, topic, shard, start: t.start, end: t.complete, from: first, format };
      await out.write(`${JSON.stringify(head).slice(0, -1)},"entries":[`);
    }
    let n = 0;
    let offset = first;
    while (n < limit && offset < t.complete) {
      const got = readEntries(t, offset, Math.min(CHUNK_ENTRIES, limit - n), CHUNK_BYTES);
      const count = got.entries.length / READ_ENTRY_FIELDS;
      if (count === 0) break;
      let text = '';
      for (let k = 0; k < count; k++) {
        const [off, buf, start, length] = got.entries.subarray(k * READ_ENTRY_FIELDS, k * READ_ENTRY_FIELDS + 4) as unknown as number[];
        const data = Buffer.from(got.data[buf!]!, start, length);
        let shown: unknown;
        try {
          shown = render(data, format, off!, typed);
        } catch (err) {
          // The entries before the one that cannot be shown are printed first.
          await out.write(text);
          throw err;
        }
        // utf8 payloads are JSON string literals; a decoded typed value (utf8) is shown as is.
        const quoted = format === 'json' || (format === 'utf8' && !(data.length > 1 && data[0] === TYPED_TAG));
        if (json) text += `${n + k > 0 ? ',' : ''}\n${JSON.stringify({ offset: off, bytes: length, data: shown })}`;
        else text += `${off}\t${length}\t${quoted ? JSON.stringify(shown) : String(shown)}\n`;
        offset = off! + 1;
      }
      n += count;
      await out.write(text);
    }
    if (json) await out.write(`${n > 0 ? '\n' : ''}],"count":${n},"next":${offset}}\n`);
    return EXIT.ok;
  } catch (err) {
    const e = err as { code?: string; message?: string };
    if (e.code === 'ERR_WALRUS_CORRUPT') throw new CliError(`${e.message} (run verify)`, EXIT.ioErr);
    if (e.code === 'ERR_WALRUS_DECODE') throw new CliError(`${e.message} (use --format hex or base64)`, EXIT.dataErr);
    throw err;
  } finally {
    view.close();
  }
}
