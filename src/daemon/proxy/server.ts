import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Logger } from '../../observability/index.js';
import type { CertifiedKey } from '../../tls/index.js';
import type { Downloads } from '../download/downloads.js';
import type { DaemonMetrics } from '../metrics.js';
import type { TaskStorage } from '../storage/index.js';
import { ForwardProxy } from './forward-proxy.js';
import { LayerPrefetcher } from './layer-prefetch.js';
import { RegistryMirror } from './mirror.js';
import { P2PResponder } from './p2p-responder.js';
import { ProxyRequestError, sendError } from './proxy-error.js';
import { type ProxyRule, ProxyRules } from './rules.js';
import { TlsInterceptor } from './tls-interceptor.js';

export interface ProxyOptions {
  downloads: Downloads;
  storage: TaskStorage;
  metrics: DaemonMetrics;
  logger: Logger;
  /** Origin of the registry for mirror requests that name none (skopeo, podman). */
  defaultRegistry: string;
  rules: readonly ProxyRule[];
  /** How long an origin's "yes" to a client's credentials for a blob is trusted, in ms. */
  accessCacheTtl: number;
  /** A whole-layer GET also starts the downloads of the manifest's later layers (LayerPrefetcher). */
  prefetchLayers: boolean;
  /** TLS interception of CONNECT targets matching `hosts`, with this CA; absent = tunnel everything. */
  interception?: { ca: CertifiedKey; hosts: readonly string[] };
}

/**
 * The daemon's proxy port, one listener for both roles (as Dragonfly's): origin-form requests
 * (`GET /v2/...`) are registry-mirror requests, absolute-form requests and CONNECT are forward-proxy ones
 * (CONNECT targets matching the interception hosts are decrypted and served like absolute https URLs).
 */
export class ProxyServer {
  private readonly server: Server;
  private readonly mirror: RegistryMirror;
  private readonly forward: ForwardProxy;
  private readonly interceptor: TlsInterceptor | undefined;
  private readonly tunnels = new Set<Socket>();

  constructor(private readonly opts: ProxyOptions) {
    const p2p = new P2PResponder(
      opts.downloads,
      opts.storage,
      opts.metrics,
      opts.logger,
      opts.accessCacheTtl,
    );
    this.mirror = new RegistryMirror(p2p, opts.defaultRegistry, this.layerPrefetcher());
    this.interceptor = opts.interception
      ? new TlsInterceptor(
          opts.interception.ca,
          opts.interception.hosts,
          (req, res, origin) =>
            this.respond(req, res, (signal) =>
              this.forward.serve(req, res, new URL(req.url ?? '/', origin), signal),
            ),
          opts.logger,
        )
      : undefined;
    const rules = new ProxyRules(opts.rules);
    this.forward = new ForwardProxy(p2p, rules, opts.metrics, opts.logger, this.interceptor);
    this.server = createServer((req, res) => {
      const absolute = /^[a-z][a-z0-9+.-]*:\/\//i.test(req.url ?? '');
      const handler = absolute ? this.forward : this.mirror;
      this.respond(req, res, (signal) => handler.handle(req, res, signal));
    });
    this.server.on('connect', (req: IncomingMessage, socket: Socket, head: Buffer) => {
      this.tunnels.add(socket);
      socket.once('close', () => this.tunnels.delete(socket));
      this.forward.connect(req, socket, head);
    });
  }

  private layerPrefetcher(): LayerPrefetcher | undefined {
    if (!this.opts.prefetchLayers) return undefined;
    const { downloads, metrics, logger } = this.opts;
    return new LayerPrefetcher((request) => {
      metrics.proxyLayerPrefetches.inc();
      logger.debug({ url: request.url }, 'prefetching a later layer');
      downloads.start(request).done.catch(() => undefined); // failures are logged by Downloads
    });
  }

  async listen(host: string, port: number): Promise<number> {
    this.server.listen(port, host);
    await once(this.server, 'listening');
    return (this.server.address() as AddressInfo).port;
  }

  /** Runs one request's work; a client that goes away aborts it; failures become error answers. */
  private respond(
    req: IncomingMessage,
    res: ServerResponse,
    work: (signal: AbortSignal) => Promise<void>,
  ): void {
    const abort = new AbortController();
    res.once('close', () => {
      if (!res.writableFinished) abort.abort();
    });
    work(abort.signal).catch((err: Error) => {
      if (abort.signal.aborted) return;
      this.opts.metrics.proxyRequests.inc({ via: 'error' });
      if (res.headersSent) {
        res.destroy();
        return;
      }
      if (err instanceof ProxyRequestError) {
        sendError(res, err.status, err.registryCode, err.message, 'proxy');
        return;
      }
      this.opts.logger.warn({ url: req.url, err: err.message }, 'proxy request failed');
      sendError(res, 502, 'UNAVAILABLE', `upstream failed: ${err.message}`, 'backend');
    });
  }

  async close(): Promise<void> {
    for (const socket of this.tunnels) socket.destroy();
    this.interceptor?.close();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
