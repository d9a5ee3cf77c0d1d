// Periodic samples of a running benchmark: throughput since the last sample, dirty and
// writeback pages from /proc/meminfo, and the process's RSS, every `intervalMs` (500 ms by
// default, as walrus's own benchmarks do). The caller keeps the counters; the sampler only
// reads them, so sampling adds one timer callback per interval to the measured loop.
import fs from 'node:fs';
import { performance } from 'node:perf_hooks';

/** Dirty and Writeback from /proc/meminfo, in MB (10^6 bytes); NaN where unavailable. */
export function meminfoDirty() {
  try {
    const text = fs.readFileSync('/proc/meminfo', 'utf8');
    const kb = (key) => {
      const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(text);
      return m ? (Number(m[1]) * 1024) / 1e6 : NaN;
    };
    return { dirtyMB: kb('Dirty'), writebackMB: kb('Writeback') };
  } catch {
    return { dirtyMB: NaN, writebackMB: NaN };
  }
}

/**
 * Starts sampling. `read()` returns the current { entries, bytes } totals and `label()` the
 * phase being measured (both called once per sample). `stop()` takes a last sample and
 * returns every sample as { tSec, label, entries, entriesPerSec, mbPerSec, dirtyMB,
 * writebackMB, rssMB }. A sample whose timer fired late still divides by the real interval.
 */
export function startSampler({ read, label = () => '', intervalMs = 500, onSample = () => {} }) {
  const rows = [];
  const t0 = performance.now();
  let last = { t: t0, ...read() };
  const sample = () => {
    const now = performance.now();
    const cur = read();
    const dt = (now - last.t) / 1000;
    const row = {
      tSec: (now - t0) / 1000,
      label: label(),
      entries: cur.entries,
      entriesPerSec: dt > 0 ? (cur.entries - last.entries) / dt : 0,
      mbPerSec: dt > 0 ? (cur.bytes - last.bytes) / 1e6 / dt : 0,
      ...meminfoDirty(),
      rssMB: process.memoryUsage.rss() / 1e6,
    };
    rows.push(row);
    onSample(row);
    last = { t: now, ...cur };
  };
  const timer = setInterval(sample, intervalMs);
  return {
    stop() {
      clearInterval(timer);
      if (performance.now() - last.t > intervalMs / 10) sample();
      return rows;
    },
  };
}

export const SAMPLE_COLUMNS = ['tSec', 'label', 'entries', 'entriesPerSec', 'mbPerSec', 'dirtyMB', 'writebackMB', 'rssMB'];
