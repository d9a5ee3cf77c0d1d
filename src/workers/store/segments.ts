/**
 * Segment files of one shard at run time: creation (header, first allocation step, fsync of
 * the file and of the directory), allocation of further steps, reads, and the file systems
 * the mmap backend refuses. Their format (names, header, slot grid) is
 * src/shared/format/segment.ts; their in-memory state is Segment (model.ts).
 */
import { randomInt } from 'node:crypto';
import { statfsSync } from 'node:fs';
import { join } from 'node:path';
import { WalrusError, ioError } from '../../shared/errors.js';
import { CREATE_NEW, FILE_MODE, fsyncDir } from '../../shared/file-io.js';
import { FORMAT_VERSION } from '../../shared/format/layout.js';
import { allocationBoundary, encodeSegmentHeader, segmentBytes, segmentName } from '../../shared/format/segment.js';
import { native } from '../../shared/native.js';
import type { Segment } from './model.js';

/**
 * Extends the file to `end` (fallocate, or ftruncate where the file system lacks it; memory
 * segments are sized whole at creation). Not durable until the next fdatasync of the file.
 */
export function allocate(fd: number, from: number, end: number): void {
  try {
    native.fallocate(fd, from, end - from);
  } catch (err) {
    if ((err as { code?: string }).code !== 'EOPNOTSUPP') throw err;
    // Never shorter: a file sized whole at creation is already longer.
    if (native.fstatSize(fd) < end) native.ftruncate(fd, end);
  }
}

/**
 * Creates a segment: exclusive create, header, allocation of its first step, fdatasync,
 * directory fsync. Only then is the file used, so a segment that recovery sees with a valid
 * header was fully set up, and one without is a creation cut short by a crash. The rest of
 * its space is allocated in steps as blocks need it (ShardStore.ensureRoom).
 *
 * With `sizeWhole` the file is also given its whole size (ftruncate: a sparse tail, no
 * space allocated) before that fdatasync, while it holds nothing but its header: every
 * allocation boundary is then durable from the start, and the steps that follow allocate
 * space without changing the size, so none needs an fdatasync. Without it, each step's new
 * size must be made durable before a block goes there, and an fdatasync of a file being
 * written also writes back its dirty data: a NoFsync writer that reached the next step
 * before its background sync had finished waited for that writeback (a quarter of the
 * worker's time in one profile of a million 500-1000 B appends on ext4).
 *
 * With `memory` (the 'memory' backend) the segment is an anonymous memory file instead: no
 * path, sized whole with ftruncate so that its pages are only allocated as blocks are written.
 *
 * With `durable` false (the spare, ShardStore.prepareSpare) the fdatasync and the directory
 * fsync are left to the caller, who must make them before the file takes a block
 * (makeDurable). Until then the file is what a creation cut short by a crash leaves, which
 * recovery removes when it is the last file, as the spare always is.
 */
export function createSegment(
  dir: string,
  shard: number,
  seq: number,
  slots: number,
  blockBytes: number,
  memory = false,
  sizeWhole = false,
  durable = true,
): Segment {
  const path = join(dir, segmentName(shard, seq));
  const salt = randomInt(1, 2 ** 32 - 1);
  const full = segmentBytes(slots, blockBytes);
  const size = memory ? full : allocationBoundary(0, full);
  let fd = -1;
  try {
    fd = memory ? native.memfdCreate(segmentName(shard, seq)) : native.open(path, CREATE_NEW, FILE_MODE);
    native.pwritev(fd, [encodeSegmentHeader(shard, seq, slots, blockBytes, salt)], 0);
    if (memory) native.ftruncate(fd, size);
    else allocate(fd, 0, size);
    if (sizeWhole && size < full) native.ftruncate(fd, full);
    if (durable) native.fdatasync(fd);
  } catch (err) {
    if (fd >= 0) {
      // Ours (O_EXCL): removed, so that no half-made file is left between segments, where
      // recovery would rightly call it corrupt. Best effort: the creation error is the one
      // to report, and recovery removes a last file that is only a header anyway.
      native.close(fd);
      try {
        native.unlink(path);
      } catch {
        // See above.
      }
    }
    throw ioError(err, `creating segment ${path} failed`, path);
  }
  if (!memory && durable) fsyncDir(dir);
  const seg = segmentState({ seq, path, fd, slots, blockBytes, salt, version: FORMAT_VERSION }, 0, size);
  if (sizeWhole) seg.durableAllocated = full;
  return seg;
}

/**
 * The in-memory state of a segment file that holds no block yet: `sealedAt` 0 while it may
 * still take blocks, `size` bytes allocated and durable (creation and recovery fdatasync
 * before any block is written).
 */
export function segmentState(
  id: { seq: number; path: string; fd: number; slots: number; blockBytes: number; salt: number; version: number },
  sealedAt: number,
  size: number,
): Segment {
  return {
    ...id,
    nextSlot: 0,
    blocks: [],
    sealedAt,
    unsynced: false,
    allocated: size,
    durableAllocated: size,
    files: null,
    aheadSync: null,
    aheadEnd: 0,
  };
}

/**
 * Copy-on-write file systems (statfs f_type) on which fallocate does not reserve the space
 * that writing a page back needs: a write fault there can raise SIGBUS on a full disk.
 */
const COPY_ON_WRITE_FILE_SYSTEMS: ReadonlyMap<number, string> = new Map([
  [0x9123683e, 'btrfs'],
  [0x2fc12fc1, 'zfs'],
  [0xca451a4e, 'bcachefs'],
]);

/** Why the mmap backend refuses a file system of statfs type `type`, or null when it does not. */
export function mmapRefusal(type: number): string | null {
  const name = COPY_ON_WRITE_FILE_SYSTEMS.get(type);
  if (name === undefined) return null;
  return `the mmap backend refuses ${name}: on a copy-on-write file system fallocate does not reserve the space a write fault may need, and a full disk would then kill the process with SIGBUS instead of failing with ENOSPC; use backend 'fd' here`;
}

/** Throws ERR_WALRUS_IO (EOPNOTSUPP) when `dir` is on a file system the mmap backend refuses. */
export function checkMmapFileSystem(dir: string): void {
  const why = mmapRefusal(Number(statfsSync(dir).type));
  if (why !== null) throw new WalrusError('ERR_WALRUS_IO', `${why} (${dir})`, { errnoCode: 'EOPNOTSUPP', errno: 95, syscall: 'statfs', file: dir });
}

/**
 * Reads into `buf` from `position` of the segment; returns bytes read. On the mmap backend
 * the context copies from its write window when the range lies in one, else preads.
 */
export function readSegment(seg: Segment, buf: Uint8Array, position: number): number {
  const fd = seg.files !== null ? seg.files.fd(seg) : seg.fd;
  const mapper = seg.files?.mapper ?? null;
  return mapper !== null ? mapper.readMapped(fd, buf, position) : native.pread(fd, buf, position);
}

/**
 * The syncs createSegment left out with `durable` false: the file (its header and size) and
 * its directory entry. Errors are reported as a creation failure of the segment.
 */
export function makeDurable(dir: string, seg: Segment): void {
  try {
    native.fdatasync(seg.fd);
  } catch (err) {
    throw ioError(err, `creating segment ${seg.path} failed`, seg.path);
  }
  fsyncDir(dir);
}
