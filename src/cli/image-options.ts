import { Option } from 'commander';
import { parseSize } from '../config/index.js';
import { COMPRESSORS } from '../image/build/index.js';
import { DEFAULT_CHUNK_SIZE, isValidChunkSize } from '../image/format/index.js';
import { UserError } from './run.js';

/** `--chunk-size`, shared by `image build` and `image convert`. */
export function chunkSizeOption(): Option {
  return new Option('--chunk-size <size>', 'chunk size: a power of two from 4KiB to 16MiB (e.g. 64KiB, 4MiB)')
    .default(DEFAULT_CHUNK_SIZE, '1MiB')
    .argParser(parseChunkSize);
}

/** `--compressor`, shared by `image build` and `image convert`. */
export function compressorOption(): Option {
  return new Option(
    '--compressor <name>',
    'chunk compression; "none" writes blobs the kernel can mount as EROFS devices as they are',
  )
    .choices(COMPRESSORS)
    .default('zstd');
}

function parseChunkSize(value: string): number {
  let size: number;
  try {
    size = parseSize(value);
  } catch (err) {
    throw new UserError(`--chunk-size: ${(err as Error).message}`);
  }
  if (!isValidChunkSize(size))
    throw new UserError(`--chunk-size must be a power of two from 4KiB to 16MiB, got ${value}`);
  return size;
}
