import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Command, Option } from 'commander';
import { defaultDataDir } from '../config/index.js';
import { parseSize } from '../config/units.js';
import { parseReference, RegistryClient } from '../image/oci/index.js';
import { decodeSourceBootstrap, type ImageSource, openImageSource } from '../image/source/index.js';
import {
  type ChunkBackend,
  checkCanMount,
  LocalBackend,
  MountedImage,
  RegistryBackend,
} from '../mount/index.js';
import { createLogger } from '../observability/index.js';
import { closeAndExit, intOption, UserError, waitForShutdownSignal } from './run.js';

export function defaultCacheDir(): string {
  return join(defaultDataDir(), 'cache');
}

export function mountCommand(): Command {
  return new Command('mount')
    .summary('mount an accelerated image; file bytes are fetched on demand (FUSE)')
    .description(
      'Reads the bootstrap of SRC (an `image build` output directory or an image reference) and serves its ' +
        'tree at MOUNTPOINT. Reading a file fetches just the chunks it needs, verifies each against its sha256, ' +
        'and keeps it in a per-blob cache file under --cache-dir. Stays in the foreground until MOUNTPOINT is ' +
        'unmounted or SIGINT/SIGTERM arrives (then it unmounts and exits 0). Needs root.',
    )
    .argument('<src>', 'an `image build` output directory, or an image reference in a registry')
    .argument('<mountpoint>', 'an existing directory')
    .addOption(
      new Option(
        '--backend <name>',
        'where chunks come from (default: the directory, or the registry of SRC)',
      ).choices(['registry', 'local', 'p2p']),
    )
    .option('--cache-dir <dir>', 'where blob cache files live', defaultCacheDir())
    .option('--plain-http', 'talk HTTP, not HTTPS, to the registry')
    .option('--platform <os/arch[/variant]>', 'which platform of a multi-platform image')
    .option('--fetch-size <size>', 'small reads fetch at least this much of the neighbouring chunks', '1MiB')
    .option(
      '--fetch-concurrency <n>',
      'range requests in flight at once',
      intOption('--fetch-concurrency'),
      8,
    )
    .action(async (src: string, mountpoint: string, opts) => {
      const logger = createLogger('mount');
      // Listening before mounting: a signal during setup must still end in a clean unmount.
      const shutdown = waitForShutdownSignal();
      await checkCanMount(mountpoint, logger);
      const local = await isDirectory(src);
      if (!local && /^\.{0,2}\//.test(src)) {
        throw new UserError(`${src} is not a directory (expected an \`image build\` output directory)`);
      }
      const backendName: string = opts.backend ?? (local ? 'local' : 'registry');
      const client = new RegistryClient({ plainHttp: opts.plainHttp, logger });
      const backend = chooseBackend(backendName, src, local, client);
      const source = await openSource(src, { plainHttp: opts.plainHttp, platform: opts.platform, client });
      const mounted = await MountedImage.mount({
        name: source.name,
        decoded: decodeSourceBootstrap(source),
        backend,
        cacheDir: opts.cacheDir,
        mountpoint,
        logger,
        fetch: { minFetchSize: fetchSize(opts.fetchSize), concurrency: Math.max(1, opts.fetchConcurrency) },
      });
      process.stdout.write(`mounted ${source.name} at ${mounted.session.mountpoint}\n`);
      const reason = await Promise.race([mounted.unmounted.then(() => 'unmounted'), shutdown]);
      logger.info({ reason }, 'unmounting');
      await closeAndExit(() => mounted.close());
    });
}

function chooseBackend(name: string, src: string, local: boolean, client: RegistryClient): ChunkBackend {
  switch (name) {
    case 'local':
      if (!local)
        throw new UserError(`--backend local needs an \`image build\` output directory, not ${src}`);
      return new LocalBackend(src);
    case 'registry':
      if (local) throw new UserError(`--backend registry needs an image reference; ${src} is a directory`);
      return new RegistryBackend(client, parseReference(src));
    default:
      throw new UserError(`--backend ${name} is not available yet (use registry or local)`);
  }
}

async function openSource(
  src: string,
  options: { plainHttp?: boolean; platform?: string; client: RegistryClient },
): Promise<ImageSource> {
  try {
    return await openImageSource(src, options);
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (typeof code === 'string' && code.startsWith('E')) throw err;
    throw new UserError(`cannot open ${src}: ${(err as Error).message}`);
  }
}

function fetchSize(value: string): number {
  try {
    return parseSize(value);
  } catch (err) {
    throw new UserError(`--fetch-size: ${(err as Error).message}`);
  }
}

async function isDirectory(path: string): Promise<boolean> {
  return stat(path).then(
    (s) => s.isDirectory(),
    () => false,
  );
}
