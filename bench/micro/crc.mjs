// CRC32C: the addon (hardware instruction where the CPU has one) against @node-rs/crc32, at
// the sizes that matter: a record header, a typical record, a ring drain, a block.
import { crc32c as nodeRsCrc32c } from '@node-rs/crc32';
import { native } from '../../dist/shared/native.js';

export function crcTasks({ all }) {
  const sizes = [
    ['32 B', 32, 1000],
    ['750 B', 750, 1000],
    ['64 KiB', 64 * 1024, 10],
    ['1 MiB', 1024 * 1024, 1],
  ];
  const tasks = [];
  for (const [label, bytes, ops] of sizes) {
    const buf = all.subarray(0, bytes);
    if (native.crc32c(buf) !== nodeRsCrc32c(buf)) throw new Error(`micro/crc: the addon and @node-rs/crc32 disagree on ${label}`);
    tasks.push(
      { name: `crc32c ${label}: addon (${native.crc32cHardware() ? 'hardware' : 'portable'})`, opsPerCall: ops, bytesPerOp: bytes, fn: () => { for (let k = 0; k < ops; k++) native.crc32c(buf); } },
      { name: `crc32c ${label}: @node-rs/crc32`, opsPerCall: ops, bytesPerOp: bytes, fn: () => { for (let k = 0; k < ops; k++) nodeRsCrc32c(buf); } },
    );
  }
  return tasks;
}
