/**
 * A file read as pieces of chunk slots: the file is cut at multiples of the image's chunk size, slot
 * i holds chunk `file.chunks[i]` (or a hole). Pure. Reads are clamped at end of file, so the only
 * short read is the one that reaches EOF.
 */
import type { FileNode } from '../image/format/index.js';

export interface ReadPiece {
  /** Index into the image's chunk table; null for a hole (reads as zeros). */
  chunk: number | null;
  /** Where the piece starts inside the chunk's uncompressed bytes. */
  offset: number;
  length: number;
}

export function planFileRead(
  file: Pick<FileNode, 'size' | 'chunks'>,
  chunkSize: number,
  offset: number,
  size: number,
): ReadPiece[] {
  const end = Math.min(file.size, offset + size);
  const pieces: ReadPiece[] = [];
  for (let at = offset; at < end; ) {
    const slot = Math.floor(at / chunkSize);
    const within = at - slot * chunkSize;
    const length = Math.min(chunkSize - within, end - at);
    const chunk = file.chunks[slot];
    if (chunk === undefined) throw new RangeError(`file of ${file.size} bytes has no chunk slot ${slot}`);
    pieces.push({ chunk, offset: within, length });
    at += length;
  }
  return pieces;
}

/** Total bytes the pieces cover. */
export function piecesLength(pieces: readonly ReadPiece[]): number {
  let total = 0;
  for (const piece of pieces) total += piece.length;
  return total;
}
