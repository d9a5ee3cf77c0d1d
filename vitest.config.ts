import { availableParallelism } from 'node:os';
import { defineConfig } from 'vitest/config';

/**
 * The files that the 'mmap' project runs again with WALRUS_TEST_BACKEND=mmap (the default
 * backend of every open that names none, test/setup-backend.ts), and the 'portable' project
 * on the portable I/O path: the conformance, crash, corruption and fault tests. Files about the addon, the ring, the layout and option parsing
 * do not depend on the backend and run once.
 */
const DISK_BACKEND_FILES = [
  'test/append.test.ts',
  'test/consumer.test.ts',
  'test/consumers.test.ts',
  'test/crash.test.ts',
  'test/durability.test.ts',
  'test/enospc.test.ts',
  'test/faults.test.ts',
  'test/fetch.test.ts',
  'test/producers.test.ts',
  'test/recovery.test.ts',
  'test/retention.test.ts',
];

export default defineConfig({
  test: {
    // Each test file runs in its own child process: workers, file descriptors and locks of one
    // area never leak into another, and crash tests can kill their own children freely.
    pool: 'forks',
    // At least two test files at once: vitest's default (cores - 1) runs them one by one on a
    // 2-core machine, where most of a file's time is its shard workers and child processes
    // waiting on I/O. Measured on this 2-core machine: the whole suite in 9 min 18 s with 2,
    // about 13 min with 1, every test passing both ways.
    maxWorkers: Math.max(2, availableParallelism() - 1),
    // The test build of the addon (build/Release/walrus_test.node, `npm run build:test-addon`):
    // the package's imports map gives it to a process run with this condition, and the shard
    // workers inherit it. Only that build has the fault and power-loss seams. Children a test
    // spawns get the flag where they need the seams (test/fixtures/test-addon.mjs); the
    // others load the shipped build.
    execArgv: ['--conditions=walrus-test'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    setupFiles: ['test/setup-backend.ts'],
    // In CI also write a JSON report, from which .ci/run prints a plain "N passed, N failed".
    reporters: process.env.CI ? ['default', ['json', { outputFile: '.vitest-report.json' }]] : ['default'],
    projects: [
      { extends: true, test: { name: 'fd', include: ['test/**/*.test.ts'], env: { WALRUS_TEST_BACKEND: 'fd' } } },
      { extends: true, test: { name: 'mmap', include: DISK_BACKEND_FILES, env: { WALRUS_TEST_BACKEND: 'mmap' } } },
      // The same files on the portable I/O path (src/shared/portable/): WALRUS_NATIVE=0 makes
      // every thread of the test process and of its children use node:fs instead of the addon,
      // 'fd' backend (the only one that path has). Tests that need what only the addon's test
      // build has (the power-loss journal) or backends it lacks skip there, each saying why.
      { extends: true, test: { name: 'portable', include: DISK_BACKEND_FILES, env: { WALRUS_TEST_BACKEND: 'fd', WALRUS_NATIVE: '0' } } },
    ],
  },
});
