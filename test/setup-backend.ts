/**
 * Runs before every test file (vitest setupFiles). WALRUS_TEST_BACKEND selects the disk
 * backend that `Walrus.open` uses when a test does not name one: the 'mmap' project of
 * vitest.config.ts sets it, so the same conformance, crash and corruption tests run against
 * both backends. Child processes of crash tests inherit the variable and do the same
 * (test/fixtures/backend.mjs).
 *
 * The switch is the public default-backend setting: `disableFdBackend()` selects 'mmap' as
 * the default of every later open that names no `backend`, and `enableFdBackend()` 'fd'
 * (nothing is disabled: an explicit `backend` option still wins, which is how the memory
 * runs of test/helpers.ts SEMANTIC_BACKENDS and the tests that compare backends choose
 * theirs). Using it rather than passing `backend` to each of some 200 opens means a test
 * that forgets the option still runs on its project's backend, and it is the path users
 * take, so the suite exercises that too. `enableFdBackend()` is called as well so that the
 * fd project does not depend on the library's initial default.
 */
import { disableFdBackend, enableFdBackend } from '../dist/index.js';

const backend = process.env.WALRUS_TEST_BACKEND;
if (backend === 'mmap') disableFdBackend();
else if (backend === undefined || backend === 'fd') enableFdBackend();
else throw new Error(`WALRUS_TEST_BACKEND must be 'fd' or 'mmap', got ${JSON.stringify(backend)}`);
