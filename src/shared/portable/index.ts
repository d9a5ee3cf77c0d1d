/**
 * The portable I/O path: the whole NativeBinding (native.ts) on node:fs and `@node-rs/crc32`,
 * for platforms where the addon cannot load (macOS, Windows, musl, no compiler) or when it
 * is asked for (WALRUS_NATIVE=0, or the `io: 'portable'` option for a log's shard workers).
 * Same on-disk bytes and the same guarantees as the addon's pwritev path (fdatasync after
 * every durable batch); what it lacks is listed in docs/ARCHITECTURE.md, "The two I/O paths":
 * io_uring, the 'mmap' and 'memory' backends (ERR_WALRUS_ADDON_REQUIRED), fallocate
 * (segments grow with ftruncate), CPU pinning, background close and sync.
 *
 * Files by concern: checksums.ts (CRC32C and the frame walks), files.ts (file operations),
 * io-context.ts (writeBatch), errors.ts (addon-shaped errors), seams.ts (test fault hooks).
 */
import { NATIVE_LAYOUT } from '../format/layout.js';
import type { NativeBinding } from '../native.js';
import { crc32c, crc32cHardware, sealFrames, sealRun, verifyFrames } from './checksums.js';
import * as files from './files.js';
import { PortableIoContext } from './io-context.js';
import { hooks } from './seams.js';

export const portableBinding: NativeBinding = Object.freeze({
  crc32c,
  crc32cHardware,
  sealFrames,
  verifyFrames,
  sealRun,
  open: files.open,
  memfdCreate(): number {
    throw files.addonRequired("the 'memory' backend");
  },
  close: files.close,
  closeInBackground: files.closeInBackground,
  datasyncInBackground: files.datasyncInBackground,
  backgroundSyncResult: files.backgroundSyncResult,
  backgroundSyncSyscall: files.backgroundSyncSyscall,
  pread: files.pread,
  pwritev: files.pwritev,
  fdatasync: files.fdatasync,
  fsync: files.fsync,
  fallocate: files.fallocate,
  ftruncate: files.ftruncate,
  fstatSize: files.fstatSize,
  rename: files.rename,
  unlink: files.unlink,
  flock: files.flock,
  /** node:fs cannot pin a thread: false, as where the kernel refuses. */
  setAffinity: (): boolean => false,
  // No thread-exit hook without the addon: a producer thread that ends without close() keeps
  // its slot (docs/ARCHITECTURE.md, "Producer threads").
  markOnThreadExit: (): null => null,
  cancelThreadExitMark: (): void => {},
  uringSupported: (): boolean => false,
  IoContext: PortableIoContext,
  constants: files.constants,
  layout: Object.freeze({ ...NATIVE_LAYOUT }),
  ...(hooks === null ? {} : { testSeams: hooks.testSeams }),
});
