/**
 * EROFS superblock checksum (only meaningful with FEATURE_COMPAT_SB_CHKSUM, which Damselfly never
 * sets; the reader verifies it if a bootstrap claims one): CRC-32C, reflected, seed 0xFFFFFFFF and
 * no final XOR, over bytes [1024, 4096) with the checksum field zeroed.
 */

import { EROFS_BLOCK_SIZE, SB, SUPERBLOCK_OFFSET } from './erofs-layout.js';

const CASTAGNOLI_REFLECTED = 0x82f63b78;

const TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let crc = n;
    for (let bit = 0; bit < 8; bit++) crc = crc & 1 ? (crc >>> 1) ^ CASTAGNOLI_REFLECTED : crc >>> 1;
    table[n] = crc >>> 0;
  }
  return table;
})();

export function superblockChecksum(block0: Buffer): number {
  const covered = Buffer.from(block0.subarray(SUPERBLOCK_OFFSET, EROFS_BLOCK_SIZE));
  covered.writeUInt32LE(0, SB.checksum);
  let crc = 0xffffffff;
  for (const byte of covered) crc = TABLE[(crc ^ byte) & 0xff]! ^ (crc >>> 8);
  return crc >>> 0;
}
