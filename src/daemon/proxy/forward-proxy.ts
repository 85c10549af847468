import type { IncomingMessage, ServerResponse } from 'node:http';
import { connect, type Socket } from 'node:net';
import type { Logger } from '../../observability/index.js';
import type { DaemonMetrics } from '../metrics.js';
import type { P2PResponder } from './p2p-responder.js';
import { ProxyRequestError } from './proxy-error.js';
import { type ProxyRules, USE_P2P_HEADER } from './rules.js';
import type { TlsInterceptor } from './tls-interceptor.js';

/** `CONNECT host:port` targets: a name or bracketed IPv6 address and a port. */
const CONNECT_TARGET = /^(\[[0-9a-f:.]+\]|[a-z0-9.-]+):(\d{1,5})$/i;

/**
 * The forward HTTP proxy (requests in absolute form, `GET http://host/path`). GETs whose URL matches a
 * P2P rule (or that carry `X-Damselfly-Use-P2P: true`) become P2P tasks; everything else passes through.
 * CONNECT is tunnelled as is (the proxy sees only encrypted bytes) unless TLS interception claims it.
 */
export class ForwardProxy {
  constructor(
    private readonly p2p: P2PResponder,
    private readonly rules: ProxyRules,
    private readonly metrics: DaemonMetrics,
    private readonly logger: Logger,
    private readonly interceptor?: TlsInterceptor,
  ) {}

  /** A request in absolute form: only http (https arrives through CONNECT). */
  async handle(req: IncomingMessage, res: ServerResponse, signal: AbortSignal): Promise<void> {
    let url: URL;
    try {
      url = new URL(req.url ?? '');
    } catch {
      throw new ProxyRequestError(400, 'UNSUPPORTED', `invalid proxy request URL: ${req.url}`);
    }
    if (url.protocol !== 'http:') {
      throw new ProxyRequestError(
        400,
        'UNSUPPORTED',
        `cannot proxy ${url.protocol} URLs; use CONNECT for https`,
      );
    }
    return this.serve(req, res, url, signal);
  }

  /** Answers a request for `url` (http, or https decrypted by interception) by the rules. */
  async serve(req: IncomingMessage, res: ServerResponse, url: URL, signal: AbortSignal): Promise<void> {
    const registry = url.host;
    const force = req.headers[USE_P2P_HEADER];
    if (req.method === 'GET' && this.rules.useP2P(url.href, typeof force === 'string' ? force : undefined)) {
      return this.p2p.serve(req, res, { url: url.href, registry }, signal);
    }
    return this.p2p.passThrough(req, res, { url: url.href, registry }, signal);
  }

  /** CONNECT: intercepted when the interceptor claims the target, otherwise a raw tunnel. */
  connect(req: IncomingMessage, client: Socket, head: Buffer): void {
    const m = CONNECT_TARGET.exec(req.url ?? '');
    const port = m ? Number(m[2]) : 0;
    if (!m || port < 1 || port > 65535) {
      client.end('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
      return;
    }
    const host = m[1]!.replace(/^\[|\]$/g, '');
    if (this.interceptor?.matches(req.url!)) {
      this.metrics.proxyRequests.inc({ via: 'intercepted' });
      this.interceptor.intercept(client, head, host, port);
      return;
    }
    this.tunnel(client, head, host, port);
  }

  /** Relays bytes both ways between the client and the target. */
  private tunnel(client: Socket, head: Buffer, host: string, port: number): void {
    const target = `${host}:${port}`;
    const upstream = connect({ host, port });
    let connected = false;
    upstream.once('connect', () => {
      connected = true;
      this.metrics.proxyRequests.inc({ via: 'tunnel' });
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      if (head.length) upstream.write(head);
      upstream.pipe(client);
      client.pipe(upstream);
      upstream.once('close', () => client.destroy());
    });
    upstream.once('error', (err) => {
      this.logger.info({ target, err: err.message }, 'CONNECT target unreachable');
      if (connected) client.destroy();
      else client.end('HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
    });
    client.once('error', () => upstream.destroy());
    client.once('close', () => upstream.destroy());
  }
}
