'use strict';
/**
 * The portable I/O path's fault seams (src/shared/portable/seams.ts), test suite only: the
 * package's `imports` map gives this file for `#walrus-portable-faults` to a process run
 * with `--conditions=walrus-test`, and the package does not ship it (package.json "files").
 * The counterpart of the addon's test build (native/test/faults.cc and seams.cc), with the
 * same plans, the same variables and the same errors:
 *
 *   - a file plan per thread (testSeams.fileFault(kind, nth, errno)): the nth call of that
 *     file operation of the binding fails with errno before it reaches node:fs;
 *   - a plan per IoContext (injectFault(kind, nth, errno, short)): the nth write (one
 *     writevSync) or fdatasync of its writeBatch fails; with `short`, that write writes half
 *     of its bytes for real and the next one, the attempt to complete it, fails.
 *
 * WALRUS_TEST_FAULT = "<write|fsync|map>:<nth>:<errno>[:short]" or "file.<kind>:<nth>:<errno>",
 * read by beforeRecovery/onContexts from the worker's environment. 'map' plans count mmap
 * calls, which this path never makes. Power loss is not simulated here:
 * WALRUS_TEST_POWERLOSS and testSeams.powerLoss throw a TypeError that says so.
 */

const FILE_OPS = ['open', 'pwritev', 'fdatasync', 'fsync', 'fallocate', 'ftruncate', 'rename', 'unlink', 'pread'];
const MAX_SAFE = Number.MAX_SAFE_INTEGER;

/** This thread's file plan (one module instance per thread). */
let filePlan = { op: '', nth: 0, err: 0, seen: 0 };

function index(value, max, name) {
  if (typeof value !== 'number') throw new TypeError(`${name} must be a number`);
  if (!Number.isInteger(value) || value < 0 || value > max) throw new RangeError(`${name} must be an integer from 0 to ${max}, got ${value}`);
  return value;
}

function setFileFault(kind, nth, errno) {
  const usage = `kind must be one of ${FILE_OPS.map((k) => `'${k}'`).join(', ')}`;
  if (typeof kind !== 'string' || !FILE_OPS.includes(kind)) throw new TypeError(usage);
  index(nth, MAX_SAFE, 'nth');
  index(errno, 4095, 'errno');
  if (nth > 0 && errno === 0) throw new RangeError('errno must be an integer from 1 to 4095, got 0');
  filePlan = nth === 0 ? { op: '', nth: 0, err: 0, seen: 0 } : { op: kind, nth, err: errno, seen: 0 };
}

function variable(env, name) {
  if (typeof env !== 'object' || env === null) throw new TypeError('env must be an object (the worker\'s process.env)');
  const v = env[name];
  if (v === undefined) return '';
  if (typeof v !== 'string') throw new TypeError(`${name} must be a string`);
  return v;
}

const FAULT = /^(write|fsync|map|file\.([a-z]+)):([1-9]\d*):([1-9]\d*)(:short)?$/;

function parseFault(env) {
  const text = variable(env, 'WALRUS_TEST_FAULT');
  if (text === '') return null;
  const m = FAULT.exec(text);
  const file = m !== null && m[2] !== undefined;
  if (m === null || (m[5] !== undefined && m[1] !== 'write') || (file && !FILE_OPS.includes(m[2]))) {
    throw new TypeError(
      `WALRUS_TEST_FAULT must be "<write|fsync|map>:<nth>:<errno>[:short]" (short for write only) or "file.<${FILE_OPS.join('|')}>:<nth>:<errno>", got ${JSON.stringify(text)}`,
    );
  }
  return { text, file, kind: file ? m[2] : m[1], nth: Number(m[3]), err: Number(m[4]), short: m[5] !== undefined };
}

function noPowerLoss() {
  throw new TypeError('power loss is simulated only by the test build of the native addon; this thread uses the portable I/O path');
}

const testSeams = Object.freeze({
  beforeRecovery(env) {
    const fault = parseFault(env);
    if (variable(env, 'WALRUS_TEST_POWERLOSS') !== '') noPowerLoss();
    const notes = [];
    if (fault !== null && fault.file) {
      setFileFault(fault.kind, fault.nth, fault.err);
      notes.push(`test fault injected: ${fault.text}`);
    }
    return notes;
  },
  onContexts(env, contexts) {
    const fault = parseFault(env);
    if (!Array.isArray(contexts)) throw new TypeError('contexts must be an array of IoContext');
    if (fault === null || fault.file) return [];
    for (const c of contexts) {
      if (typeof c !== 'object' || c === null || typeof c.injectFault !== 'function') throw new TypeError('contexts must be an array of IoContext');
      c.injectFault(fault.kind, fault.nth, fault.err, fault.short);
    }
    return [`test fault injected: ${fault.text}`];
  },
  powerLoss: noPowerLoss,
  fileFault: setFileFault,
});

/** Counts one `kind` of the running batch against `plan`: whether it is the planned one. */
function hits(plan, kind) {
  if (plan.nth === 0 || plan.kind !== kind) return false;
  return ++plan.seen === plan.nth;
}

exports.hooks = Object.freeze({
  fileFault(op) {
    if (filePlan.nth === 0 || filePlan.op !== op) return 0;
    return ++filePlan.seen === filePlan.nth ? filePlan.err : 0;
  },
  newPlan() {
    return { kind: 'write', nth: 0, err: 0, short: false, seen: 0, failNext: false };
  },
  inject(plan, kind, nth, errno, short) {
    if (kind !== 'write' && kind !== 'fsync' && kind !== 'map') throw new TypeError("kind must be 'write', 'fsync' or 'map'");
    index(nth, MAX_SAFE, 'nth');
    index(errno, 4095, 'errno');
    if (nth > 0 && errno === 0) throw new RangeError('errno must be an integer from 1 to 4095, got 0');
    if (typeof short !== 'boolean') throw new TypeError('short must be a boolean');
    Object.assign(plan, { kind, nth, err: errno, short: short && kind === 'write', seen: 0, failNext: false });
  },
  write(plan, bytes) {
    if (plan.failNext) {
      plan.failNext = false;
      return { fail: plan.err };
    }
    if (!hits(plan, 'write')) return null;
    const half = Math.floor(bytes / 2);
    if (!plan.short || half === 0) return { fail: plan.err };
    plan.failNext = true;
    return { limit: half };
  },
  sync(plan) {
    return hits(plan, 'fsync') ? plan.err : 0;
  },
  testSeams,
});
