/**
 * The EROFS superblock (128 bytes at byte 1024) and device-table slots, as Damselfly uses them:
 * 4 KiB blocks, no checksum, no shared xattrs, `sb_extslots` 0 (so our extension header at 1152
 * is invisible to the kernel), one device slot per blob.
 */

import {
  DEVICE_SLOT,
  DEVICE_SLOT_SIZE,
  DEVICE_TAG_SIZE,
  EROFS_MAGIC,
  SB,
  SUPERBLOCK_OFFSET,
  VOLUME_NAME_SIZE,
} from './erofs-layout.js';
import { readU64AsNumber } from './extension-header.js';

export interface Superblock {
  magic: number;
  checksum: number;
  featureCompat: number;
  blkszbits: number;
  extslots: number;
  rootNid: number;
  inos: number;
  buildTime: number;
  buildTimeNsec: number;
  blocks: number;
  metaBlkaddr: number;
  xattrBlkaddr: number;
  uuid: Buffer;
  /** Raw 16 bytes; NUL-terminated text or all zero. */
  volumeName: Buffer;
  featureIncompat: number;
  availableComprAlgs: number;
  extraDevices: number;
  devtSlotoff: number;
  dirblkbits: number;
}

export function writeSuperblock(buf: Buffer, sb: Superblock): void {
  const at = (field: number) => SUPERBLOCK_OFFSET + field;
  buf.writeUInt32LE(EROFS_MAGIC, at(SB.magic));
  buf.writeUInt32LE(sb.checksum, at(SB.checksum));
  buf.writeUInt32LE(sb.featureCompat, at(SB.featureCompat));
  buf.writeUInt8(sb.blkszbits, at(SB.blkszbits));
  buf.writeUInt8(sb.extslots, at(SB.extslots));
  buf.writeUInt16LE(sb.rootNid, at(SB.rootNid));
  buf.writeBigUInt64LE(BigInt(sb.inos), at(SB.inos));
  buf.writeBigUInt64LE(BigInt(sb.buildTime), at(SB.buildTime));
  buf.writeUInt32LE(sb.buildTimeNsec, at(SB.buildTimeNsec));
  buf.writeUInt32LE(sb.blocks, at(SB.blocks));
  buf.writeUInt32LE(sb.metaBlkaddr, at(SB.metaBlkaddr));
  buf.writeUInt32LE(sb.xattrBlkaddr, at(SB.xattrBlkaddr));
  sb.uuid.copy(buf, at(SB.uuid), 0, 16);
  sb.volumeName.copy(buf, at(SB.volumeName), 0, VOLUME_NAME_SIZE);
  buf.writeUInt32LE(sb.featureIncompat, at(SB.featureIncompat));
  buf.writeUInt16LE(sb.availableComprAlgs, at(SB.availableComprAlgs));
  buf.writeUInt16LE(sb.extraDevices, at(SB.extraDevices));
  buf.writeUInt16LE(sb.devtSlotoff, at(SB.devtSlotoff));
  buf.writeUInt8(sb.dirblkbits, at(SB.dirblkbits));
}

/** Reads the superblock fields; `buf` must hold at least 1152 bytes. */
export function readSuperblock(buf: Buffer): Superblock {
  const at = (field: number) => SUPERBLOCK_OFFSET + field;
  return {
    magic: buf.readUInt32LE(at(SB.magic)),
    checksum: buf.readUInt32LE(at(SB.checksum)),
    featureCompat: buf.readUInt32LE(at(SB.featureCompat)),
    blkszbits: buf.readUInt8(at(SB.blkszbits)),
    extslots: buf.readUInt8(at(SB.extslots)),
    rootNid: buf.readUInt16LE(at(SB.rootNid)),
    inos: readU64AsNumber(buf, at(SB.inos)),
    buildTime: readU64AsNumber(buf, at(SB.buildTime)),
    buildTimeNsec: buf.readUInt32LE(at(SB.buildTimeNsec)),
    blocks: buf.readUInt32LE(at(SB.blocks)),
    metaBlkaddr: buf.readUInt32LE(at(SB.metaBlkaddr)),
    xattrBlkaddr: buf.readUInt32LE(at(SB.xattrBlkaddr)),
    uuid: Buffer.from(buf.subarray(at(SB.uuid), at(SB.uuid) + 16)),
    volumeName: Buffer.from(buf.subarray(at(SB.volumeName), at(SB.volumeName) + VOLUME_NAME_SIZE)),
    featureIncompat: buf.readUInt32LE(at(SB.featureIncompat)),
    availableComprAlgs: buf.readUInt16LE(at(SB.availableComprAlgs)),
    extraDevices: buf.readUInt16LE(at(SB.extraDevices)),
    devtSlotoff: buf.readUInt16LE(at(SB.devtSlotoff)),
    dirblkbits: buf.readUInt8(at(SB.dirblkbits)),
  };
}

export interface DeviceSlot {
  /** The tag as text up to its first NUL (Damselfly: the blob digest's 64 hex digits). */
  tag: string;
  blocks: number;
  /** Where the device sits in the unified ("flatdev") block address space. */
  mappedBlkaddr: number;
}

export function writeDeviceSlot(buf: Buffer, at: number, slot: DeviceSlot): void {
  buf.write(slot.tag, at + DEVICE_SLOT.tag, DEVICE_TAG_SIZE, 'latin1');
  buf.writeUInt32LE(slot.blocks, at + DEVICE_SLOT.blocks);
  buf.writeUInt32LE(slot.mappedBlkaddr, at + DEVICE_SLOT.mappedBlkaddr);
}

/** Reads slot `index` of a table starting at byte `tableAt`; the caller checks it is in range. */
export function readDeviceSlot(buf: Buffer, tableAt: number, index: number): DeviceSlot {
  const at = tableAt + index * DEVICE_SLOT_SIZE;
  const tagBytes = buf.subarray(at + DEVICE_SLOT.tag, at + DEVICE_SLOT.tag + DEVICE_TAG_SIZE);
  const nul = tagBytes.indexOf(0);
  return {
    tag: tagBytes.toString('latin1', 0, nul === -1 ? DEVICE_TAG_SIZE : nul),
    blocks: buf.readUInt32LE(at + DEVICE_SLOT.blocks),
    mappedBlkaddr: buf.readUInt32LE(at + DEVICE_SLOT.mappedBlkaddr),
  };
}
