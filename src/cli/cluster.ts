import { basename, join, relative } from 'node:path';
import { Command } from 'commander';
import {
  apiSocketPath,
  daemonConfigSchema,
  defaultDataDir,
  loadConfig,
  schedulerConfigSchema,
} from '../config/index.js';
import { startDaemon } from '../daemon/index.js';
import { createLogger } from '../observability/index.js';
import { startScheduler } from '../scheduler/index.js';
import { closeAndExit, intOption, surviveSchedulerGoaway, waitForShutdownSignal } from './run.js';

export function clusterCommand(): Command {
  return new Command('cluster')
    .summary('all-in-one node: scheduler + seed peer + daemon in one process')
    .description(
      'Starts everything a single host needs, on embedded defaults: a scheduler, a seed peer and a peer ' +
        'daemon whose API socket is the default one, so `damselfly get URL -O FILE` works right away. ' +
        'Other hosts can join by running `damselfly daemon --scheduler <this host>:<scheduler port>`.',
    )
    .option('--data-dir <dir>', "base directory for both peers' storage", defaultDataDir())
    .option('--ip <ip>', 'IP address announced to the scheduler', '127.0.0.1')
    .option('--scheduler-port <port>', 'scheduler gRPC port', intOption('--scheduler-port'), 8002)
    .option(
      '--upload-port <port>',
      'peer upload port (the seed peer uses port + 100)',
      intOption('--upload-port'),
      4000,
    )
    .option(
      '--metrics-port <port>',
      'peer metrics port, 0 = off (the seed peer uses port + 100)',
      intOption('--metrics-port'),
      4002,
    )
    .option('--log-level <level>', 'log level', 'info')
    .action(async (opts) => {
      const logger = createLogger('cluster', opts.logLevel);
      surviveSchedulerGoaway((msg) => logger.warn(msg));
      const schedulerAddr = `${opts.ip}:${opts.schedulerPort}`;
      const scheduler = await startScheduler(
        loadConfig(schedulerConfigSchema, { flags: { listen: `0.0.0.0:${opts.schedulerPort}` } }),
        logger.child({ component: 'scheduler' }),
      );
      const peer = (seed: boolean) =>
        loadConfig(daemonConfigSchema, {
          flags: {
            host: { ip: opts.ip },
            seedPeer: { enable: seed },
            scheduler: { addrs: [schedulerAddr] },
            storage: { dataDir: seed ? join(opts.dataDir, 'seed') : opts.dataDir },
            upload: { port: opts.uploadPort + (seed ? 100 : 0) },
            proxy: { port: 4001 + (seed ? 100 : 0) },
            metrics: { port: opts.metricsPort === 0 ? 0 : opts.metricsPort + (seed ? 100 : 0) },
          },
        });
      const seedConfig = peer(true);
      const peerConfig = peer(false);
      const seed = await startDaemon(seedConfig, logger.child({ component: 'seed-peer' }));
      const daemon = await startDaemon(peerConfig, logger.child({ component: 'daemon' }));
      const socket = apiSocketPath(peerConfig);
      process.stdout.write(
        [
          'damselfly cluster is running:',
          `  scheduler   ${schedulerAddr}`,
          `  seed peer   ${seed.hostId}  (data ${seedConfig.storage.dataDir})`,
          `  daemon      ${daemon.hostId}  (data ${peerConfig.storage.dataDir}, API ${socket})`,
          `  mirror      http://127.0.0.1:${daemon.proxyPort}  (registry mirror and HTTP proxy; default registry ${peerConfig.proxy.registryMirror.addr})`,
          peerConfig.metrics.port ? `  metrics     http://127.0.0.1:${peerConfig.metrics.port}/metrics` : '',
          '',
          'Download through it:',
          `  ${selfCommand()} get https://example.com/file.bin -O /tmp/file.bin${socket === apiSocketPath(daemonConfigSchema.parse({})) ? '' : ` --socket ${socket}`}`,
          `Pull images through it: ${selfCommand()} init containerd --registry docker.io (docs/runtime-integration.md)`,
          'Stop with Ctrl-C.',
          '',
        ]
          .filter((l, i, a) => l !== '' || a[i - 1] !== '')
          .join('\n'),
      );
      const signal = await waitForShutdownSignal();
      logger.info({ signal }, 'shutting down');
      await closeAndExit(async () => {
        await daemon.close();
        await seed.close();
        await scheduler.close();
      });
    });
}

/** How the user can run this binary again: `damselfly` when installed, else `node <path to main.js>`. */
function selfCommand(): string {
  const script = process.argv[1] ?? '';
  if (basename(script) === 'damselfly') return 'damselfly';
  const rel = relative(process.cwd(), script);
  return `node ${rel.startsWith('..') ? script : rel}`;
}
