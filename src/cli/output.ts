/**
 * Output of the CLI: stdout for results (awaiting 'drain' so a large dump never buffers
 * without bound), stderr for progress and warnings. A closed pipe (`| head`) ends the
 * process quietly with exit code 0, as other Unix tools do.
 */
import { once } from 'node:events';

export interface Out {
  write(text: string): Promise<void>;
  /** A line on stderr (warnings, notes). */
  note(text: string): void;
}

export function stdOut(): Out {
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(0);
    throw err;
  });
  return {
    async write(text: string): Promise<void> {
      if (!process.stdout.write(text)) await once(process.stdout, 'drain');
    },
    note(text: string): void {
      process.stderr.write(`${text}\n`);
    },
  };
}

/** 1536 -> "1.5 KiB". */
export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${n} B` : `${v.toFixed(1)} ${units[u]}`;
}

/** Left-aligned text columns, right-aligned numbers; every row has the header's length. */
export function table(header: string[], rows: (string | number)[][]): string {
  const cells = [header, ...rows.map((r) => r.map(String))];
  const widths = header.map((_, c) => Math.max(...cells.map((r) => r[c]!.length)));
  const numeric = header.map((_, c) => rows.length > 0 && rows.every((r) => typeof r[c] === 'number'));
  return cells
    .map((r) => r.map((cell, c) => (numeric[c] ? cell.padStart(widths[c]!) : cell.padEnd(widths[c]!))).join('  ').trimEnd())
    .join('\n');
}

/** Where progress goes: process.stderr, or a stand-in in tests. */
export interface ProgressSink {
  write(text: string): unknown;
  isTTY?: boolean;
}

/**
 * Progress of a long scan on stderr. On a terminal one line rewritten in place (at most every
 * 100 ms, cleared at the end); otherwise a plain line every 5 s, and none at all for a scan
 * shorter than that, so logs of quick runs stay clean.
 */
export class Progress {
  private done = 0;
  private last: number;
  private shown = false;
  private readonly tty: boolean;

  constructor(
    private readonly label: string,
    private readonly total: number,
    private readonly enabled: boolean,
    private readonly sink: ProgressSink = process.stderr,
    private readonly now: () => number = Date.now,
  ) {
    this.tty = sink.isTTY === true;
    this.last = now();
  }

  add(bytes: number): void {
    this.done += bytes;
    if (!this.enabled) return;
    const now = this.now();
    if (now - this.last < (this.tty ? 100 : 5000)) return;
    this.last = now;
    const pct = this.total > 0 ? Math.min(100, Math.floor((this.done / this.total) * 100)) : 100;
    const text = `${this.label}: ${pct}% (${formatBytes(this.done)} of at most ${formatBytes(this.total)})`;
    this.sink.write(this.tty ? `\r${text}\x1b[K` : `${text}\n`);
    this.shown = true;
  }

  get bytes(): number {
    return this.done;
  }

  end(): void {
    if (this.tty && this.shown) this.sink.write('\r\x1b[K');
  }
}
