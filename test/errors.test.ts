/** WalrusError as users see it printed. */
import { inspect } from 'node:util';
import { describe, expect, it } from 'vitest';
import { WalrusError } from '../dist/index.js';

describe('WalrusError', () => {
  it('prints only the fields it has (no errno: undefined, syscall: undefined, ...)', () => {
    const closed = new WalrusError('ERR_WALRUS_CLOSED', 'the instance is closed');
    expect(Object.keys(closed).sort()).toEqual(['code', 'name']);
    expect(inspect(closed)).not.toContain('undefined');
    const decode = new WalrusError('ERR_WALRUS_DECODE', 'entry 3 is not a typed record', { topic: 't', offset: 3 });
    expect(Object.keys(decode).sort()).toEqual(['code', 'name', 'offset', 'topic']);
    expect(inspect(decode)).toMatch(/offset: 3,\s+topic: 't'/);
    expect(inspect(decode)).not.toContain('undefined');
    const io = new WalrusError('ERR_WALRUS_IO', 'write failed', { errno: 5, syscall: 'pwritev', errnoCode: 'EIO', file: '/x' });
    expect(io).toMatchObject({ errno: 5, syscall: 'pwritev', errnoCode: 'EIO', file: '/x' });
  });
});
