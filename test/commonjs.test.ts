/** require('walrus-ts') from CommonJS: works where Node can require ES modules, says why where not. */
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { projectDir } from './package-link.js';

const PROGRAM = `
const { Walrus, FsyncSchedule, WalrusError } = require('walrus-ts');
(async () => {
  const wal = await Walrus.open({ backend: 'memory', fsync: FsyncSchedule.SyncEach });
  wal.append('orders', 'from CommonJS');
  const e = await wal.readNext('orders');
  console.log(e.offset, e.data.toString(), typeof WalrusError);
  await wal.close();
})();
`;

function run(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const dir = projectDir();
  writeFileSync(join(dir, 'main.cjs'), PROGRAM);
  const r = spawnSync(process.execPath, [...args, 'main.cjs'], { cwd: dir, encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const requireEsm = (process.features as { require_module?: boolean }).require_module === true;

describe('require("walrus-ts")', () => {
  it.runIf(requireEsm)('loads the package from a CommonJS file (Node 22.12+)', () => {
    // Before: ERR_PACKAGE_PATH_NOT_EXPORTED (the exports map had only an import condition).
    expect(run([])).toEqual({ status: 0, stdout: '0 from CommonJS function\n', stderr: '' });
  });

  it('fails with a clear message where require of ES modules is off (or missing)', () => {
    const r = run(requireEsm ? ['--no-experimental-require-module'] : []);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/walrus-ts is an ES module: require\('walrus-ts'\) needs Node 22\.12\+/);
    expect(r.stderr).toMatch(/await import\('walrus-ts'\)/);
  });
});
