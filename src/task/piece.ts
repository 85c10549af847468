export const MiB = 1024 * 1024;
export const MIN_PIECE_LENGTH = 4 * MiB;
export const MAX_PIECE_LENGTH = 64 * MiB;
const TARGET_PIECE_COUNT = 500;

/** next_power_of_two(contentLength / 500) clamped to [4 MiB, 64 MiB] (Dragonfly v2). */
export function pieceLengthFor(contentLength: number): number {
  if (contentLength <= 0) return MIN_PIECE_LENGTH;
  let length = 1;
  const target = Math.ceil(contentLength / TARGET_PIECE_COUNT);
  while (length < target) length *= 2;
  return Math.min(MAX_PIECE_LENGTH, Math.max(MIN_PIECE_LENGTH, length));
}

export function pieceCount(contentLength: number, pieceLength: number): number {
  return contentLength <= 0 ? 0 : Math.ceil(contentLength / pieceLength);
}

export interface PieceRange {
  number: number;
  offset: number;
  length: number;
}

export function pieceRange(number: number, contentLength: number, pieceLength: number): PieceRange {
  const offset = number * pieceLength;
  if (number < 0 || offset >= contentLength) throw new RangeError(`piece ${number} is outside the content`);
  return { number, offset, length: Math.min(pieceLength, contentLength - offset) };
}

/** The pieces that cover bytes [start, start + length). */
export function piecesCovering(start: number, length: number, pieceLength: number): number[] {
  if (length <= 0) return [];
  const first = Math.floor(start / pieceLength);
  const last = Math.floor((start + length - 1) / pieceLength);
  return Array.from({ length: last - first + 1 }, (_, i) => first + i);
}
