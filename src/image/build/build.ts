/**
 * `image build DIR -o OUT`: walks DIR, stores its files' new chunks in one blob
 * (`OUT/blobs/<hex sha256>`), and writes the EROFS bootstrap (`OUT/bootstrap`) once the blob is
 * durable. On any failure everything this run created is removed again.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, open, readFile, realpath, rename, rmdir, stat, unlink } from 'node:fs/promises';
import { dirname, isAbsolute, join, relative, resolve } from 'node:path';
// The list module only (not convert's index): convert builds on build, not the other way round.
import { checkPrefetchPaths } from '../convert/prefetch-list.js';
import {
  type Compressor,
  DEFAULT_CHUNK_SIZE,
  decodeBootstrap,
  encodeBootstrap,
  type ImageBootstrap,
  isValidChunkSize,
} from '../format/index.js';
import { BlobBuilder } from './blob-builder.js';
import { syncDirectory } from './blob-file.js';
import { ChunkDictionary, type DedupFigures } from './chunk-dictionary.js';
import { COMPRESSORS, isCompressor } from './compression.js';
import { type WalkProgress, walkDirectory } from './directory-walker.js';
import { ImageBuildError } from './errors.js';

export interface BuildImageOptions {
  /** Power of two, 4 KiB – 16 MiB; default 1 MiB. */
  chunkSize?: number;
  /** Default `zstd`. `none` writes blobs the kernel can mount as EROFS devices as they are. */
  compressor?: Compressor;
  /** Path of a bootstrap whose chunks (and so blobs) the new image may reference instead of storing. */
  chunkDict?: string;
  /** Absolute paths for the bootstrap's prefetch table (`--prefetch-files`); each must be in the tree. */
  prefetch?: readonly string[];
  signal?: AbortSignal;
  onProgress?: (progress: WalkProgress) => void;
}

export interface BuiltBlob {
  digest: string;
  compressedSize: number;
  uncompressedSize: number;
  chunkCount: number;
  /** Where this run wrote it; null for a blob of the chunk dictionary (referenced, not copied). */
  path: string | null;
}

export interface BuildSummary {
  source: string;
  bootstrap: string;
  bootstrapBytes: number;
  chunkSize: number;
  compressor: Compressor;
  /** Names in the tree (not the root), regular files (hard links once) and their bytes. */
  entries: number;
  files: number;
  fileBytes: number;
  hardLinks: number;
  /** Chunks in the image's chunk table. */
  chunks: number;
  blobs: BuiltBlob[];
  dedup: DedupFigures;
  /** Mount points inside the source, kept as empty directories. */
  mountPoints: string[];
  elapsedMs: number;
}

/** Checks the options users type; throws ImageBuildError EINVAL with the accepted range. */
export function checkBuildOptions(options: Pick<BuildImageOptions, 'chunkSize' | 'compressor'>): void {
  const { chunkSize, compressor } = options;
  if (chunkSize !== undefined && !isValidChunkSize(chunkSize)) {
    throw new ImageBuildError(
      'EINVAL',
      `invalid chunk size ${chunkSize}: must be a power of two from 4 KiB (4096) to 16 MiB (16777216)`,
    );
  }
  if (compressor !== undefined && !isCompressor(compressor)) {
    throw new ImageBuildError('EINVAL', `unknown compressor "${compressor}": use ${COMPRESSORS.join(', ')}`);
  }
}

export async function buildImage(
  dir: string,
  outDir: string,
  options: BuildImageOptions = {},
): Promise<BuildSummary> {
  const started = performance.now();
  checkBuildOptions(options);
  const chunkSize = options.chunkSize ?? DEFAULT_CHUNK_SIZE;
  const compressor = options.compressor ?? 'zstd';
  const source = await sourceDirectory(dir);
  const out = resolve(outDir);
  await checkOutputOutside(source, out);
  const dictionary = options.chunkDict ? await loadChunkDictionary(options.chunkDict) : new ChunkDictionary();
  const created = new CreatedPaths();
  let builder: BlobBuilder | null = null;
  try {
    await created.mkdir(out);
    const blobsDir = join(out, 'blobs');
    await created.mkdir(blobsDir);
    builder = await BlobBuilder.create({
      dictionary,
      blobsDir,
      compressor,
      chunkSize,
      signal: options.signal,
    });
    const walk = await walkDirectory(source, {
      onFileContent: builder.addFile,
      signal: options.signal,
      onProgress: options.onProgress,
      // Pieces of whole chunks let the chunker use them without copying.
      readSize: Math.max(chunkSize, 1024 * 1024),
      // The reader hashes each chunk on its thread; the chunker finds the digests (piece-digests.ts).
      digestSize: chunkSize,
    });
    await builder.finish();
    if (builder.blobFile?.created) created.file(builder.blobFile.path);
    const prefetch = [...(options.prefetch ?? [])];
    checkPrefetchPaths(walk.root, prefetch);
    const tables = dictionary.compact([walk.root]);
    const image: ImageBootstrap = { root: walk.root, chunkSize, ...tables, prefetch };
    const bootstrap = join(out, 'bootstrap');
    const bootstrapBytes = await writeDurably(bootstrap, encodeBootstrap(image), created);
    const dictBlobs = new Set(tables.dictBlobIndexes);
    return {
      source,
      bootstrap,
      bootstrapBytes,
      chunkSize,
      compressor,
      entries: walk.entries,
      files: walk.files,
      fileBytes: walk.fileBytes,
      hardLinks: walk.hardLinks,
      chunks: tables.chunks.length,
      blobs: tables.blobs.map((blob, i) => ({
        digest: blob.digest,
        compressedSize: blob.compressedSize,
        uncompressedSize: blob.uncompressedSize,
        chunkCount: blob.chunkCount,
        path: dictBlobs.has(i) ? null : join(blobsDir, blob.digest.slice('sha256:'.length)),
      })),
      dedup: dictionary.figures,
      mountPoints: walk.mountPoints,
      elapsedMs: performance.now() - started,
    };
  } catch (err) {
    await builder?.abort(err);
    await created.remove();
    throw err;
  }
}

async function sourceDirectory(dir: string): Promise<string> {
  try {
    const path = await realpath(dir);
    if ((await stat(path)).isDirectory()) return path;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  throw new ImageBuildError('EINVAL', `${dir} is not a directory`);
}

/** The output must not be inside the source: the build would read its own blob. */
async function checkOutputOutside(source: string, out: string): Promise<void> {
  const existing = await nearestExisting(out);
  const real = join(await realpath(existing), relative(existing, out));
  const inside = relative(source, real);
  if (inside === '' || (!inside.startsWith('..') && !isAbsolute(inside))) {
    throw new ImageBuildError('EINVAL', `the output ${out} is inside the source directory ${source}`);
  }
}

async function nearestExisting(path: string): Promise<string> {
  for (let p = path; ; p = dirname(p)) {
    try {
      await stat(p);
      return p;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || dirname(p) === p) throw err;
    }
  }
}

async function loadChunkDictionary(path: string): Promise<ChunkDictionary> {
  try {
    const { image } = decodeBootstrap(await readFile(path));
    return ChunkDictionary.fromBootstrap(image);
  } catch (err) {
    if (err instanceof ImageBuildError) throw err;
    throw new ImageBuildError(
      'ECHUNKDICT',
      `cannot use ${path} as a chunk dictionary: ${(err as Error).message}`,
      {
        cause: err,
      },
    );
  }
}

/** Writes a temp file beside `path`, fsyncs it, renames it over `path`, fsyncs the directory. */
async function writeDurably(path: string, bytes: Buffer, created: CreatedPaths): Promise<number> {
  const temp = join(dirname(path), `.${randomBytes(6).toString('hex')}.tmp`);
  created.file(temp);
  const handle = await open(temp, 'wx', 0o644);
  try {
    await handle.writeFile(bytes);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(temp, path);
  created.forget(temp);
  await syncDirectory(dirname(path));
  return bytes.length;
}

/** What this run created, so a failed run can take it back (files first, then directories). */
class CreatedPaths {
  private readonly files = new Set<string>();
  private readonly directories: string[] = [];

  file(path: string): void {
    this.files.add(path);
  }

  forget(path: string): void {
    this.files.delete(path);
  }

  async mkdir(path: string): Promise<void> {
    const first = await mkdir(path, { recursive: true });
    if (!first) return;
    // mkdir -p created `first` and everything below it down to `path`.
    for (let p = path; ; p = dirname(p)) {
      this.directories.push(p);
      if (p === first) break;
    }
  }

  async remove(): Promise<void> {
    for (const file of this.files) await unlink(file).catch(() => undefined);
    // Deepest first; a directory someone else put files in meanwhile stays.
    const deepestFirst = [...this.directories].sort((a, b) => b.length - a.length);
    for (const dir of deepestFirst) await rmdir(dir).catch(() => undefined);
  }
}
