/**
 * What `#walrus-portable-faults` resolves to outside the test suite (package.json
 * "imports"): no fault hooks. See seams.ts.
 */
export const hooks = null;
