import type { Server } from 'node:http';
import type { SchedulerConfig } from '../config/index.js';
import { parseHostPort } from '../config/units.js';
import { type Logger, startMetricsServer } from '../observability/index.js';
import { createGrpcServer } from '../rpc/index.js';
import { SchedulerCore } from './service.js';

export { type ScheduleResult, SchedulerMetrics } from './metrics.js';
export {
  DIGEST_BATCH_MS,
  PENDING_SOURCE_GRACE_MS,
  SchedulerCore,
  type SchedulerCoreOptions,
  SEED_RETRY_MS,
} from './service.js';

export interface RunningScheduler {
  /** The gRPC port actually bound (meaningful with port 0). */
  port: number;
  /** The metrics port actually bound, when metricsListen is set. */
  metricsPort?: number;
  core: SchedulerCore;
  close(): Promise<void>;
}

const formatAddress = (host: string, port: number) =>
  host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;

/** Starts the scheduler's gRPC service (and its metrics endpoint when configured). */
export async function startScheduler(config: SchedulerConfig, logger: Logger): Promise<RunningScheduler> {
  const listen = parseHostPort(config.listen);
  const core = new SchedulerCore({ config, logger });
  const server = await createGrpcServer(core.routes, listen.host, listen.port);
  let metricsServer: Server | undefined;
  let metricsPort: number | undefined;
  if (config.metricsListen) {
    const m = parseHostPort(config.metricsListen);
    try {
      metricsServer = await startMetricsServer(core.metrics.registry, m.host, m.port);
    } catch (err) {
      await server.close();
      throw err;
    }
    const addr = metricsServer.address();
    metricsPort = typeof addr === 'object' && addr ? addr.port : m.port;
    logger.info({ address: formatAddress(m.host, metricsPort) }, 'scheduler metrics listening');
  }
  core.start();
  logger.info({ address: formatAddress(listen.host, server.port) }, 'scheduler listening');
  let closing: Promise<void> | undefined;
  return {
    port: server.port,
    metricsPort,
    core,
    close() {
      closing ??= (async () => {
        core.stop();
        const ms = metricsServer;
        await Promise.all([
          server.close(),
          ms &&
            new Promise<void>((resolve) => {
              ms.close(() => resolve());
              ms.closeAllConnections();
            }),
        ]);
        logger.info('scheduler stopped');
      })();
      return closing;
    },
  };
}
