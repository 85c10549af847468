import { Command } from 'commander';
import { convertImage, readPrefetchList } from '../image/convert/index.js';
import type { Compressor } from '../image/format/index.js';
import { chunkSizeOption, compressorOption } from './image-options.js';
import { ByteProgress, humanBytes } from './progress.js';
import { registryClient, withRegistryOptions } from './registry-options.js';

export function imageConvertCommand(): Command {
  return withRegistryOptions(new Command('convert'), ['--src-creds', '--dest-creds'])
    .summary('convert an OCI image in a registry into a Damselfly image')
    .description(
      'Pulls SRC_REF (every platform of an index unless --platform picks one), turns each layer into one ' +
        'deduplicated chunk blob and merges all layers into one EROFS bootstrap, then pushes DST_REF: a manifest ' +
        'of blob layers plus a bootstrap layer, with the config kept (diff ids updated). Everything is converted ' +
        'locally first; nothing is tagged unless every step succeeded.',
    )
    .argument('<src_ref>', 'source image, e.g. localhost:5000/app:1.0')
    .argument('<dst_ref>', 'target image (a tag), e.g. localhost:5000/app:1.0-damselfly')
    .addOption(chunkSizeOption())
    .addOption(compressorOption())
    .option(
      '--chunk-dict <ref>',
      'an earlier converted image whose chunks are reused instead of stored again',
    )
    .option(
      '--prefetch-files <list>',
      'file of absolute paths, one per line (`-` = stdin; what `mount --trace` writes): fetched first after mount',
    )
    .option('--platform <os/arch[/variant]>', 'convert only this platform of a multi-platform source')
    .option('--work-dir <dir>', 'where blobs are built before the push (default: the system temp dir)')
    .option('--json', 'print the result as JSON')
    .option('--no-progress', 'do not show the progress bar')
    .action(async (src: string, dst: string, opts) => {
      // Read before anything is pulled: a bad list should fail in a second, not after the conversion.
      const prefetch = opts.prefetchFiles ? await readPrefetchList(opts.prefetchFiles) : undefined;
      const bar = ByteProgress.forTerminal(opts.progress);
      const started = Date.now();
      const result = await convertImage({
        source: src,
        target: dst,
        client: registryClient(opts.plainHttp, [
          { flag: '--src-creds', ref: src, value: opts.srcCreds },
          { flag: '--dest-creds', ref: dst, value: opts.destCreds },
          ...(opts.chunkDict
            ? [{ flag: '--src-creds', ref: opts.chunkDict as string, value: opts.srcCreds }]
            : []),
        ]),
        chunkSize: opts.chunkSize,
        compressor: opts.compressor as Compressor,
        chunkDict: opts.chunkDict,
        platform: opts.platform,
        prefetch,
        workDir: opts.workDir,
        onProgress: (p) => bar?.show(p.phase, p.done, p.total),
      }).finally(() => bar?.stop());
      if (opts.json) {
        process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
        return;
      }
      const seconds = (Date.now() - started) / 1000;
      for (const m of result.manifests) {
        const platform = m.platform ? `${m.platform.os}/${m.platform.architecture} ` : '';
        const d = m.dedup;
        process.stdout.write(
          `${platform}${m.layers} layers (${humanBytes(m.inputBytes)}) -> ${m.blobs} blobs + bootstrap: ${m.digest}\n` +
            `  chunks: ${d.storedChunks} stored (${humanBytes(d.storedBytes)}), ${d.reusedInImageChunks} deduplicated ` +
            `in the image, ${d.reusedFromDictChunks} from the chunk dict, ${d.holeChunks} holes\n`,
        );
      }
      process.stdout.write(`pushed ${result.target} (${result.digest}) in ${seconds.toFixed(1)} s\n`);
    });
}
