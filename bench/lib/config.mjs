// Benchmark knobs from the environment and the command line.

/** The number in environment variable `name`, or `dflt` when it is unset or empty; throws below `minimum`. */
export function envNum(name, dflt, minimum = 1) {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return dflt;
  const v = Number(raw);
  if (!Number.isFinite(v) || v < minimum) throw new Error(`${name} must be a number >= ${minimum}, got ${JSON.stringify(raw)}`);
  return v;
}

/** The comma-separated names of `--<flag>=a,b` (which wins) or of environment variable `envName`, as a Set; null when neither is given. */
export function listArg(flag, envName) {
  const cli = process.argv.find((a) => a.startsWith(`--${flag}=`));
  const raw = cli ? cli.slice(flag.length + 3) : process.env[envName];
  if (!raw) return null;
  return new Set(raw.split(',').map((s) => s.trim()).filter(Boolean));
}
