/**
 * sha256 digests of content slices computed where the bytes were read (the tree reader's worker
 * thread), handed to the chunker alongside the bytes so the main thread need not hash them again.
 *
 * Keyed by memory, not by object: a chunk that is a view of the same ArrayBuffer at a digested
 * slice's offset and length has that digest. A chunk copied elsewhere (pieces not aligned with
 * chunks) finds nothing and is hashed as usual.
 */

interface DigestedSlices {
  /** Byte offset of the first slice in the ArrayBuffer, the slice size, and the content length. */
  base: number;
  sliceSize: number;
  length: number;
  /** 32 bytes per slice, in order. */
  digests: Buffer;
}

const known = new WeakMap<ArrayBufferLike, DigestedSlices>();

/** Records that `digests` (32 bytes each) are the sha256 of consecutive `sliceSize` slices of `bytes`. */
export function rememberDigests(bytes: Buffer, sliceSize: number, digests: Buffer): void {
  known.set(bytes.buffer, { base: bytes.byteOffset, sliceSize, length: bytes.length, digests });
}

/** The sha256 of `chunk` if it is exactly one remembered slice. */
export function knownDigest(chunk: Buffer): Buffer | undefined {
  const slices = known.get(chunk.buffer);
  if (!slices) return undefined;
  const at = chunk.byteOffset - slices.base;
  if (at < 0 || at % slices.sliceSize !== 0) return undefined;
  if (chunk.length !== Math.min(slices.sliceSize, slices.length - at)) return undefined;
  const index = at / slices.sliceSize;
  return slices.digests.subarray(index * 32, index * 32 + 32);
}
