// Ring publish: what append() does per record on the main thread once its topic is known
// (claim space, frame the header, copy the payload into the SharedArrayBuffer, publish), with
// the consumer's release simulated by moving Tail right after, so the ring never fills and
// no worker takes part.
import { RingProducer } from '../../dist/main/client/producer.js';
import { createRing, RingSlot } from '../../dist/shared/ring.js';
import { RecordKind, recordFootprint } from '../../dist/shared/format/layout.js';

export function ringTasks({ payloads }) {
  const OPS = 1000;
  const producer = new RingProducer(createRing(16 * 1024 * 1024), 100);
  const ctl = producer.v.ctl;
  let offset = 0;
  let i = 0;
  const frameOne = () => {
    const p = payloads[i++ % payloads.length];
    const fp = recordFootprint(p.length);
    const pos = producer.claim(fp);
    producer.writeHeader(pos, fp, p.length, 1, RecordKind.Entry, offset++, 1);
    producer.writePayload(pos, p, p.length);
  };
  const release = () => Atomics.store(ctl, RingSlot.Tail, Atomics.load(ctl, RingSlot.Head));
  return [
    {
      name: 'ring: claim + frame + copy 750 B, publish each record',
      opsPerCall: OPS,
      fn() {
        producer.begin();
        for (let k = 0; k < OPS; k++) {
          frameOne();
          producer.publish();
        }
        release();
      },
    },
    {
      name: 'ring: claim + frame + copy 750 B, one publish per 1000 (batchAppend)',
      opsPerCall: OPS,
      fn() {
        producer.begin();
        for (let k = 0; k < OPS; k++) frameOne();
        producer.publish();
        release();
      },
    },
  ];
}
