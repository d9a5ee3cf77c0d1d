// Small statistics helpers.

export function median(xs) {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const m = v.length >> 1;
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

/** Nearest-rank percentile (p in [0, 100]) of an unsorted array. */
export function percentile(xs, p) {
  const v = Float64Array.from(xs).sort();
  if (v.length === 0) return NaN;
  const rank = Math.ceil((p / 100) * v.length);
  return v[Math.min(v.length - 1, Math.max(0, rank - 1))];
}

export function min(xs) {
  return xs.reduce((a, b) => Math.min(a, b), Infinity);
}

export function max(xs) {
  return xs.reduce((a, b) => Math.max(a, b), -Infinity);
}
