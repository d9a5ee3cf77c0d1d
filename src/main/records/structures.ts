/**
 * Where the msgpackr record structures of typed records are kept (see typed.ts).
 *
 * Disk backends: the file `structures.msgpack` in the namespace directory. A new structure
 * is saved before the record that first uses it is even encoded into the ring, by writing
 * the whole list to `structures.msgpack.tmp`, fdatasync, rename over the old file, fsync of
 * the directory. So any record that exists anywhere (ring, page cache, disk) references only
 * structures that are already durable: no crash, kill -9 or power loss can keep a record and
 * lose its structure, and no ordering between shards or blocks is needed. The price is one
 * synchronous fsync on the main thread per new structure; msgpackr shares at most 32
 * structures (later shapes are written inline in each record), so that happens at most 32
 * times over the life of a log.
 *
 * File layout: 8 bytes `WALRUSST`, u32 LE version (1), u32 LE CRC32C of the body, then the
 * body: the structures (an array of arrays of keys) as plain msgpack.
 *
 * Memory backend: the list lives in the instance only, like everything else.
 */
import { join } from 'node:path';
import { Packr } from 'msgpackr';
import { WalrusError, corruptError, ioError } from '../../shared/errors.js';
import { native } from '../../shared/native.js';
import { fsyncDir } from '../../shared/file-io.js';

export const STRUCTURES_FILE = 'structures.msgpack';
const MAGIC = 'WALRUSST';
const VERSION = 1;
const HEADER_BYTES = 16;

/** A saved list of structures: what msgpackr's getStructures / saveStructures talk to. */
export interface StructureStore {
  load(): unknown[];
  /** Makes `structures` durable (disk) before returning; throws ERR_WALRUS_IO if it cannot. */
  save(structures: unknown[]): void;
}

/** Plain msgpack (maps, no records) for the file body. */
const plain = new Packr({ useRecords: false });

export class MemoryStructures implements StructureStore {
  private list: unknown[] = [];
  load(): unknown[] {
    return this.list.slice();
  }
  save(structures: unknown[]): void {
    this.list = structures.slice();
  }
}

export class FileStructures implements StructureStore {
  private readonly path: string;
  constructor(private readonly dir: string) {
    this.path = join(dir, STRUCTURES_FILE);
  }

  load(): unknown[] {
    let fd: number;
    try {
      fd = native.open(this.path, native.constants.O_RDONLY | native.constants.O_CLOEXEC | native.constants.O_NOFOLLOW, 0);
    } catch (err) {
      if ((err as { code?: string }).code === 'ENOENT') return [];
      throw ioError(err, 'opening the typed-record structures failed', this.path);
    }
    let bytes: Buffer;
    try {
      bytes = Buffer.allocUnsafe(native.fstatSize(fd));
      if (native.pread(fd, bytes, 0) !== bytes.length) throw corruptError(this.path, 0, 'structures file shorter than its size');
    } catch (err) {
      throw err instanceof WalrusError ? err : ioError(err, 'reading the typed-record structures failed', this.path);
    } finally {
      native.close(fd);
    }
    return decodeStructures(this.path, bytes);
  }

  save(structures: unknown[]): void {
    const body = plain.pack(structures.map((s) => s));
    const head = Buffer.alloc(HEADER_BYTES);
    head.write(MAGIC, 0, 'latin1');
    head.writeUInt32LE(VERSION, 8);
    head.writeUInt32LE(native.crc32c(body), 12);
    const tmp = `${this.path}.tmp`;
    const { O_RDWR, O_CREAT, O_EXCL, O_CLOEXEC, O_NOFOLLOW } = native.constants;
    let fd = -1;
    try {
      // A .tmp left by a crash is incomplete by definition: the rename never happened.
      try {
        native.unlink(tmp);
      } catch (err) {
        if ((err as { code?: string }).code !== 'ENOENT') throw err;
      }
      fd = native.open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o600);
      native.pwritev(fd, [head, body], 0);
      native.fdatasync(fd);
      native.close(fd);
      fd = -1;
      native.rename(tmp, this.path);
    } catch (err) {
      if (fd >= 0) native.close(fd);
      throw ioError(err, 'saving the typed-record structures failed', tmp);
    }
    fsyncDir(this.dir);
  }
}

function decodeStructures(path: string, bytes: Buffer): unknown[] {
  if (bytes.length < HEADER_BYTES || bytes.toString('latin1', 0, 8) !== MAGIC) throw corruptError(path, 0, 'bad structures file header');
  if (bytes.readUInt32LE(8) !== VERSION) throw corruptError(path, 8, `unsupported structures file version ${bytes.readUInt32LE(8)}`);
  const body = bytes.subarray(HEADER_BYTES);
  if (bytes.readUInt32LE(12) !== native.crc32c(body)) throw corruptError(path, HEADER_BYTES, 'structures file checksum mismatch');
  let list: unknown;
  try {
    list = plain.unpack(body);
  } catch {
    throw corruptError(path, HEADER_BYTES, 'structures file body is not msgpack');
  }
  if (!Array.isArray(list) || !list.every((s) => Array.isArray(s))) throw corruptError(path, HEADER_BYTES, 'structures file body is not a list of structures');
  return list;
}
