/** Checks shared by the fault-injection suites (faults.test.ts, file-faults.test.ts). */
import { expect } from 'vitest';
import type { Walrus } from '../dist/index.js';

/** The fields of an ERR_WALRUS_IO failure that the fault suites compare. */
export interface IoFailure {
  code?: string;
  errno?: number;
  errnoCode?: string;
  syscall?: string;
  message?: string;
}

/**
 * After a failure the shard refuses every later append, appendAndSync and sync with the same
 * error (`match`); `failure` itself must match it too.
 */
export async function expectRefusedAfter(wal: Walrus, failure: IoFailure, match: IoFailure, label: string): Promise<void> {
  expect(failure, `${label}: ${failure.message}`).toMatchObject(match);
  expect(() => wal.append('a', 'after the failure')).toThrow(expect.objectContaining(match));
  await expect(wal.appendAndSync('b', 'after the failure')).rejects.toMatchObject(match);
  await expect(wal.sync()).rejects.toMatchObject(match);
}

/**
 * Closes `wal` and returns the case's failure: `failure` if the workload met one, else the
 * error close itself met (a fault that hit close's own write or fsync), which must match.
 */
export async function closeAfterFault(wal: Walrus, failure: IoFailure | undefined, match: IoFailure, label: string): Promise<IoFailure | undefined> {
  const closed = await wal.close().then(
    () => undefined,
    (e: unknown) => e as IoFailure,
  );
  if (failure === undefined && closed !== undefined) {
    expect(closed, `${label}, at close`).toMatchObject(match);
    return closed;
  }
  return failure;
}
