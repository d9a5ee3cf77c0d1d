// Every system of the comparison, in table order. Loading this module loads the peers'
// packages (bench/node_modules), so only the comparison imports it.
import { bare, writev, sonicBoom } from './files.mjs';
import { lmdb, sqlite, level } from './stores.mjs';
import { walrus, walrusBatch, walrusPortable } from './walrus.mjs';

export const SYSTEMS = [walrus, walrusBatch, walrusPortable, bare, writev, sonicBoom, lmdb, sqlite, level];
