// Writes native/layout.h from NATIVE_LAYOUT. Needs the compiled TypeScript (`npm run build`,
// which `npm run gen:layout` runs first). With --check it writes nothing and exits 1 when the
// checked-in header differs from the rendered one.
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

import { NATIVE_LAYOUT } from '../dist/shared/format/layout.js';
import { renderLayoutHeader } from './layout-header.mjs';

const headerPath = fileURLToPath(new URL('../native/layout.h', import.meta.url));
const rendered = renderLayoutHeader(NATIVE_LAYOUT);

if (process.argv.includes('--check')) {
  let current = '';
  try {
    current = readFileSync(headerPath, 'utf8');
  } catch (error) {
    if (error.code !== 'ENOENT') throw error;
  }
  if (current !== rendered) {
    console.error(`${headerPath} is out of date: run \`npm run gen:layout\``);
    process.exit(1);
  }
} else {
  writeFileSync(headerPath, rendered);
  console.log(`wrote ${headerPath}`);
}
