/**
 * Runs before every test file (vitest setupFiles). WALRUS_TEST_BACKEND selects the disk
 * backend that `Walrus.open` uses when a test does not name one: the 'mmap' project of
 * vitest.config.ts sets it, so the same conformance, crash and corruption tests run against
 * both backends. Child processes of crash tests inherit the variable and do the same
 * (test/fixtures/backend.mjs).
 */
import { disableFdBackend, enableFdBackend } from '../dist/index.js';

const backend = process.env.WALRUS_TEST_BACKEND;
if (backend === 'mmap') disableFdBackend();
else if (backend === undefined || backend === 'fd') enableFdBackend();
else throw new Error(`WALRUS_TEST_BACKEND must be 'fd' or 'mmap', got ${JSON.stringify(backend)}`);
