// The C++ mirror of the layout: native/layout.h must be exactly what scripts/gen-layout.mjs
// renders from NATIVE_LAYOUT, and the addon must have been compiled with those values.
import fs from 'node:fs';

import { describe, expect, it } from 'vitest';

import { NATIVE_LAYOUT } from '../dist/shared/format/layout.js';
import { native } from '../dist/shared/native.js';
import { renderLayoutHeader } from '../scripts/layout-header.mjs';

const headerUrl = new URL('../native/layout.h', import.meta.url);

describe('native layout', () => {
  it('native/layout.h is what `npm run gen:layout` writes from NATIVE_LAYOUT', () => {
    // On failure: run `npm run gen:layout`, then rebuild the addon.
    expect(fs.readFileSync(headerUrl, 'utf8')).toBe(renderLayoutHeader(NATIVE_LAYOUT));
  });

  it('defines one macro per constant with its value', () => {
    const header = fs.readFileSync(headerUrl, 'utf8');
    const defined = Object.fromEntries(
      [...header.matchAll(/^#define WALRUS_([A-Z0-9_]+)\s+\(?(-?\d+)\)?$/gm)].map((m) => [m[1], Number(m[2])]),
    );
    expect(defined).toEqual(NATIVE_LAYOUT);
  });

  it('the loaded addon was compiled with every NATIVE_LAYOUT constant', () => {
    expect(Object.keys(native.layout)).toEqual(Object.keys(NATIVE_LAYOUT));
    expect({ ...native.layout }).toEqual({ ...NATIVE_LAYOUT });
    expect(Object.isFrozen(native.layout)).toBe(true);
  });

  it('refuses constants the header cannot represent', () => {
    expect(() => renderLayoutHeader({ lower_case: 1 })).toThrow(/UPPER_SNAKE_CASE/);
    expect(() => renderLayoutHeader({ HALF: 0.5 })).toThrow(/32-bit integer/);
    expect(() => renderLayoutHeader({ HUGE: 2 ** 31 })).toThrow(/32-bit integer/);
    expect(() => renderLayoutHeader({})).toThrow(RangeError);
    expect(renderLayoutHeader({ NEGATIVE: -1 })).toContain('#define WALRUS_NEGATIVE (-1)');
  });
});
