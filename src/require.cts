/**
 * The package's CommonJS entry (the `require` condition of its exports map). walrus-ts is an
 * ES module without top-level await, which `require()` loads on Node 22.12+ (and 20.19+)
 * (require(esm)); on a Node without that, this says so instead of Node's generic error.
 */
const features = process.features as { require_module?: boolean };
if (features.require_module !== true) {
  throw Object.assign(
    new Error(
      `walrus-ts is an ES module: require('walrus-ts') needs Node 22.12+ (require of ES modules), this is Node ${process.versions.node}` +
        " (or it was started with --no-experimental-require-module). Use import { Walrus } from 'walrus-ts' or await import('walrus-ts') instead.",
    ),
    { code: 'ERR_REQUIRE_ESM' },
  );
}
module.exports = require('./index.js');
