/**
 * Unsigned 64-bit fields as two little-endian u32 halves (record offsets, block and segment
 * sequence numbers, a block's first offset). Every value walrus-ts stores this way stays
 * below 2^53, so it travels as a JavaScript number; this is the one place that splits and
 * joins them.
 */

export const TWO_32 = 2 ** 32;

/** Low u32 half of `value` (an integer in [0, 2^53)). */
export function u64Lo(value: number): number {
  return value % TWO_32;
}

/** High u32 half of `value` (an integer in [0, 2^53)). */
export function u64Hi(value: number): number {
  return Math.floor(value / TWO_32);
}

/**
 * The number stored as halves `lo` and `hi` (either read as signed or unsigned 32-bit).
 * Exact below 2^53; a damaged high half gives a value at or above 2^53, which never equals
 * an offset or sequence number walrus-ts expects.
 */
export function joinU64(lo: number, hi: number): number {
  return (lo >>> 0) + (hi >>> 0) * TWO_32;
}
