// Benchmark knobs from the command line and the environment. A flag `--name=value` (or
// `--name value`) wins over the environment variable; both win over the default.

/** The raw value of `--<flag>=v` / `--<flag> v`, else of environment variable `envName`; undefined when neither is set. */
export function rawArg(flag, envName) {
  const argv = process.argv;
  for (let i = 2; i < argv.length; i++) {
    const a = argv[i];
    if (a.startsWith(`--${flag}=`)) return a.slice(flag.length + 3);
    if (a === `--${flag}` && i + 1 < argv.length && !argv[i + 1].startsWith('--')) return argv[i + 1];
  }
  const env = envName ? process.env[envName] : undefined;
  return env === undefined || env === '' ? undefined : env;
}

/** Whether the bare flag `--<flag>` is given (or environment variable `envName` is '1'). */
export function hasFlag(flag, envName) {
  return process.argv.includes(`--${flag}`) || (envName !== undefined && process.env[envName] === '1');
}

function parseNum(raw, what, dflt, minimum) {
  if (raw === undefined) return dflt;
  const v = Number(raw);
  if (!Number.isFinite(v) || v < minimum) throw new Error(`${what} must be a number >= ${minimum}, got ${JSON.stringify(raw)}`);
  return v;
}

/** A number from `--<flag>` or `envName`, or `dflt`; throws below `minimum`. */
export function numArg(flag, envName, dflt, minimum = 1) {
  return parseNum(rawArg(flag, envName), `--${flag}${envName ? ` / ${envName}` : ''}`, dflt, minimum);
}

/** The number in environment variable `name`, or `dflt` when it is unset or empty; throws below `minimum`. */
export function envNum(name, dflt, minimum = 1) {
  const raw = process.env[name];
  return parseNum(raw === '' ? undefined : raw, name, dflt, minimum);
}

/** The comma-separated names of `--<flag>=a,b` (which wins) or of environment variable `envName`, as a Set; null when neither is given. */
export function listArg(flag, envName) {
  const raw = rawArg(flag, envName);
  if (!raw) return null;
  return new Set(raw.split(',').map((s) => s.trim()).filter(Boolean));
}

/**
 * A duration in seconds: a plain number is seconds; `500ms`, `3s`, `2m` are accepted too.
 */
export function secondsArg(flag, envName, dflt) {
  const raw = rawArg(flag, envName);
  if (raw === undefined) return dflt;
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(raw.trim());
  if (!m) throw new Error(`--${flag} / ${envName} must be a duration such as 10, 10s, 500ms or 2m, got ${JSON.stringify(raw)}`);
  const v = Number(m[1]);
  const secs = m[2] === 'ms' ? v / 1000 : m[2] === 'm' ? v * 60 : v;
  if (!(secs > 0)) throw new Error(`--${flag} / ${envName} must be > 0, got ${JSON.stringify(raw)}`);
  return secs;
}

/**
 * The walrus fsync knob: `sync-each`, `no-fsync`, `async` (the library's default schedule,
 * milliseconds(200)) or `<n>ms`. Returns { label, make(FsyncSchedule) }: the schedule is built
 * by the caller, which has the library loaded.
 */
export function fsyncArg(flag, envName, dflt = 'async') {
  const raw = (rawArg(flag, envName) ?? dflt).trim();
  if (raw === 'sync-each') return { label: raw, make: (S) => S.SyncEach };
  if (raw === 'no-fsync') return { label: raw, make: (S) => S.NoFsync };
  if (raw === 'async') return { label: 'async (200ms)', make: (S) => S.milliseconds(200) };
  const m = /^(\d+)ms$/.exec(raw);
  if (m) return { label: raw, make: (S) => S.milliseconds(Number(m[1])) };
  throw new Error(`--${flag} / ${envName} must be sync-each, no-fsync, async or <n>ms, got ${JSON.stringify(raw)}`);
}
