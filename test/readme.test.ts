/**
 * Every ```js block of README.md runs as written: as an ES module in a fresh project
 * directory where `walrus-ts` resolves to this package, exiting 0 with nothing on stderr.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PACKAGE_ROOT, projectDir } from './package-link.js';

const README = readFileSync(join(PACKAGE_ROOT, 'README.md'), 'utf8');
const blocks = [...README.matchAll(/^```js\n([\s\S]*?)^```$/gm)].map((m, i) => ({
  index: i + 1,
  line: README.slice(0, m.index).split('\n').length,
  code: m[1]!,
}));

describe('README.md code blocks', () => {
  it('has the blocks this suite runs', () => {
    expect(blocks.length).toBeGreaterThanOrEqual(3);
  });

  it.each(blocks)('block $index (line $line) runs as written', ({ code }) => {
    const dir = projectDir();
    writeFileSync(join(dir, 'block.mjs'), code);
    const r = spawnSync(process.execPath, ['block.mjs'], { cwd: dir, encoding: 'utf8', timeout: 60_000 });
    expect({ status: r.status, signal: r.signal, stderr: r.stderr }).toEqual({ status: 0, signal: null, stderr: '' });
    expect(r.stdout).not.toBe('');
  });
});
