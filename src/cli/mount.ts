import { stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { Command, Option } from 'commander';
import { defaultDataDir, parseSize } from '../config/index.js';
import type { DecodedBootstrap } from '../image/format/index.js';
import { parseReference, type RegistryClient } from '../image/oci/index.js';
import { decodeSourceBootstrap, type ImageSource, openImageSource } from '../image/source/index.js';
import {
  AccessTrace,
  type ChunkBackend,
  cacheDataPaths,
  checkCanMount,
  type FetchTuning,
  fillCaches,
  isFullyCached,
  KernelMount,
  LocalBackend,
  MountApiServer,
  MountedImage,
  MountStatus,
  NodePaths,
  planPrefetch,
  RegistryBackend,
  TraceFileWriter,
  writeBootstrapFile,
} from '../mount/index.js';
import { createLogger, type Logger } from '../observability/index.js';
import { ByteProgress } from './progress.js';
import { registryClient, withRegistryOptions } from './registry-options.js';
import { closeAndExit, intOption, UserError, waitForShutdownSignal } from './run.js';

export function defaultCacheDir(): string {
  return join(defaultDataDir(), 'cache');
}

export function mountCommand(): Command {
  return withRegistryOptions(new Command('mount'))
    .summary('mount an accelerated image; file bytes are fetched on demand (FUSE) or by the kernel (EROFS)')
    .description(
      'Reads the bootstrap of SRC (an `image build` output directory or an image reference) and serves its ' +
        'tree at MOUNTPOINT. In FUSE mode, reading a file fetches just the chunks it needs, verifies each ' +
        'against its sha256, and keeps it in a per-blob cache file under --cache-dir; the paths in the ' +
        "image's prefetch table are fetched in the background right after mount. In kernel mode every blob " +
        'is cached first, then the kernel EROFS driver serves the tree. Stays in the foreground until ' +
        'MOUNTPOINT is unmounted or SIGINT/SIGTERM arrives (then it unmounts and exits 0). Needs root.',
    )
    .argument('<src>', 'an `image build` output directory, or an image reference in a registry')
    .argument('<mountpoint>', 'an existing directory')
    .addOption(
      new Option(
        '--backend <name>',
        'where chunks come from (default: the directory, or the registry of SRC); p2p: ranges of the ' +
          "blobs through the local daemon's registry mirror (--proxy), so many nodes reading one image " +
          'fetch it from the registry about once',
      ).choices(['registry', 'local', 'p2p']),
    )
    .option(
      '--proxy <addr>',
      "with --backend p2p: the local daemon's proxy port, host:port or http://host:port",
      '127.0.0.1:4001',
    )
    .addOption(
      new Option(
        '--mode <mode>',
        'fuse; kernel (cache every blob, then mount EROFS); auto: kernel if every blob is cached already',
      )
        .choices(['auto', 'fuse', 'kernel'])
        .default('auto'),
    )
    .addOption(
      new Option(
        '--kernel-backing <how>',
        'kernel mode: file (mount the cache files themselves, Linux >= 6.12), loop (through loop devices); ' +
          'auto: file if the kernel can, else loop',
      )
        .choices(['auto', 'file', 'loop'])
        .default('auto'),
    )
    .option('--cache-dir <dir>', 'where blob cache files live', defaultCacheDir())
    .option('--platform <os/arch[/variant]>', 'which platform of a multi-platform image')
    .option('--fetch-size <size>', 'small reads fetch at least this much of the neighbouring chunks', '1MiB')
    .option(
      '--fetch-concurrency <n>',
      'range requests in flight at once',
      intOption('--fetch-concurrency'),
      8,
    )
    .option('--trace <file>', 'write the first access of each file, one path per line (FUSE mode)')
    .option('--no-prefetch', "do not prefetch the image's prefetch table after mount")
    .option('--prefetch-all', 'after the prefetch table, fetch every chunk of the image in the background')
    .option('--prefetch-rate <size>', 'prefetch at most this many bytes per second (0 = unlimited)', '0')
    .option(
      '--prefetch-concurrency <n>',
      'prefetch range requests in flight at once (reads keep a quarter of --fetch-concurrency)',
      intOption('--prefetch-concurrency'),
      4,
    )
    .option('--api-sock <path>', 'serve metrics, trace and status as JSON (and /metrics) on this unix socket')
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
      const credentials = local
        ? []
        : [{ flag: '--creds', ref: src, value: opts.creds as string | undefined }];
      const mirror = backendName === 'p2p' ? proxyOrigin(opts.proxy) : undefined;
      const client = registryClient(opts.plainHttp, credentials, logger, mirror);
      const backend = chooseBackend(backendName, src, local, client);
      const source = await openSource(src, { plainHttp: opts.plainHttp, platform: opts.platform, client });
      const decoded = decodeSourceBootstrap(source);
      const context: MountContext = {
        name: source.name,
        bootstrap: source.bootstrap,
        decoded,
        backend,
        mountpoint,
        opts,
        logger,
        shutdown,
        status: new MountStatus(source.name, resolve(mountpoint), backend.name),
      };
      const mode = await chooseMode(opts.mode, context);
      context.status.mode = mode;
      const api = opts.apiSock
        ? await MountApiServer.listen(opts.apiSock, context.status.routes())
        : undefined;
      try {
        await (mode === 'kernel' ? runKernelMode(context) : runFuseMode(context));
      } finally {
        await api?.close();
      }
    });
}

/** Everything the two modes share. */
interface MountContext {
  name: string;
  bootstrap: Buffer;
  decoded: DecodedBootstrap;
  backend: ChunkBackend;
  mountpoint: string;
  // biome-ignore lint/suspicious/noExplicitAny: commander's parsed options
  opts: any;
  logger: Logger;
  shutdown: Promise<NodeJS.Signals>;
  status: MountStatus;
}

/** auto: the kernel when it can serve everything without us (every blob cached) and no trace is wanted. */
async function chooseMode(mode: string, context: MountContext): Promise<'fuse' | 'kernel'> {
  if (mode === 'fuse' || mode === 'kernel') {
    if (mode === 'kernel' && context.opts.trace) {
      throw new UserError('--trace needs --mode fuse (in kernel mode reads never reach damselfly)');
    }
    return mode;
  }
  if (context.opts.trace) return 'fuse';
  return (await isFullyCached(context.decoded, context.opts.cacheDir)) ? 'kernel' : 'fuse';
}

function fetchTuning(opts: MountContext['opts']): FetchTuning {
  return {
    minFetchSize: sizeOption('--fetch-size', opts.fetchSize),
    concurrency: Math.max(1, opts.fetchConcurrency),
    backgroundConcurrency: Math.max(1, opts.prefetchConcurrency),
    backgroundRate: sizeOption('--prefetch-rate', opts.prefetchRate),
  };
}

async function runFuseMode(context: MountContext): Promise<void> {
  const { opts, logger, decoded, status } = context;
  const trace = await openTrace(context);
  const mounted = await MountedImage.mount({
    name: context.name,
    decoded,
    backend: context.backend,
    cacheDir: opts.cacheDir,
    mountpoint: context.mountpoint,
    logger,
    fetch: fetchTuning(opts),
    observer: status.observer(trace.trace, new NodePaths(decoded.image.root)),
  });
  status.attach({
    fetch: mounted.fetcher.stats,
    read: mounted.reader.stats,
    trace: trace.trace,
    fastReads: () => {
      const stats = mounted.session.stats;
      return { reads: stats.fastReads ?? 0, bytes: stats.fastBytesRead ?? 0 };
    },
  });
  const paths = opts.prefetch ? decoded.image.prefetch : [];
  const plan = planPrefetch(decoded.image, paths, { all: opts.prefetchAll === true });
  if (plan.missingPaths.length > 0)
    logger.warn({ paths: plan.missingPaths }, 'prefetch paths not in the image');
  if (plan.chunks.length > 0) {
    const prefetcher = mounted.startPrefetch(plan);
    status.attach({ prefetch: () => prefetcher.progress });
  }
  status.state = 'mounted';
  process.stdout.write(`mounted ${context.name} at ${mounted.session.mountpoint}\n`);
  const reason = await Promise.race([mounted.unmounted.then(() => 'unmounted'), context.shutdown]);
  logger.info({ reason }, 'unmounting');
  status.state = 'unmounting';
  await closeAndExit(async () => {
    await mounted.close();
    await trace.writer?.close();
  });
}

async function openTrace(context: MountContext): Promise<{ trace: AccessTrace; writer?: TraceFileWriter }> {
  if (!context.opts.trace) return { trace: new AccessTrace() };
  const writer = await TraceFileWriter.create(context.opts.trace, context.logger).catch((err: Error) => {
    throw new UserError(`--trace ${context.opts.trace}: ${err.message}`);
  });
  return { trace: new AccessTrace((record) => writer.append(record.path)), writer };
}

async function runKernelMode(context: MountContext): Promise<void> {
  const { opts, logger, decoded, status } = context;
  const stop = new AbortController();
  void context.shutdown.then(() => stop.abort(new Error('interrupted')));
  const bar = ByteProgress.forTerminal();
  status.state = 'filling-cache';
  try {
    await fillCaches({
      decoded,
      backend: context.backend,
      cacheDir: opts.cacheDir,
      logger,
      fetch: fetchTuning(opts),
      signal: stop.signal,
      onProgress: (progress) => {
        status.attach({ prefetch: () => progress });
        bar?.show('caching', progress.bytesDone, progress.bytesTotal);
      },
    });
  } catch (err) {
    if (stop.signal.aborted) await closeAndExit(async () => context.backend.close?.());
    throw err;
  } finally {
    bar?.stop();
  }
  await context.backend.close?.();
  const kernel = await KernelMount.mount({
    bootstrapPath: await writeBootstrapFile(opts.cacheDir, context.bootstrap),
    devicePaths: cacheDataPaths(decoded, opts.cacheDir),
    mountpoint: context.mountpoint,
    backing: opts.kernelBacking,
    logger,
  });
  status.kernelBacking = kernel.backing;
  status.state = 'mounted';
  process.stdout.write(
    `mounted ${context.name} at ${kernel.mountpoint} (kernel EROFS, ${kernel.backing}-backed)\n`,
  );
  const reason = await Promise.race([kernel.unmounted.then(() => 'unmounted'), context.shutdown]);
  logger.info({ reason }, 'unmounting');
  status.state = 'unmounting';
  await closeAndExit(() => kernel.close());
}

function chooseBackend(name: string, src: string, local: boolean, client: RegistryClient): ChunkBackend {
  switch (name) {
    case 'local':
      if (!local)
        throw new UserError(`--backend local needs an \`image build\` output directory, not ${src}`);
      return new LocalBackend(src);
    case 'registry':
    case 'p2p':
      if (local) throw new UserError(`--backend ${name} needs an image reference; ${src} is a directory`);
      // p2p: the same registry protocol, spoken to the daemon's mirror (the client was made with it).
      return new RegistryBackend(client, parseReference(src), name === 'p2p' ? 'p2p' : 'registry');
    default:
      throw new UserError(`unknown --backend ${name} (use registry, p2p or local)`);
  }
}

/** `--proxy host:port` or `http://host:port` → the mirror's origin. */
function proxyOrigin(addr: string): string {
  const text = /^https?:\/\//i.test(addr) ? addr : `http://${addr}`;
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new UserError(`invalid --proxy "${addr}": expected host:port`);
  }
  if (url.protocol !== 'http:' || !url.port || (url.pathname !== '/' && url.pathname !== '')) {
    throw new UserError(`invalid --proxy "${addr}": expected host:port of the daemon's proxy (plain http)`);
  }
  return url.origin;
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

function sizeOption(flag: string, value: string): number {
  try {
    return parseSize(value);
  } catch (err) {
    throw new UserError(`${flag}: ${(err as Error).message}`);
  }
}

async function isDirectory(path: string): Promise<boolean> {
  return stat(path).then(
    (s) => s.isDirectory(),
    () => false,
  );
}
