// Framing: the record header plus the payload copy, into shared memory (the ring) and into
// a plain ArrayBuffer, to show what the SharedArrayBuffer copy costs by itself; then the
// worker's side of framing in the addon: sealing 1000 frames' CRCs, and verifying them as a
// reader does.
import { native } from '../../dist/shared/native.js';
import { RECORD_HEADER_BYTES, RecordKind, recordFootprint } from '../../dist/shared/format/layout.js';

function frameInto(words, bytes, payloads) {
  const positions = new Uint32Array(payloads.length);
  let pos = 0;
  for (let k = 0; k < payloads.length; k++) {
    const p = payloads[k];
    const fp = recordFootprint(p.length);
    const w = pos >> 2;
    words[w + (fp >> 2) - 2] = 0;
    words[w + (fp >> 2) - 1] = 0;
    words[w] = 0;
    words[w + 1] = p.length;
    words[w + 2] = 1;
    words[w + 3] = RecordKind.Entry;
    words[w + 4] = k;
    words[w + 5] = 0;
    words[w + 6] = 0;
    words[w + 7] = 1;
    bytes.set(p, pos + RECORD_HEADER_BYTES);
    positions[k] = pos;
    pos += fp;
  }
  return { positions, end: pos };
}

export function framingTasks({ payloads }) {
  const OPS = 1000;
  const batch = payloads.slice(0, OPS);
  const size = batch.reduce((a, p) => a + recordFootprint(p.length), 0);
  const shared = new SharedArrayBuffer(size);
  const plain = new ArrayBuffer(size);
  const sw = new Int32Array(shared);
  const sb = new Uint8Array(shared);
  const pw = new Int32Array(plain);
  const pb = new Uint8Array(plain);
  const { positions, end } = frameInto(pw, pb, batch);
  native.sealFrames(pb, positions, OPS);
  if (native.verifyFrames(pb, 0, end) !== end) throw new Error('micro/framing: sealed frames do not verify');
  return [
    { name: 'framing: header + 750 B copy into SharedArrayBuffer', opsPerCall: OPS, fn: () => frameInto(sw, sb, batch) },
    { name: 'framing: header + 750 B copy into ArrayBuffer', opsPerCall: OPS, fn: () => frameInto(pw, pb, batch) },
    { name: 'framing: addon sealFrames (CRC32C of header + payload)', opsPerCall: OPS, fn: () => native.sealFrames(pb, positions, OPS) },
    { name: 'framing: addon verifyFrames (reader check)', opsPerCall: OPS, fn: () => native.verifyFrames(pb, 0, end) },
  ];
}
