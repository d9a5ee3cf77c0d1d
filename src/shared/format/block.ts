/**
 * The block header (docs/FORMAT.md, "Block"): the first bytes of every block, naming its
 * topic, its sequence number, the offset of its first record, its length in slots and the
 * salt its records carry.
 */
import {
  BLK_CRC,
  BLK_FIRST_HI,
  BLK_FIRST_LO,
  BLK_MAGIC,
  BLK_SALT,
  BLK_SEQ_HI,
  BLK_SEQ_LO,
  BLK_SLOTS,
  BLK_TOPIC,
  BLOCK_HEADER_BYTES,
  BLOCK_MAGIC,
} from './layout.js';
import { native } from '../native.js';
import { joinU64, u64Hi, u64Lo } from './u64.js';

export interface BlockHeader {
  topicId: number;
  seq: number;
  first: number;
  slots: number;
  salt: number;
}

export function encodeBlockHeader(h: BlockHeader): Uint8Array {
  const b = new Uint8Array(BLOCK_HEADER_BYTES);
  const dv = new DataView(b.buffer);
  dv.setUint32(BLK_MAGIC, BLOCK_MAGIC, true);
  dv.setUint32(BLK_TOPIC, h.topicId, true);
  dv.setUint32(BLK_SEQ_LO, u64Lo(h.seq), true);
  dv.setUint32(BLK_SEQ_HI, u64Hi(h.seq), true);
  dv.setUint32(BLK_FIRST_LO, u64Lo(h.first), true);
  dv.setUint32(BLK_FIRST_HI, u64Hi(h.first), true);
  dv.setUint32(BLK_SLOTS, h.slots, true);
  dv.setUint32(BLK_SALT, h.salt, true);
  dv.setUint32(BLK_CRC, native.crc32c(b.subarray(0, BLK_CRC)), true);
  return b;
}

/** Decodes a block header; null if it is not a valid one (never written, torn, or garbage). */
export function decodeBlockHeader(b: Uint8Array): BlockHeader | null {
  if (b.length < BLOCK_HEADER_BYTES) return null;
  const dv = new DataView(b.buffer, b.byteOffset, BLOCK_HEADER_BYTES);
  if (dv.getUint32(BLK_MAGIC, true) !== BLOCK_MAGIC) return null;
  if (dv.getUint32(BLK_CRC, true) !== native.crc32c(b.subarray(0, BLK_CRC))) return null;
  return {
    topicId: dv.getUint32(BLK_TOPIC, true),
    seq: joinU64(dv.getUint32(BLK_SEQ_LO, true), dv.getUint32(BLK_SEQ_HI, true)),
    first: joinU64(dv.getUint32(BLK_FIRST_LO, true), dv.getUint32(BLK_FIRST_HI, true)),
    slots: dv.getUint32(BLK_SLOTS, true),
    salt: dv.getUint32(BLK_SALT, true),
  };
}
