import { Command, Option } from 'commander';
import { daemonConfigSchema, loadConfig } from '../config/index.js';
import { startDaemon } from '../daemon/index.js';
import { createLogger } from '../observability/index.js';
import { closeAndExit, intOption, surviveSchedulerGoaway, waitForShutdownSignal } from './run.js';

export function daemonCommand(): Command {
  return new Command('daemon')
    .summary('run a peer: download, store and serve pieces')
    .description(
      'Runs the peer daemon of a node (dfdaemon). It downloads tasks for local clients (`damselfly get`) from ' +
        'other peers as the scheduler directs, verifies every piece, stores it, and serves it to other peers. ' +
        'With --seed-peer it is a seed: the scheduler sends it to the source first. ' +
        'Flags override the YAML --config file; see docs/configuration.md for every key.',
    )
    .option('-c, --config <file>', 'YAML config file')
    .option('--data-dir <dir>', 'where task content and metadata live (storage.dataDir)')
    .option('--scheduler <addrs>', 'scheduler host:port, comma-separated; "" = none (scheduler.addrs)')
    .option('--seed-peer', 'run as a seed peer (seedPeer.enable)')
    .option('--ip <ip>', 'IP address other peers use to reach this host (host.ip)')
    .option('--hostname <name>', 'host name announced to the scheduler (host.hostname)')
    .option(
      '--upload-port <port>',
      'piece upload server port (upload.port, default 4000)',
      intOption('--upload-port'),
    )
    .option(
      '--proxy-port <port>',
      'registry mirror / proxy port (proxy.port, default 4001)',
      intOption('--proxy-port'),
    )
    .option(
      '--registry-mirror <registry>',
      'registry for mirror requests that name none, e.g. https://registry.example.com or http://127.0.0.1:5000 ' +
        '(proxy.registryMirror.addr, default https://registry-1.docker.io)',
    )
    .option(
      '--metrics-port <port>',
      'Prometheus /metrics and /healthy port, 0 = off (metrics.port, default 4002)',
      intOption('--metrics-port'),
    )
    .option(
      '--socket <path>',
      'local API unix socket used by `get` (api.socket, default <data-dir>/damselfly.sock)',
    )
    .addOption(new Option('--log-level <level>', 'log level').choices(['debug', 'info', 'warn', 'error']))
    .action(async (opts) => {
      const config = loadConfig(daemonConfigSchema, {
        file: opts.config,
        flags: {
          host: { ip: opts.ip, hostname: opts.hostname },
          seedPeer: opts.seedPeer ? { enable: true } : undefined,
          scheduler:
            opts.scheduler === undefined
              ? undefined
              : {
                  addrs: String(opts.scheduler)
                    .split(',')
                    .map((s) => s.trim())
                    .filter(Boolean),
                },
          storage: { dataDir: opts.dataDir },
          upload: { port: opts.uploadPort },
          proxy: {
            port: opts.proxyPort,
            registryMirror: opts.registryMirror === undefined ? undefined : { addr: opts.registryMirror },
          },
          metrics: { port: opts.metricsPort },
          api: { socket: opts.socket },
        },
      });
      const logger = createLogger('daemon', opts.logLevel);
      surviveSchedulerGoaway((msg) => logger.warn(msg));
      const daemon = await startDaemon(config, logger);
      const signal = await waitForShutdownSignal();
      logger.info({ signal }, 'shutting down');
      await closeAndExit(() => daemon.close());
    });
}
