// The embedded-database peers: lmdb-js, better-sqlite3 (WAL mode, a queue table) and
// classic-level (LevelDB). Each stores payload `seq` under key `seq`, so a read-back in key
// order returns the records in the order they were written.
//
// Each package is imported when its peer is opened, so that one that failed to install costs
// only its own rows (reported as problems), not the whole comparison.
import path from 'node:path';

export const lmdb = {
  name: 'lmdb',
  note: "encoding 'binary', keyEncoding 'uint32', no compression, overlappingSync off; none: noSync; group: one transactionSync per batch (LMDB syncs at commit); record x1: putSync (a synced transaction each); x16/x256: put() (lmdb-js commits the puts queued meanwhile in one synced transaction)",
  levels: ['none', 'group', 'record'],
  concurrent: true,
  async open(dir, level, data, inFlight = 1) {
    const { open: openLmdb } = await import('lmdb');
    const db = openLmdb({ path: path.join(dir, 'lmdb'), encoding: 'binary', keyEncoding: 'uint32', compression: false, cache: false, noSync: level === 'none', overlappingSync: false });
    return {
      writeBatch(seq, count) {
        db.transactionSync(() => {
          for (let k = 0; k < count; k++) db.putSync(seq + k, data.payloadAt(seq + k));
        });
      },
      writeOne: inFlight > 1 ? (seq) => db.put(seq, data.payloadAt(seq)) : (seq) => void db.putSync(seq, data.payloadAt(seq)),
      readAll(check, sampleEvery) {
        let entries = 0;
        let bytes = 0;
        for (const { key, value } of db.getRange()) {
          if (entries % sampleEvery === 0) check(key, value);
          entries++;
          bytes += value.length;
        }
        return { entries, bytes };
      },
      close: () => db.close(),
    };
  },
};

export const sqlite = {
  name: 'better-sqlite3',
  note: 'journal_mode WAL, table queue(id INTEGER PRIMARY KEY, topic TEXT, data BLOB); none: synchronous OFF; group and record: synchronous FULL (in WAL mode NORMAL does not sync at commit), one transaction per batch or per record',
  levels: ['none', 'group', 'record'],
  async open(dir, level, data) {
    const { default: Database } = await import('better-sqlite3');
    const db = new Database(path.join(dir, 'queue.db'));
    db.pragma('journal_mode = WAL');
    db.pragma(`synchronous = ${level === 'none' ? 'OFF' : 'FULL'}`);
    db.exec('CREATE TABLE queue (id INTEGER PRIMARY KEY, topic TEXT NOT NULL, data BLOB NOT NULL)');
    const insert = db.prepare('INSERT INTO queue (id, topic, data) VALUES (?, ?, ?)');
    const batch = db.transaction((seq, count) => {
      for (let k = 0; k < count; k++) insert.run(seq + k, 'bench', data.payloadAt(seq + k));
    });
    return {
      writeBatch(seq, count) {
        batch(seq, count);
      },
      writeOne(seq) {
        insert.run(seq, 'bench', data.payloadAt(seq));
      },
      readAll(check, sampleEvery) {
        let entries = 0;
        let bytes = 0;
        for (const [id, blob] of db.prepare('SELECT id, data FROM queue ORDER BY id').raw().iterate()) {
          if (entries % sampleEvery === 0) check(id, blob);
          entries++;
          bytes += blob.length;
        }
        return { entries, bytes };
      },
      close: () => db.close(),
    };
  },
};

/** An 8-byte big-endian key, so that LevelDB's byte order is the write order. */
function levelKey(seq) {
  const k = Buffer.allocUnsafe(8);
  k.writeUInt32BE(Math.floor(seq / 2 ** 32), 0);
  k.writeUInt32BE(seq >>> 0, 4);
  return k;
}

export const level = {
  name: 'classic-level',
  note: "keyEncoding/valueEncoding 'buffer', default options (4 MiB write buffer, snappy); none: batch() per batch; group: batch() with sync: true; record: put() with sync: true (LevelDB merges concurrent writers into one log write + sync)",
  levels: ['none', 'group', 'record'],
  concurrent: true,
  async open(dir, lvl, data) {
    const { ClassicLevel } = await import('classic-level');
    const db = new ClassicLevel(path.join(dir, 'level'), { keyEncoding: 'buffer', valueEncoding: 'buffer' });
    await db.open();
    const sync = lvl !== 'none';
    return {
      writeBatch(seq, count) {
        const ops = new Array(count);
        for (let k = 0; k < count; k++) ops[k] = { type: 'put', key: levelKey(seq + k), value: data.payloadAt(seq + k) };
        return db.batch(ops, { sync });
      },
      writeOne(seq) {
        return db.put(levelKey(seq), data.payloadAt(seq), { sync: true });
      },
      async readAll(check, sampleEvery) {
        let entries = 0;
        let bytes = 0;
        const it = db.iterator();
        try {
          for (let got; (got = await it.nextv(1000)).length > 0; ) {
            for (const [key, value] of got) {
              if (entries % sampleEvery === 0) check(key.readUInt32BE(0) * 2 ** 32 + key.readUInt32BE(4), value);
              entries++;
              bytes += value.length;
            }
          }
        } finally {
          await it.close();
        }
        return { entries, bytes };
      },
      close: () => db.close(),
    };
  },
};
