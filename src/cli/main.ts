#!/usr/bin/env node
/**
 * The walrus-ts command line: `walrus-ts <command> ...` (docs/CLI.md). Expected failures
 * (usage errors, missing logs, I/O errors) print one line on stderr and exit with the code
 * docs/CLI.md gives; only a bug in the CLI itself prints a stack (exit 70).
 */
import { readFileSync } from 'node:fs';
import { benchSpec, runBench } from './bench.js';
import { type CommandSpec, type Parsed, CliError, EXIT, UsageError, parseCommand } from './args.js';
import { dumpSpec, runDump } from './dump.js';
import { inspectSpec, runInspect } from './inspect.js';
import { type Out, stdOut } from './output.js';
import { runVerify, verifySpec } from './verify.js';

interface Command {
  spec: CommandSpec;
  run(args: Parsed, out: Out): Promise<number>;
}

const COMMANDS: readonly Command[] = [
  { spec: inspectSpec, run: runInspect },
  { spec: verifySpec, run: runVerify },
  { spec: dumpSpec, run: runDump },
  { spec: benchSpec, run: runBench },
];

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

function overview(): string {
  return `walrus-ts: tools for walrus-ts logs (inspect, verify and dump never change a log)

Usage:
${COMMANDS.map((c) => `  ${c.spec.usage}`).join('\n')}
  walrus-ts --version

Run \`walrus-ts <command> --help\` for a command's options, output and exit codes.
Human-readable output by default; --json prints one JSON document (docs/CLI.md).
`;
}

async function main(argv: string[]): Promise<number> {
  const out = stdOut();
  const [name, ...rest] = argv;
  if (name === undefined) {
    process.stderr.write(`walrus-ts: missing command\n\n${overview()}`);
    return EXIT.usage;
  }
  if (name === '--help' || name === '-h' || name === 'help') {
    await out.write(overview());
    return EXIT.ok;
  }
  if (name === '--version' || name === '-v') {
    await out.write(`${version()}\n`);
    return EXIT.ok;
  }
  const cmd = COMMANDS.find((c) => c.spec.name === name);
  if (!cmd) {
    process.stderr.write(`walrus-ts: unknown command ${JSON.stringify(name)}\n\n${overview()}`);
    return EXIT.usage;
  }
  try {
    const args = parseCommand(cmd.spec, rest);
    if (args.help) {
      await out.write(`Usage: ${cmd.spec.usage}\n\n${cmd.spec.help}\n`);
      return EXIT.ok;
    }
    return await cmd.run(args, out);
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`walrus-ts ${name}: ${err.message}\nUsage: ${cmd.spec.usage}\n(walrus-ts ${name} --help for details)\n`);
      return EXIT.usage;
    }
    if (err instanceof CliError) {
      process.stderr.write(`walrus-ts ${name}: ${err.message}\n`);
      return err.exitCode;
    }
    const e = err as NodeJS.ErrnoException;
    if (typeof e.code === 'string' && typeof e.syscall === 'string') {
      // A failed system call (permissions, a file removed under a live log): expected, no stack.
      process.stderr.write(`walrus-ts ${name}: ${e.message}\n`);
      return EXIT.ioErr;
    }
    if (typeof e.code === 'string' && e.code.startsWith('ERR_WALRUS_')) {
      process.stderr.write(`walrus-ts ${name}: ${e.message}\n`);
      return e.code === 'ERR_WALRUS_IO' ? EXIT.ioErr : EXIT.internal;
    }
    process.stderr.write(`walrus-ts ${name}: internal error (a bug: please report it)\n${(err as Error).stack ?? String(err)}\n`);
    return EXIT.internal;
  }
}

process.exitCode = await main(process.argv.slice(2));
