// The file-based peers: a bare sequential write of 1 MiB blocks (the disk's ceiling as Node
// sees it), a hand-made log written with fs.writevSync, and sonic-boom. The two logs use the
// same hand-made framing (u32 length + payload, see framePayloads) so that they can be read
// back record by record; neither has a checksum.
import fs from 'node:fs';
import path from 'node:path';

const BLOCK = 1024 * 1024;
const READ_CHUNK = 4 * 1024 * 1024;

/** Sum of the lengths of `bufs`. */
function byteLength(bufs) {
  let n = 0;
  for (const b of bufs) n += b.length;
  return n;
}

/**
 * Reads a framed log back in 4 MiB chunks and walks its records (a record cut by the chunk's
 * end is read again at the start of the next chunk). Calls `check(seq, payload)` on every
 * `sampleEvery`-th record.
 */
function readFramed(file, check, sampleEvery) {
  const fd = fs.openSync(file, 'r');
  const buf = Buffer.allocUnsafeSlow(READ_CHUNK);
  let entries = 0;
  let bytes = 0;
  let pos = 0;
  try {
    for (;;) {
      const got = fs.readSync(fd, buf, 0, READ_CHUNK, pos);
      if (got === 0) break;
      let at = 0;
      while (at + 4 <= got) {
        const len = buf.readUInt32LE(at);
        if (at + 4 + len > got) break;
        if (entries % sampleEvery === 0) check(entries, buf.subarray(at + 4, at + 4 + len));
        entries++;
        bytes += len;
        at += 4 + len;
      }
      if (at === 0) throw new Error(`${file}: record at ${pos} is larger than the read chunk or torn`);
      pos += at;
    }
  } finally {
    fs.closeSync(fd);
  }
  return { entries, bytes };
}

export const bare = {
  name: 'bare-1MiB',
  note: 'fs.writeSync of the payload bytes in 1 MiB blocks; read back in 4 MiB chunks without parsing',
  levels: ['none'],
  oneCall: true,
  async open(dir, level, data) {
    const file = path.join(dir, 'bare.dat');
    const fd = fs.openSync(file, 'w');
    let written = 0;
    return {
      writeBatch(seq, count) {
        // The payloads [seq, seq + count) are contiguous in data.all (no wrap in level none).
        const from = data.payloads[seq].byteOffset - data.all.byteOffset;
        const last = data.payloads[seq + count - 1];
        const to = last.byteOffset - data.all.byteOffset + last.length;
        for (let at = from; at < to; ) at += fs.writeSync(fd, data.all, at, Math.min(BLOCK, to - at));
        written = count;
      },
      readAll() {
        const rfd = fs.openSync(file, 'r');
        const buf = Buffer.allocUnsafeSlow(READ_CHUNK);
        let bytes = 0;
        try {
          for (let got; (got = fs.readSync(rfd, buf, 0, READ_CHUNK, bytes)) > 0; ) bytes += got;
        } finally {
          fs.closeSync(rfd);
        }
        return { entries: written, bytes };
      },
      close() {
        fs.closeSync(fd);
      },
    };
  },
};

export const writev = {
  name: 'writevSync',
  note: 'hand-made log: fs.writevSync of the framed records of a batch; fdatasync per batch (group) or per record',
  levels: ['none', 'group', 'record'],
  async open(dir, level, data) {
    const file = path.join(dir, 'writev.log');
    const fd = fs.openSync(file, 'w');
    const durable = level !== 'none';
    return {
      writeBatch(seq, count) {
        const bufs = new Array(count);
        for (let k = 0; k < count; k++) bufs[k] = data.framedAt(seq + k);
        const want = byteLength(bufs);
        const n = fs.writevSync(fd, bufs);
        if (n !== want) throw new Error(`short writev: ${n} of ${want} bytes`);
        if (durable) fs.fdatasyncSync(fd);
      },
      writeOne(seq) {
        const b = data.framedAt(seq);
        for (let at = 0; at < b.length; ) at += fs.writeSync(fd, b, at, b.length - at);
        fs.fdatasyncSync(fd);
      },
      readAll(check, sampleEvery) {
        return readFramed(file, check, sampleEvery);
      },
      close() {
        fs.closeSync(fd);
      },
    };
  },
};

export const sonicBoom = {
  name: 'sonic-boom',
  note: "contentMode 'buffer', the same framing; none: async mode, timed until every byte is written ('write' events); group: async mode, flush() (write + fsync) per batch; record: sync mode with fsync: true (fsyncSync after every write)",
  levels: ['none', 'group', 'record'],
  async open(dir, level, data) {
    const file = path.join(dir, 'sonic.log');
    const { default: SonicBoom } = await import('sonic-boom');
    const sync = level === 'record';
    const sonic = new SonicBoom({ dest: file, sync, fsync: sync, contentMode: 'buffer', append: false });
    if (!sync) await new Promise((resolve, reject) => (sonic.fd >= 0 ? resolve() : sonic.once('ready', resolve).once('error', reject)));
    // 'write' reports the bytes of each completed write: level none waits until every byte
    // handed to write() was written (sonic-boom's own flush() and end() also fsync).
    let submitted = 0;
    let written = 0;
    let waiter = null;
    sonic.on('write', (n) => {
      written += n;
      if (waiter !== null && written >= submitted) waiter();
    });
    const put = (b) => {
      submitted += b.length;
      sonic.write(b);
    };
    return {
      writeBatch(seq, count) {
        for (let k = 0; k < count; k++) put(data.framedAt(seq + k));
        if (level === 'group') return new Promise((resolve, reject) => sonic.flush((err) => (err ? reject(err) : resolve()))); // write, then fsync
        return undefined;
      },
      writeOne(seq) {
        put(data.framedAt(seq)); // sync mode: fs.writeSync, then fs.fsyncSync
      },
      finish() {
        return written >= submitted ? undefined : new Promise((resolve) => (waiter = resolve));
      },
      readAll(check, sampleEvery) {
        return readFramed(file, check, sampleEvery);
      },
      close() {
        return new Promise((resolve) => {
          sonic.once('close', resolve);
          sonic.end();
        });
      },
    };
  },
};
