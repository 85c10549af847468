/**
 * How one chunk's bytes are stored in a blob file, per compressor. The bootstrap's chunk table
 * records `compressed` plus both sizes, so a stored chunk needs no header of its own:
 *
 * - `none`: the raw chunk bytes (`compressed = false`).
 * - `zstd`: exactly one zstd frame (RFC 8878) holding the whole chunk; Frame_Content_Size present
 *   and equal to the chunk's uncompressed size; no dictionary, no checksum; level 3 by default.
 * - `lz4`: exactly one raw LZ4 *block* (the LZ4 block format, no frame header, no size prefix,
 *   no checksum) — what Nydus calls `lz4_block`. lz4-napi's `compressSync` prepends the
 *   uncompressed size as a u32 little-endian; that prefix is stripped before storing and rebuilt
 *   from the chunk table before decoding.
 *
 * With any compressor a chunk that does not shrink is stored raw with `compressed = false`;
 * that decision belongs to the chunker, not to this module.
 */
import { compress as zstdCompress, decompress as zstdDecompress, init as zstdInit } from '@bokuweb/zstd-wasm';
import { compressSync as lz4Compress, uncompressSync as lz4Uncompress } from 'lz4-napi';
import type { Compressor } from '../format/index.js';

export const COMPRESSORS: readonly Compressor[] = ['none', 'zstd', 'lz4'];
export const DEFAULT_ZSTD_LEVEL = 3;

export type CompressionErrorCode =
  /** Unknown compressor name. */
  | 'EINVAL'
  /** zstd used before `prepareCompressor('zstd')` resolved. */
  | 'ENOTREADY'
  /** Stored bytes do not decode, or decode to a length other than the chunk table says. */
  | 'ECORRUPTCHUNK';

export class CompressionError extends Error {
  override readonly name = 'CompressionError';
  constructor(
    readonly code: CompressionErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export function isCompressor(name: unknown): name is Compressor {
  return typeof name === 'string' && (COMPRESSORS as readonly string[]).includes(name);
}

let zstdReady: Promise<void> | undefined;
let zstdLoaded = false;

/**
 * Loads what `compressor` needs (the zstd wasm module; nothing for the others). Idempotent and
 * safe to call concurrently: every caller awaits the same load; a failed load is retried next time.
 */
export function prepareCompressor(compressor: Compressor): Promise<void> {
  if (compressor !== 'zstd' || zstdLoaded) return Promise.resolve();
  zstdReady ??= zstdInit().then(
    () => {
      zstdLoaded = true;
    },
    (err: unknown) => {
      zstdReady = undefined;
      throw err;
    },
  );
  return zstdReady;
}

function requireZstd(): void {
  if (!zstdLoaded) {
    throw new CompressionError('ENOTREADY', "zstd is not loaded: await prepareCompressor('zstd') first");
  }
}

function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Encodes one chunk as described at the top of this file (`none` returns `data` itself). */
export function compressChunk(compressor: Compressor, data: Buffer, zstdLevel = DEFAULT_ZSTD_LEVEL): Buffer {
  switch (compressor) {
    case 'none':
      return data;
    case 'zstd':
      requireZstd();
      return asBuffer(zstdCompress(data, zstdLevel));
    case 'lz4':
      // Drop lz4-napi's u32 size prefix: the chunk table already holds the size.
      return lz4Compress(data).subarray(4);
    default:
      throw new CompressionError('EINVAL', `unknown compressor "${String(compressor)}"`);
  }
}

/**
 * Decodes one stored chunk and checks it has exactly `uncompressedSize` bytes. Stored bytes come from
 * the network: sizes are checked before anything is allocated from them.
 */
export function decompressChunk(compressor: Compressor, stored: Buffer, uncompressedSize: number): Buffer {
  let data: Buffer;
  switch (compressor) {
    case 'none':
      data = stored;
      break;
    case 'zstd':
      data = decodeZstd(stored, uncompressedSize);
      break;
    case 'lz4':
      data = decodeLz4(stored, uncompressedSize);
      break;
    default:
      throw new CompressionError('EINVAL', `unknown compressor "${String(compressor)}"`);
  }
  if (data.length !== uncompressedSize) {
    throw new CompressionError(
      'ECORRUPTCHUNK',
      `${compressor} chunk decoded to ${data.length} bytes, expected ${uncompressedSize}`,
    );
  }
  return data;
}

function decodeZstd(stored: Buffer, uncompressedSize: number): Buffer {
  requireZstd();
  const declared = zstdFrameContentSize(stored);
  if (declared !== uncompressedSize) {
    throw new CompressionError(
      'ECORRUPTCHUNK',
      `zstd chunk declares ${declared ?? 'no'} content size, expected ${uncompressedSize}`,
    );
  }
  try {
    return asBuffer(zstdDecompress(stored));
  } catch (err) {
    throw new CompressionError('ECORRUPTCHUNK', `zstd chunk does not decode: ${(err as Error).message}`, {
      cause: err,
    });
  }
}

function decodeLz4(stored: Buffer, uncompressedSize: number): Buffer {
  const prefixed = Buffer.allocUnsafe(4 + stored.length);
  prefixed.writeUInt32LE(uncompressedSize, 0);
  stored.copy(prefixed, 4);
  try {
    return lz4Uncompress(prefixed);
  } catch (err) {
    throw new CompressionError('ECORRUPTCHUNK', `lz4 chunk does not decode: ${(err as Error).message}`, {
      cause: err,
    });
  }
}

const ZSTD_MAGIC = 0xfd2fb528;

/**
 * Frame_Content_Size from a zstd frame header (RFC 8878 §3.1.1.1), or null when absent or the
 * header is malformed. Read here because the wasm decoder would allocate whatever the frame claims.
 */
export function zstdFrameContentSize(frame: Buffer): number | null {
  if (frame.length < 5 || frame.readUInt32LE(0) !== ZSTD_MAGIC) return null;
  const descriptor = frame[4]!;
  const fcsFlag = descriptor >> 6;
  const singleSegment = (descriptor >> 5) & 1;
  const dictIdBytes = [0, 1, 2, 4][descriptor & 3]!;
  const fcsBytes = [singleSegment ? 1 : 0, 2, 4, 8][fcsFlag]!;
  if (fcsBytes === 0) return null;
  const at = 5 + (singleSegment ? 0 : 1) + dictIdBytes;
  if (frame.length < at + fcsBytes) return null;
  switch (fcsBytes) {
    case 1:
      return frame[at]!;
    case 2:
      return frame.readUInt16LE(at) + 256;
    case 4:
      return frame.readUInt32LE(at);
    default: {
      const size = frame.readBigUInt64LE(at);
      return size <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(size) : null;
    }
  }
}
