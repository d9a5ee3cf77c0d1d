import { defineConfig } from 'vitest/config';
export default defineConfig({
  test: {
    pool: 'forks',
    testTimeout: 60_000,
    hookTimeout: 60_000,
    setupFiles: ['test/setup-backend.ts'],
    projects: [{ extends: true, test: { name: 'mmap', include: ['test/mmap.test.ts', 'test/resources.test.ts'], env: { WALRUS_TEST_BACKEND: 'mmap' } } }],
  },
});
