import { Command } from 'commander';
import { type BuildSummary, buildImage, type WalkProgress } from '../image/build/index.js';
import { readPrefetchList } from '../image/convert/index.js';
import type { Compressor } from '../image/format/index.js';
import { chunkSizeOption, compressorOption } from './image-options.js';
import { humanBytes } from './progress.js';
import { UserError } from './run.js';

/** `damselfly image build DIR -o OUT`. */
export function imageBuildCommand(): Command {
  return new Command('build')
    .summary('build an accelerated image (bootstrap + chunk blob) from a directory')
    .description(
      'Builds an accelerated image from DIR: OUT/bootstrap (EROFS metadata plus the chunk table) and ' +
        "OUT/blobs/<sha256>, one blob holding every distinct chunk of DIR's files. Files are cut into " +
        'fixed-size chunks; a chunk whose content appeared before (in this image, or in the --chunk-dict ' +
        'image) is stored once, all-zero chunks are stored as holes. DIR is walked without following ' +
        'symlinks or crossing into other filesystems; owners, modes, times, xattrs, hard links, devices, ' +
        'fifos and sockets are kept. Names must be UTF-8. OUT/bootstrap appears only after the blob is ' +
        'durable; a failed build leaves nothing behind.',
    )
    .argument('<dir>', 'directory to build the image from')
    .requiredOption('-o, --output <out>', 'output directory (created if missing)')
    .addOption(chunkSizeOption())
    .addOption(compressorOption())
    .option(
      '--chunk-dict <bootstrap>',
      'bootstrap of an existing image: chunks it already has are referenced (its blobs become part ' +
        'of the new image) instead of stored again',
    )
    .option(
      '--prefetch-files <list>',
      "file of absolute paths in DIR's tree, one per line (`-` = stdin; what `mount --trace` writes): " +
        'fetched first after mount',
    )
    .option('--json', 'print the build summary as JSON')
    .action(async (dir: string, opts) => {
      const prefetch = opts.prefetchFiles ? await readPrefetchList(opts.prefetchFiles) : undefined;
      const controller = new AbortController();
      const onSignal = () => controller.abort();
      process.once('SIGINT', onSignal);
      process.once('SIGTERM', onSignal);
      const progress = !opts.json && process.stderr.isTTY ? new BuildProgressLine() : null;
      try {
        const summary = await buildImage(dir, opts.output, {
          chunkSize: opts.chunkSize as number,
          compressor: opts.compressor as Compressor,
          chunkDict: opts.chunkDict,
          prefetch,
          signal: controller.signal,
          onProgress: progress ? (p) => progress.show(p) : undefined,
        });
        progress?.stop();
        process.stdout.write(opts.json ? `${JSON.stringify(summary, null, 2)}\n` : describeBuild(summary));
      } catch (err) {
        progress?.stop();
        if (controller.signal.aborted) throw new UserError('interrupted; the partial build was removed', 130);
        throw err;
      } finally {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
      }
    });
}

/** One status line on stderr: entries found and file bytes chunked so far, and the rate. */
class BuildProgressLine {
  private readonly started = Date.now();
  private lastDraw = 0;
  private drawn = false;

  show(progress: WalkProgress): void {
    const now = Date.now();
    if (now - this.lastDraw < 100) return;
    this.lastDraw = now;
    const seconds = Math.max((now - this.started) / 1000, 0.001);
    const line =
      `${progress.entries} entries, ${progress.files} files, ${humanBytes(progress.bytesDone)} chunked ` +
      `(${humanBytes(progress.bytesDone / seconds)}/s)`;
    process.stderr.write(`\r${line}\x1b[K`);
    this.drawn = true;
  }

  stop(): void {
    if (this.drawn) process.stderr.write('\r\x1b[K');
    this.drawn = false;
  }
}

/** The human summary: what was built, from what, and how much deduplication saved. */
export function describeBuild(s: BuildSummary): string {
  const seconds = s.elapsedMs / 1000;
  const d = s.dedup;
  const lines = [
    `built ${s.bootstrap} (${humanBytes(s.bootstrapBytes)}) from ${s.source} in ${seconds.toFixed(2)} s ` +
      `(${humanBytes(s.fileBytes / Math.max(seconds, 0.001))}/s)`,
    `  ${s.entries} entries, ${s.files} files${s.hardLinks ? ` (+${s.hardLinks} hard links)` : ''}, ` +
      `${humanBytes(s.fileBytes)} of file data; chunks of ${humanBytes(s.chunkSize)}, ${s.compressor}`,
    `  stored ${d.storedChunks} new chunks: ${humanBytes(d.storedBytes)} → ${humanBytes(d.storedCompressedBytes)}`,
    `  reused ${d.reusedInImageChunks} chunks within the image (${humanBytes(d.reusedInImageBytes)}), ` +
      `${d.reusedFromDictChunks} from the chunk dict (${humanBytes(d.reusedFromDictBytes)}); ` +
      `${d.holeChunks} holes (${humanBytes(d.holeBytes)})`,
    ...s.blobs.map(
      (b) =>
        `  blob ${b.digest}: ${humanBytes(b.compressedSize)}, ${b.chunkCount} chunks, ` +
        (b.path ? `new (${b.path})` : 'from the chunk dict'),
    ),
  ];
  if (s.mountPoints.length > 0) {
    lines.push(`  not descended into ${s.mountPoints.length} mount point(s): ${s.mountPoints.join(', ')}`);
  }
  return `${lines.join('\n')}\n`;
}
