/**
 * EROFS directory data: a sequence of 4 KiB blocks, each holding 12-byte dirents
 * (`nid u64, nameoff u16, file_type u8, reserved u8`) followed by their names back to back.
 * Entries (with `.` and `..`) are sorted by raw bytes across the whole directory and never cross
 * a block; the last block is not padded (`i_size` = 4096·(blocks − 1) + bytes used in the last).
 */

import { DIRENT_SIZE, EROFS_BLOCK_SIZE, MAX_NAME_LENGTH } from './erofs-layout.js';
import { readU64AsNumber } from './extension-header.js';

export interface DirectoryEntry {
  name: Buffer;
  nid: number;
  fileType: number;
}

/** Why a directory block is malformed; the caller adds which directory and block. */
export class DirectoryError extends Error {}

/** How many entries go in each block, for entries (sorted) with these name lengths. */
export function packDirectoryBlocks(nameLengths: readonly number[]): number[] {
  const perBlock: number[] = [];
  let used = EROFS_BLOCK_SIZE;
  for (const length of nameLengths) {
    const need = DIRENT_SIZE + length;
    if (used + need > EROFS_BLOCK_SIZE) {
      perBlock.push(0);
      used = 0;
    }
    perBlock[perBlock.length - 1]! += 1;
    used += need;
  }
  return perBlock;
}

/** `i_size` of a directory whose sorted entries have these name lengths. */
export function directorySize(nameLengths: readonly number[]): number {
  const perBlock = packDirectoryBlocks(nameLengths);
  let first = 0;
  let lastUsed = 0;
  for (const count of perBlock) {
    lastUsed = 0;
    for (let i = first; i < first + count; i++) lastUsed += DIRENT_SIZE + nameLengths[i]!;
    first += count;
  }
  return (perBlock.length - 1) * EROFS_BLOCK_SIZE + lastUsed;
}

/** The directory's data (`directorySize` bytes) for entries already sorted by name bytes. */
export function encodeDirectory(entries: readonly DirectoryEntry[]): Buffer {
  const size = directorySize(entries.map((e) => e.name.length));
  const data = Buffer.alloc(size);
  let first = 0;
  let blockStart = 0;
  for (const count of packDirectoryBlocks(entries.map((e) => e.name.length))) {
    let nameAt = blockStart + count * DIRENT_SIZE;
    for (let i = 0; i < count; i++) {
      const entry = entries[first + i]!;
      const direntAt = blockStart + i * DIRENT_SIZE;
      data.writeBigUInt64LE(BigInt(entry.nid), direntAt);
      data.writeUInt16LE(nameAt - blockStart, direntAt + 8);
      data.writeUInt8(entry.fileType, direntAt + 10);
      entry.name.copy(data, nameAt);
      nameAt += entry.name.length;
    }
    first += count;
    blockStart += EROFS_BLOCK_SIZE;
  }
  return data;
}

/**
 * Parses one directory block (`block` is 4096 bytes, or the tail: `i_size % 4096` bytes).
 * Checks dirent/name bounds and that names are 1–255 bytes without `/` or NUL; order and `.`/`..`
 * are the caller's (they span blocks).
 */
export function decodeDirectoryBlock(block: Buffer): DirectoryEntry[] {
  if (block.length < DIRENT_SIZE + 1)
    throw new DirectoryError(`block of ${block.length} bytes holds no entry`);
  const nameoff0 = block.readUInt16LE(8);
  if (nameoff0 < DIRENT_SIZE || nameoff0 % DIRENT_SIZE !== 0 || nameoff0 >= block.length) {
    throw new DirectoryError(`first nameoff ${nameoff0} is not a multiple of 12 inside the block`);
  }
  const count = nameoff0 / DIRENT_SIZE;
  const entries: DirectoryEntry[] = [];
  for (let i = 0; i < count; i++) {
    const at = i * DIRENT_SIZE;
    const nameoff = block.readUInt16LE(at + 8);
    const end = i + 1 < count ? block.readUInt16LE(at + DIRENT_SIZE + 8) : lastNameEnd(block, nameoff);
    if (nameoff < nameoff0 || end > block.length || end <= nameoff) {
      throw new DirectoryError(
        `entry ${i}: name bytes ${nameoff}..${end} are out of order or outside the block`,
      );
    }
    entries.push({
      name: checkName(block.subarray(nameoff, end), i),
      nid: readU64AsNumber(block, at),
      fileType: block.readUInt8(at + 10),
    });
  }
  return entries;
}

/** The last name of a block ends at the first NUL or at the end of the block. */
function lastNameEnd(block: Buffer, nameoff: number): number {
  if (nameoff >= block.length) return nameoff;
  const nul = block.indexOf(0, nameoff);
  return nul === -1 ? block.length : nul;
}

function checkName(name: Buffer, i: number): Buffer {
  if (name.length > MAX_NAME_LENGTH) throw new DirectoryError(`entry ${i}: name of ${name.length} bytes`);
  if (name.includes(0x2f) || name.includes(0))
    throw new DirectoryError(`entry ${i}: name contains '/' or NUL`);
  return name;
}
