import { hostname } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import { defaultDataDir } from './paths.js';
import { registryOrigin } from './registry-addr.js';
import { duration, hostPort, size } from './units.js';

const port = () => z.number().int().min(0).max(65535);

/** A registry as host[:port] or http(s)://host[:port] → its origin. */
const registryAddr = () =>
  z.string().transform((v, ctx) => {
    try {
      return registryOrigin(v);
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: (err as Error).message });
      return z.NEVER;
    }
  });

const regexString = () =>
  z.string().refine((v) => {
    try {
      new RegExp(v);
      return true;
    } catch {
      return false;
    }
  }, 'not a valid regular expression');

export const schedulerConfigSchema = z
  .object({
    listen: hostPort().default('0.0.0.0:8002'),
    /** Prometheus /metrics and /healthy; empty = off. */
    metricsListen: z.union([hostPort(), z.literal('')]).default(''),
    scheduling: z
      .object({
        candidateParentLimit: z.number().int().min(1).max(20).default(4),
        filterParentLimit: z.number().int().min(1).max(1000).default(40),
        retryInterval: duration().prefault(500),
        /** Empty schedules (no parent and no peer fetching from the source) before back-to-source. */
        retryBackToSourceLimit: z.number().int().min(0).default(4),
        /** Empty schedules before the download fails when back-to-source is not allowed. */
        retryLimit: z.number().int().min(1).default(20),
        /** Most peers of one task that may go back to source at once. */
        backToSourceCount: z.number().int().min(1).default(200),
        /**
         * Most downloading children (that keep up) a seed peer feeds per task; 0 = no limit. 1 suits a
         * seed whose uplink is like its peers': every piece leaves the seed about once.
         */
        seedChildLimit: z.number().int().min(0).default(1),
        /** The same for normal peers fewer than childLimitDepth hops from the source; 0 = no limit. */
        childLimit: z.number().int().min(0).default(1),
        childLimitDepth: z.number().int().min(0).default(32),
      })
      .strict()
      .prefault({}),
    gc: z
      .object({
        interval: duration().prefault('10s'),
        peerTtl: duration().prefault('24h'),
        /** A task with no peers left is forgotten after this long. */
        taskTtl: duration().prefault('30m'),
      })
      .strict()
      .prefault({}),
    seedPeer: z
      .object({ enable: z.boolean().default(true) })
      .strict()
      .prefault({}),
  })
  .strict();
export type SchedulerConfig = z.infer<typeof schedulerConfigSchema>;

export const daemonConfigSchema = z
  .object({
    host: z
      .object({
        ip: z.string().default('127.0.0.1'),
        hostname: z.string().default(hostname()),
        idc: z.string().default(''),
        location: z.string().default(''),
      })
      .strict()
      .prefault({}),
    seedPeer: z
      .object({
        enable: z.boolean().default(false),
        /**
         * Super-seeding: after uploading a piece, how long the seed sends other children to the peer that
         * now has it instead of uploading it again; 0 serves every request.
         */
        pieceHold: duration().prefault('10s'),
      })
      .strict()
      .prefault({}),
    scheduler: z
      .object({
        /** Scheduler addresses; empty = always download straight from the source. */
        addrs: z.array(hostPort()).default(['127.0.0.1:8002']),
        announceInterval: duration().prefault('30s'),
        /** How long a download waits for the scheduler before going to the source on its own. */
        connectTimeout: duration().prefault('5s'),
      })
      .strict()
      .prefault({}),
    storage: z
      .object({
        dataDir: z.string().default(defaultDataDir()),
        taskTtl: duration().prefault('24h'),
        /** Bytes the daemon may use; 0 = the size of the filesystem holding dataDir. */
        capacity: size().prefault(0),
        highWatermarkPercent: z.number().min(1).max(100).default(80),
        lowWatermarkPercent: z.number().min(0).max(100).default(60),
        gcInterval: duration().prefault('1m'),
      })
      .strict()
      .prefault({}),
    download: z
      .object({
        concurrentPieceCount: z.number().int().min(1).max(64).default(8),
        /** Ranged GETs to the source at once, per download. */
        backToSourceConcurrency: z.number().int().min(1).max(64).default(4),
        /** …and for all downloads of this host together, taken in turn (a seed fetching many layers). */
        hostBackToSourceConcurrency: z.number().int().min(1).max(256).default(4),
        pieceTimeout: duration().prefault('60s'),
        /** Host-wide download rate in bytes/s; 0 = unlimited. */
        rateLimit: size().prefault(0),
        /** Host-wide back-to-source retries per piece. */
        sourceRetries: z.number().int().min(0).default(3),
      })
      .strict()
      .prefault({}),
    upload: z
      .object({
        listen: z.string().default('0.0.0.0'),
        port: port().default(4000),
        /** Pieces served at once to other peers. */
        concurrentLimit: z.number().int().min(1).default(50),
        /** Host-wide upload rate in bytes/s; 0 = unlimited. */
        rateLimit: size().prefault(0),
      })
      .strict()
      .prefault({}),
    proxy: z
      .object({
        /** Loopback by default: on other addresses the forward proxy is open to whoever can reach it. */
        listen: z.string().default('127.0.0.1'),
        port: port().default(4001),
        registryMirror: z
          .object({
            /** The registry for mirror requests that name none (skopeo and podman send no `ns=`). */
            addr: registryAddr().default('https://registry-1.docker.io'),
            /**
             * When a client GETs a whole layer of a manifest that passed through the mirror, also start
             * the P2P downloads of the layers after it, so a client pulling one layer at a time finds
             * them on the way (see docs/registry-mirror.md).
             */
            prefetchLayers: z.boolean().default(true),
          })
          .strict()
          .prefault({}),
        /**
         * How long the registry's acceptance of a client's credentials for a blob is remembered (a lazy
         * mount reads one blob in many ranges); 0 asks the registry on every request.
         */
        accessCacheTtl: duration().prefault('60s'),
        /** Forward-proxy rules, first match wins: GETs of matching URLs go P2P unless `direct`. */
        rules: z
          .array(z.object({ regex: regexString(), direct: z.boolean().default(false) }).strict())
          .default([{ regex: 'blobs/sha256.*', direct: false }]),
        /** Terminate TLS of CONNECT tunnels with our CA so HTTPS downloads can go P2P (clients must trust the CA). */
        interception: z
          .object({
            enable: z.boolean().default(false),
            /** PEM files, as `damselfly init ca` writes them. */
            caCert: z.string().default('/etc/damselfly/ca.crt'),
            caKey: z.string().default('/etc/damselfly/ca.key'),
            /** Regexes on the CONNECT target `host:port`; others are tunnelled untouched. */
            hosts: z.array(regexString()).default(['.*']),
          })
          .strict()
          .prefault({}),
      })
      .strict()
      .prefault({}),
    metrics: z
      .object({ listen: z.string().default('0.0.0.0'), port: port().default(4002) })
      .strict()
      .prefault({}),
    api: z
      .object({ socket: z.string().default('') })
      .strict()
      .prefault({}),
  })
  .strict();
export type DaemonConfig = z.infer<typeof daemonConfigSchema>;

/** The local API socket: under the data dir unless configured. */
export function apiSocketPath(config: DaemonConfig): string {
  return config.api.socket || join(config.storage.dataDir, 'damselfly.sock');
}
