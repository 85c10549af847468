/**
 * sha256 digests of content slices computed where the bytes were read (the tree reader's worker
 * thread), handed to the chunker alongside the bytes so the main thread need not hash them again.
 *
 * Keyed by memory, not by object: a chunk that is a view of the same ArrayBuffer at a digested
 * slice's offset and length has that digest. A chunk copied elsewhere (pieces not aligned with
 * chunks) finds nothing and is hashed as usual.
 */

interface DigestedSlices {
  /** The slice size and the digested content's length (from its offset). */
  sliceSize: number;
  length: number;
  /** 32 bytes per slice, in order. */
  digests: Buffer;
}

/** ArrayBuffer → byte offset of digested content in it → its slices (small files share one buffer). */
const known = new WeakMap<ArrayBufferLike, Map<number, DigestedSlices>>();

/** Records that `digests` (32 bytes each) are the sha256 of consecutive `sliceSize` slices of `bytes`. */
export function rememberDigests(bytes: Buffer, sliceSize: number, digests: Buffer): void {
  let inBuffer = known.get(bytes.buffer);
  if (!inBuffer) {
    inBuffer = new Map();
    known.set(bytes.buffer, inBuffer);
  }
  inBuffer.set(bytes.byteOffset, { sliceSize, length: bytes.length, digests });
}

/** Pieces share a buffer only when small (64 KiB): at most 16 slices of the smallest chunk size. */
const MAX_SHARED_SLICES = 16;

/** The sha256 of `chunk` if it is exactly one remembered slice. */
export function knownDigest(chunk: Buffer): Buffer | undefined {
  const inBuffer = known.get(chunk.buffer);
  if (!inBuffer) return undefined;
  const first = inBuffer.values().next().value as DigestedSlices;
  if (inBuffer.size === 1) return sliceDigest(chunk, inBuffer.keys().next().value as number, first);
  // Several pieces in one buffer (small files): the chunk is slice k of the piece k slices before it.
  for (let k = 0; k < MAX_SHARED_SLICES; k++) {
    const base = chunk.byteOffset - k * first.sliceSize;
    const slices = inBuffer.get(base);
    if (slices) return sliceDigest(chunk, base, slices);
  }
  return undefined;
}

function sliceDigest(chunk: Buffer, base: number, slices: DigestedSlices): Buffer | undefined {
  const at = chunk.byteOffset - base;
  if (at < 0 || at >= slices.length || at % slices.sliceSize !== 0) return undefined;
  if (chunk.length !== Math.min(slices.sliceSize, slices.length - at)) return undefined;
  const index = at / slices.sliceSize;
  return slices.digests.subarray(index * 32, index * 32 + 32);
}
