/**
 * Recovery: rebuilds a shard's topics from its segment files.
 *
 * 1. Every segment header is checked; a last segment whose header never made it to disk (and
 *    holds nothing else) is a creation cut short and is removed (probe.ts).
 * 2. Every slot of every segment is probed for a valid block header (magic, CRC, and the salt
 *    derived from the segment's salt: blocks of an earlier incarnation of a file never pass)
 *    (probe.ts).
 * 3. Each topic's blocks are replayed in block-sequence order as one chain: a block continues
 *    the chain only if its first offset is the offset the chain expects, and within a block
 *    records are accepted while their length, CRC, topic, kind, salt, offset and batch
 *    position are all what the chain expects. A batch is accepted only whole
 *    (chain-replay.ts, chains.ts, shared-chain.ts).
 * 4. What the chain could not accept is a torn tail, unless a sync mark in the meta topic
 *    says it had been made durable: then `open` fails with ERR_WALRUS_CORRUPT. Marks count
 *    wherever they are found (marks.ts): after a break in the meta chain, in meta blocks it
 *    dropped, in slots whose block header is damaged; a mark is only written after the fsync
 *    it describes, so it is true even when the records around it are lost.
 * The meta topic (id 0) is replayed first; it names the topics and carries the sync marks
 * (meta-fold.ts). Then the shared chain and each topic's own chain (topics.ts), then the
 * cursors are clamped to what was recovered (cursors.ts).
 *
 * The format's rules live in `scanShard`, which only reads: `recover` runs it and then
 * applies what it found (apply.ts: zeroes torn bytes, removes abandoned and obsolete files,
 * fsyncs); the CLI's `verify`, `inspect` and `dump` run it in 'inspect' mode, which opens the
 * files read-only and collects corruption instead of throwing at the first one. Every phase
 * records what it tears, zeroes or finds corrupt in one `Findings` (findings.ts).
 */
import type { ShardStore } from '../store/store.js';
import { applyScan, obsoleteSegments } from './apply.js';
import { closedCleanly, resumeChains, settleCursors } from './cursors.js';
import { Findings, type RecoveryResult, type ScanMode, type ShardScan } from './findings.js';
import { foldMeta } from './meta-fold.js';
import { probeShard } from './probe.js';
import { replayTopics } from './topics.js';

export type { RecoveryResult, Repair, ScanMode, ShardScan, TornRange } from './findings.js';

export function recover(store: ShardStore, debug: (msg: string) => void): RecoveryResult {
  const scan = scanShard(store, 'recover');
  applyScan(store, scan, debug);
  return { tornBytes: scan.tornBytes, clean: scan.clean };
}

/**
 * Reads a shard's segments into `store` (segments, topic chains, cursors) following every
 * rule of docs/FORMAT.md "Recovery", and reports what recovery would repair. Never writes.
 * The segments' descriptors stay open in `store` (close them with `store.closeFiles()`).
 */
export function scanShard(store: ShardStore, mode: ScanMode, progress?: (bytes: number) => void): ShardScan {
  const findings = new Findings(mode);
  const probe = probeShard(store, findings);
  const meta = foldMeta(store, probe, findings, progress);
  const broken = replayTopics(store, probe, meta, findings, progress);
  settleCursors(store, meta.marks);
  const damaged = findings.corrupt.length > 0 || broken.size > 0 || findings.tornBytes > 0;
  const clean = closedCleanly(store, damaged, meta.last, probe.files);
  resumeChains(store);
  const { tornBytes, torn, corrupt, repairs } = findings;
  return { tornBytes, clean, torn, corrupt, repairs, abandoned: probe.abandoned, obsolete: obsoleteSegments(store, meta.snapshotAt, meta.restatedSeq) };
}
