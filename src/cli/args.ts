/**
 * Command-line parsing for the CLI: one spec per command, node:util parseArgs underneath,
 * and every way a command line can be wrong turned into a UsageError (exit code 64).
 */
import { parseArgs } from 'node:util';

/** Exit codes, after sysexits.h where one fits. docs/CLI.md lists them. */
export const EXIT = {
  ok: 0,
  /** verify: a torn tail (the next open truncates it), no corruption. */
  torn: 1,
  /** verify: corruption of durable data (the next open fails with ERR_WALRUS_CORRUPT). */
  corrupt: 2,
  /** verify: the log is open by another process; a live log is not verified. */
  live: 3,
  usage: 64,
  /** dump --format json: an entry is not JSON. */
  dataErr: 65,
  /** No such directory, no log in it, or no such topic. */
  noInput: 66,
  /** bench --full outside a clone of the repository. */
  unavailable: 69,
  internal: 70,
  ioErr: 74,
} as const;

/** A mistake in the command line: printed with the command's usage, never with a stack. */
export class UsageError extends Error {}

/** An expected failure (missing directory, I/O error, ...): printed as one line, no stack. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
  }
}

export type OptionSpec = { type: 'string' | 'boolean'; short?: string };

export interface CommandSpec {
  name: string;
  /** One line: `walrus-ts inspect DIR [--key K] [--json]`. */
  usage: string;
  /** The rest of `--help`: what it does, options, exit codes. */
  help: string;
  positionals: string[];
  options: Record<string, OptionSpec>;
}

/** Options every command takes. */
export const COMMON_OPTIONS: Record<string, OptionSpec> = {
  help: { type: 'boolean', short: 'h' },
  json: { type: 'boolean' },
  quiet: { type: 'boolean', short: 'q' },
};

export interface Parsed {
  /** Set when --help was given: nothing else was checked. */
  help: boolean;
  positionals: string[];
  values: Record<string, string | boolean | undefined>;
}

export function parseCommand(spec: CommandSpec, argv: string[]): Parsed {
  let parsed: { values: Record<string, unknown>; positionals: string[] };
  try {
    parsed = parseArgs({ args: argv, options: { ...COMMON_OPTIONS, ...spec.options }, allowPositionals: true, strict: true });
  } catch (err) {
    // parseArgs' messages name the option and say what is wrong with it.
    throw new UsageError((err as Error).message);
  }
  const values = parsed.values as Record<string, string | boolean | undefined>;
  if (values.help === true) return { help: true, positionals: parsed.positionals, values };
  const want = spec.positionals.length;
  if (parsed.positionals.length < want) throw new UsageError(`missing ${spec.positionals[parsed.positionals.length]}`);
  if (parsed.positionals.length > want) throw new UsageError(`unexpected argument ${JSON.stringify(parsed.positionals[want])}`);
  for (const [i, p] of parsed.positionals.entries()) {
    if (p === '') throw new UsageError(`${spec.positionals[i]} must not be empty`);
  }
  return { help: false, positionals: parsed.positionals, values };
}

/** A non-negative safe integer option, or `dflt` when absent. */
export function intOption(values: Parsed['values'], name: string, dflt: number, min = 0): number {
  const v = values[name];
  if (v === undefined) return dflt;
  if (typeof v !== 'string' || !/^\d+$/.test(v) || !Number.isSafeInteger(Number(v)) || Number(v) < min) {
    throw new UsageError(`--${name} must be an integer >= ${min}, got ${JSON.stringify(v)}`);
  }
  return Number(v);
}

export function choiceOption<T extends string>(values: Parsed['values'], name: string, choices: readonly T[], dflt: T): T {
  const v = values[name];
  if (v === undefined) return dflt;
  if (typeof v !== 'string' || !(choices as readonly string[]).includes(v)) {
    throw new UsageError(`--${name} must be one of ${choices.join(', ')}, got ${JSON.stringify(v)}`);
  }
  return v as T;
}

export function stringOption(values: Parsed['values'], name: string, dflt: string): string {
  const v = values[name];
  return typeof v === 'string' ? v : dflt;
}
