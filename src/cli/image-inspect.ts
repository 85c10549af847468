import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { Command } from 'commander';
import { type ImageSummary, listFiles, summarizeImage } from '../image/inspect/index.js';
import { decodeSourceBootstrap, openImageSource } from '../image/source/index.js';
import { checkImage, kernelMountCommands, unpackImage } from '../image/verify/index.js';
import { ByteProgress, humanBytes } from './progress.js';
import { registryClient, withRegistryOptions } from './registry-options.js';
import { UserError } from './run.js';

/** SRC as a build directory or, with the registry flags, a reference. */
function openSource(src: string, opts: { plainHttp?: boolean; creds?: string; platform?: string }) {
  const looksLikeRef = !existsSync(src);
  const client = looksLikeRef
    ? registryClient(opts.plainHttp, [{ flag: '--creds', ref: src, value: opts.creds }])
    : undefined;
  return openImageSource(src, { platform: opts.platform, ...(client ? { client } : {}) });
}

const SRC_HELP = 'an `image build` output directory, or an image reference in a registry';

export function imageInspectCommand(): Command {
  return withRegistryOptions(new Command('inspect'))
    .summary('show what an image holds: files, chunks, blobs, dedup')
    .argument('<src>', SRC_HELP)
    .option('--platform <os/arch[/variant]>', 'which platform of a multi-platform image')
    .option('--files', 'also list every path (with each file’s chunks in --json)')
    .option('--json', 'print JSON')
    .action(async (src: string, opts) => {
      const source = await openSource(src, opts);
      const { image } = decodeSourceBootstrap(source);
      const summary = summarizeImage(image);
      const files = opts.files ? listFiles(image) : undefined;
      if (opts.json) {
        process.stdout.write(`${JSON.stringify({ source: source.name, ...summary, files }, null, 2)}\n`);
        return;
      }
      process.stdout.write(formatSummary(source.name, summary));
      for (const file of files ?? []) {
        const detail =
          file.kind === 'file' ? ` ${file.size}` : file.kind === 'symlink' ? ` -> ${file.target}` : '';
        process.stdout.write(`${file.kind.padEnd(9)} ${file.path}${detail}\n`);
      }
    });
}

function formatSummary(name: string, s: ImageSummary): string {
  const kinds = Object.entries(s.entries)
    .filter(([, n]) => n > 0)
    .map(([kind, n]) => `${n} ${kind}`)
    .join(', ');
  const d = s.dedup;
  const lines = [
    `image:      ${name}`,
    `entries:    ${kinds} (${s.inodes} inodes)`,
    `chunk size: ${humanBytes(s.chunkSize)}`,
    `chunks:     ${s.chunks} unique, ${humanBytes(d.uniqueBytes)} uncompressed`,
    `file data:  ${humanBytes(d.fileBytes)} (${humanBytes(d.holeBytes)} holes, ${humanBytes(d.referencedBytes)} in chunks)`,
    `dedup:      ${d.dedupRatio.toFixed(2)}x (${humanBytes(d.referencedBytes - d.uniqueBytes)} saved); stored ${humanBytes(d.storedBytes)}`,
    `blobs (device-table order):`,
    ...s.blobs.map(
      (b, i) =>
        `  ${i + 1}. ${b.digest} ${b.compressor} ${humanBytes(b.compressedSize)} stored, ` +
        `${humanBytes(b.uncompressedSize)} layout, ${b.chunkCount} chunks`,
    ),
  ];
  if (s.prefetch.length) lines.push(`prefetch:   ${s.prefetch.length} paths`);
  return `${lines.join('\n')}\n`;
}

export function imageCheckCommand(): Command {
  return withRegistryOptions(new Command('check'))
    .summary('verify an image: structure and the digest of every chunk')
    .description(
      'Decodes the bootstrap, checks its structure, then reads every blob and checks every chunk against its ' +
        'digest. Prints each fault found and exits 1 if there is any.',
    )
    .argument('<src>', SRC_HELP)
    .option('--platform <os/arch[/variant]>', 'which platform of a multi-platform image')
    .option('--no-progress', 'do not show the progress bar')
    .action(async (src: string, opts) => {
      const source = await openSource(src, opts);
      const bar = ByteProgress.forTerminal(opts.progress);
      const report = await checkImage(source, {
        onProgress: (done, total) => bar?.show('check', done, total),
      }).finally(() => bar?.stop());
      for (const fault of report.faults.slice(0, 100)) process.stderr.write(`fault: ${fault}\n`);
      if (report.faults.length > 100)
        process.stderr.write(`… and ${report.faults.length - 100} more faults\n`);
      const summary = `${report.blobs} blobs, ${report.chunks} chunks, ${humanBytes(report.bytes)} read`;
      if (report.faults.length > 0)
        throw new UserError(`${source.name}: ${report.faults.length} faults (${summary})`);
      process.stdout.write(`${source.name}: OK (${summary})\n`);
    });
}

export function imageUnpackCommand(): Command {
  return withRegistryOptions(new Command('unpack'))
    .summary('write the bootstrap and uncompressed blobs so the kernel can mount the image')
    .description(
      'Writes OUT/bootstrap and OUT/blobs/<hex>.data (each blob in the uncompressed, 4 KiB-aligned layout the ' +
        'kernel EROFS driver reads), from verified chunks only, and prints the mount commands.',
    )
    .argument('<src>', SRC_HELP)
    .requiredOption('-o, --output <dir>', 'output directory')
    .option('--platform <os/arch[/variant]>', 'which platform of a multi-platform image')
    .option('--no-progress', 'do not show the progress bar')
    .action(async (src: string, opts) => {
      const source = await openSource(src, opts);
      const bar = ByteProgress.forTerminal(opts.progress);
      const result = await unpackImage(source, resolve(opts.output), {
        onProgress: (done, total) => bar?.show('unpack', done, total),
      }).finally(() => bar?.stop());
      process.stdout.write(`unpacked ${source.name} into ${resolve(opts.output)}; mount it with:\n`);
      for (const line of kernelMountCommands(result)) process.stdout.write(`  ${line}\n`);
    });
}
