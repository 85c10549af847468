import { readFileSync } from 'node:fs';
import type { Server } from 'node:http';
import { Semaphore } from '../async/index.js';
import { apiSocketPath, ConfigError, type DaemonConfig } from '../config/index.js';
import { type Logger, startMetricsServer } from '../observability/index.js';
import { ApiServer } from './api/server.js';
import { Downloads } from './download/downloads.js';
import { DaemonMetrics } from './metrics.js';
import { type ProxyOptions, ProxyServer } from './proxy/index.js';
import { TokenBucket } from './rate-limiter.js';
import { SchedulerConnection } from './scheduler-connection.js';
import { TaskStorage } from './storage/index.js';
import { UploadServer } from './upload/server.js';

export interface RunningDaemon {
  hostId: string;
  uploadPort: number;
  proxyPort: number;
  socketPath: string;
  downloads: Downloads;
  storage: TaskStorage;
  metrics: DaemonMetrics;
  close(): Promise<void>;
}

/** The interception CA, read at start so a missing or unreadable file fails the start, not a request. */
function loadInterception(config: DaemonConfig): ProxyOptions['interception'] {
  const i = config.proxy.interception;
  if (!i.enable) return undefined;
  const read = (path: string, what: string) => {
    try {
      return readFileSync(path, 'utf8');
    } catch (err) {
      throw new ConfigError(
        `proxy.interception.${what}: cannot read ${path}: ${(err as Error).message} (create a CA with \`damselfly init ca\`)`,
      );
    }
  };
  return { ca: { cert: read(i.caCert, 'caCert'), key: read(i.caKey, 'caKey') }, hosts: i.hosts };
}

/**
 * Starts a peer: storage, the upload server, the scheduler link, the local API and metrics. The
 * metrics/health port opens last, so "healthy" means every part is serving.
 */
export async function startDaemon(config: DaemonConfig, logger: Logger): Promise<RunningDaemon> {
  const metrics = new DaemonMetrics();
  const storage = TaskStorage.open({
    dataDir: config.storage.dataDir,
    taskTtl: config.storage.taskTtl,
    capacity: config.storage.capacity,
    highWatermarkPercent: config.storage.highWatermarkPercent,
    lowWatermarkPercent: config.storage.lowWatermarkPercent,
    logger,
  });
  const upload = new UploadServer(
    storage,
    new TokenBucket(config.upload.rateLimit),
    config.upload.concurrentLimit,
    metrics,
    logger,
    config.seedPeer.enable ? config.seedPeer.pieceHold : 0,
  );
  const uploadPort = await upload.listen(config.upload.listen, config.upload.port);
  const scheduler = new SchedulerConnection(
    config.scheduler.addrs,
    {
      ip: config.host.ip,
      hostname: config.host.hostname,
      seedPeer: config.seedPeer.enable,
      uploadPort,
      proxyPort: config.proxy.port,
      idc: config.host.idc,
      location: config.host.location,
      concurrentUploadLimit: config.upload.concurrentLimit,
      uploadRateLimit: config.upload.rateLimit,
    },
    () => upload.load(),
    config.scheduler.announceInterval,
    logger,
  );
  const downloads = new Downloads({
    storage,
    scheduler,
    metrics,
    downloadLimiter: new TokenBucket(config.download.rateLimit),
    logger,
    concurrentPieceCount: config.download.concurrentPieceCount,
    backToSourceConcurrency: config.download.backToSourceConcurrency,
    sourceSlots: new Semaphore(config.download.hostBackToSourceConcurrency),
    hostFetches: { inFlight: 0 },
    pieceTimeoutMs: config.download.pieceTimeout,
    sourceRetries: config.download.sourceRetries,
  });
  scheduler.start((taskId, download) => {
    logger.info({ taskId, url: download.url }, 'scheduler triggered a seed download');
    const handle = downloads.start({
      url: download.url,
      tag: download.tag || undefined,
      application: download.application || undefined,
      priority: download.priority,
      headers: { ...download.requestHeader },
      pieceLength: download.pieceLength || undefined,
      needBackToSource: true,
    });
    if (handle.taskId !== taskId) logger.warn({ taskId, computed: handle.taskId }, 'seed task id differs');
    handle.done.catch(() => undefined); // logged by Downloads
  });
  const proxy = new ProxyServer({
    downloads,
    storage,
    metrics,
    logger,
    defaultRegistry: config.proxy.registryMirror.addr,
    rules: config.proxy.rules,
    accessCacheTtl: config.proxy.accessCacheTtl,
    prefetchLayers: config.proxy.registryMirror.prefetchLayers,
    interception: loadInterception(config),
  });
  const proxyPort = await proxy.listen(config.proxy.listen, config.proxy.port);
  const api = new ApiServer(downloads, storage, logger);
  const socketPath = apiSocketPath(config);
  await api.listen(socketPath);

  const gcTimer = setInterval(() => {
    storage
      .gc()
      .then((removed) => {
        if (removed.length) logger.info({ removed }, 'storage gc removed tasks');
      })
      .catch((err: Error) => logger.warn({ err: err.message }, 'storage gc failed'));
    metrics.storageUsed.set(storage.usage().usedBytes);
  }, config.storage.gcInterval);
  gcTimer.unref();

  let metricsServer: Server | null = null;
  if (config.metrics.port > 0) {
    metricsServer = await startMetricsServer(metrics.registry, config.metrics.listen, config.metrics.port);
  }
  logger.info(
    { hostId: scheduler.hostId, uploadPort, proxyPort, socket: socketPath, seedPeer: config.seedPeer.enable },
    'daemon ready',
  );

  return {
    hostId: scheduler.hostId,
    uploadPort,
    proxyPort,
    socketPath,
    downloads,
    storage,
    metrics,
    async close() {
      clearInterval(gcTimer);
      downloads.close();
      await scheduler.close();
      await Promise.all([api.close(), upload.close(), proxy.close()]);
      metricsServer?.closeAllConnections();
      metricsServer?.close();
      storage.close();
    },
  };
}
