/**
 * The portable path's test seams, the counterpart of the addon's test build (native/seams.h):
 * fault plans that make the nth file operation of a thread, or the nth write or fdatasync
 * of a write context's batches, fail with an errno before it reaches node:fs.
 *
 * The code exists only in the test suite. The package's `imports` map resolves
 * `#walrus-portable-faults` to `./dist/shared/portable/no-faults.cjs` (below: no hooks at
 * all) and, in a process run with `--conditions=walrus-test` (the test suite; worker
 * threads inherit it), to `./test/portable-faults.cjs`, which the package does not ship
 * (package.json "files"). So in an installed package no variable can turn a fault on, as with
 * the shipped addon. Power loss is not simulated on this path: the test module's
 * `beforeRecovery` refuses WALRUS_TEST_POWERLOSS with a TypeError.
 */
import { createRequire } from 'node:module';
import type { FileFaultKind, TestSeams } from '../native.js';

/** What a hook tells a write of a batch to do. */
export type WriteVerdict =
  /** Go ahead. */
  | null
  /** Fail with this positive errno, writing nothing. */
  | { fail: number }
  /** Write only the first `bytes` bytes for real (a torn write); the batch goes on. */
  | { limit: number };

/** A write context's fault plan (opaque to the binding). */
export interface ContextPlan {
  readonly __contextPlan: unique symbol;
}

/** The hooks the test module gives the portable binding. */
export interface PortableHooks {
  /** Counts one call of `op` on this thread's file plan: its positive errno when it is the planned one, else 0. */
  fileFault(op: FileFaultKind): number;
  /** A new, empty plan for one IoContext. */
  newPlan(): ContextPlan;
  /** IoContext.injectFault: sets (nth > 0) or clears `plan`. Same checks and errors as the addon's. */
  inject(plan: ContextPlan, kind: unknown, nth: unknown, errno: unknown, short: unknown): void;
  /** Before one writev of a batch of `bytes` bytes. */
  write(plan: ContextPlan, bytes: number): WriteVerdict;
  /** Before one fdatasync of a batch: its positive errno when the plan fails it, else 0. */
  sync(plan: ContextPlan): number;
  /** `native.testSeams` on the portable path. */
  testSeams: TestSeams;
}

const requireSeams = createRequire(import.meta.url);

/** The hooks, or null (always, outside the test suite). */
export const hooks: PortableHooks | null = (requireSeams('#walrus-portable-faults') as { hooks: PortableHooks | null }).hooks;
