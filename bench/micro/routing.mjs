// Topic routing: append()'s lookup of a known topic (a Map hit) against routing a topic seen
// for the first time (UTF-8 encoding and validation of the name, FNV-1a hash, modulo shards).
import { encodeTopic, topicHash } from '../../dist/shared/format/topic.js';

export function routingTasks() {
  const OPS = 1000;
  const names = Array.from({ length: 64 }, (_, k) => `orders.region-${k}.v1`);
  const map = new Map(names.map((name, k) => [name, { id: k, shard: k % 4 }]));
  let sink = 0;
  return [
    {
      name: 'routing: known topic (Map lookup), 64 topics',
      opsPerCall: OPS,
      fn() {
        for (let k = 0; k < OPS; k++) sink += map.get(names[k & 63]).shard;
      },
    },
    {
      name: 'routing: new topic (encode + validate + FNV-1a % 4 shards)',
      opsPerCall: OPS,
      fn() {
        for (let k = 0; k < OPS; k++) sink += topicHash(encodeTopic(names[k & 63])) % 4;
      },
    },
  ];
}
