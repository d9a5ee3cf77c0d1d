import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Each test file runs in its own child process: workers, file descriptors and locks of one
    // area never leak into another, and crash tests can kill their own children freely.
    pool: 'forks',
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // In CI also write a JSON report, from which .ci/run prints a plain "N passed, N failed".
    reporters: process.env.CI ? ['default', ['json', { outputFile: '.vitest-report.json' }]] : ['default'],
  },
});
